// Package cheat holds providers built to cheat, for the tests that show
// what a requester does beside one (issue 19: results from strangers).
//
// Only test files import it: a release build has no way to make a node
// cheat (TestOnlyTestsImportCheat checks). A cheat stands between the
// bidding protocol and an honest node as its orchestrator.Backend, so the
// protocol on the wire is the real one: only what the node claims and does
// is false.
package cheat

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/randid"
	"github.com/dms-project/dms/orchestrator"
)

// Mode is how a cheat misbehaves once invoked. Whatever its mode, it bids
// on every request it hears, with price 0 and a claimed benchmark score of
// Score, as if it had room for anything.
type Mode string

const (
	// Forge ends every job at once as completed, exit code 0, with Forged
	// on stdout, running nothing.
	Forge Mode = "forge"
	// Silent accepts the invocation, then sends nothing at all: no start,
	// no heartbeat, no end.
	Silent Mode = "silent"
	// Endless accepts, says the job runs, and never ends it, whatever its
	// duration; the provider's heartbeats go on for as long as the
	// requester follows.
	Endless Mode = "endless"
)

// Modes are all the modes, for flags and tables of tests.
var Modes = []Mode{Forge, Silent, Endless}

// ParseMode reads a mode's name.
func ParseMode(s string) (Mode, error) {
	if m := Mode(s); slices.Contains(Modes, m) {
		return m, nil
	}
	return "", fmt.Errorf("cheat mode %q: want one of %v", s, Modes)
}

// Forged is what a forging cheat prints; no honest job in the tests does.
const Forged = "forged result\n"

// Score is the benchmark score a cheat claims: far above any machine's.
const Score = 1e9

// offer is what a cheat claims to have free, whatever it holds: room for
// any job the tests submit.
var offer = capability.Capability{
	CPU:    capability.CPU{MilliCores: 1024 * 1000, Score: Score},
	Memory: 1 << 40, Disk: 1 << 40,
}

// Backend is a cheating provider around an honest node's backend. It keeps
// the honest backend's preferences (so it hears the same requests) and
// nothing else: it holds no capacity and runs nothing.
type Backend struct {
	inner orchestrator.Backend
	mode  Mode

	invocations atomic.Int64
	cancels     atomic.Int64

	// key is the node's own: a forger signs a receipt for what it made up,
	// as a cheat that knows the protocol would, so that only other
	// replicas can tell.
	key crypto.PrivKey

	mu     sync.Mutex
	allocs map[string]*orchestrator.Invocation // by allocation ID
}

var _ orchestrator.Backend = (*Backend)(nil)

// New makes a cheat in mode m, to stand around an honest backend (Wrap).
func New(m Mode) *Backend {
	return &Backend{mode: m, allocs: map[string]*orchestrator.Invocation{}}
}

// Wrap puts the cheat around inner, the honest node's backend, with the
// node's key, and returns it in inner's place. Call it once, before the
// node serves requests.
func (b *Backend) Wrap(inner orchestrator.Backend, key crypto.PrivKey) orchestrator.Backend {
	b.inner, b.key = inner, key
	return b
}

// Mode is how this cheat misbehaves.
func (b *Backend) Mode() Mode { return b.mode }

// Invocations counts the invocations the cheat accepted: how often a
// requester chose it.
func (b *Backend) Invocations() int64 { return b.invocations.Load() }

// Cancels counts the requests to cancel one of its allocations: what a
// requester spends chasing a provider it gave up on.
func (b *Backend) Cancels() int64 { return b.cancels.Load() }

// Onboarded: a cheat bids whatever it offers.
func (b *Backend) Onboarded() bool { return true }

// Preferences are the honest node's: the cheat hears what the node would.
func (b *Backend) Preferences() orchestrator.Preferences { return b.inner.Preferences() }

// Offer claims room for anything, for nothing, on the fastest machine.
func (b *Backend) Offer() orchestrator.Offer {
	return orchestrator.Offer{Registered: offer, Available: offer, Score: Score}
}

// CanRun: a cheat can run anything, it says.
func (b *Backend) CanRun(context.Context, *orchestrator.BidRequest) error { return nil }

// Load is 0, so the cheat bids first.
func (b *Backend) Load() float64 { return 0 }

// Reserve holds nothing: the cheat bids beyond any capacity.
func (b *Backend) Reserve(string, capability.Capability, time.Time, []string) ([]string, error) {
	return nil, nil
}

// Holds claims every module and input already, to win price ties too.
func (b *Backend) Holds(peer.ID, string, orchestrator.BlobKind) bool { return true }

// Release always finds the hold it never made.
func (b *Backend) Release(string) bool { return true }

// Pin always finds the hold it never made.
func (b *Backend) Pin(string) error { return nil }

// Accept takes every invocation and starts nothing.
func (b *Backend) Accept(_ string, inv *orchestrator.Invocation) (string, error) {
	b.invocations.Add(1)
	id := "cheat-" + randid.Hex(8)
	b.mu.Lock()
	b.allocs[id] = inv
	b.mu.Unlock()
	return id, nil
}

// Watch serves the allocation as the mode says. Like an honest provider,
// it lets only the allocation's requester watch.
func (b *Backend) Watch(ctx context.Context, id string, requester peer.ID) (<-chan orchestrator.Event, error) {
	b.mu.Lock()
	inv, ok := b.allocs[id]
	b.mu.Unlock()
	if !ok || inv.Bid.Bid.Requester != requester {
		return nil, fmt.Errorf("allocation %s: %w", id, orchestrator.ErrNotFound)
	}
	now := time.Now()
	switch b.mode {
	case Silent:
		// The provider sends heartbeats only once Watch returns: never
		// returning (until the stream's handler ends) keeps the stream
		// open and silent.
		<-ctx.Done()
		return nil, ctx.Err()
	case Endless:
		ch := make(chan orchestrator.Event, 2)
		ch <- orchestrator.Event{Seq: 0, AllocationID: id, Kind: orchestrator.EventState, State: orchestrator.StatePending, Time: now}
		ch <- orchestrator.Event{Seq: 1, AllocationID: id, Kind: orchestrator.EventState, State: orchestrator.StateRunning, Time: now}
		// Never closed: the job never ends. The provider stops reading it
		// when the requester stops following.
		return ch, nil
	default:
		// As an honest allocation tells it: output comes in its own
		// events, the result event carries none.
		events := []orchestrator.Event{
			{Kind: orchestrator.EventState, State: orchestrator.StatePending},
			{Kind: orchestrator.EventState, State: orchestrator.StateRunning},
			{Kind: orchestrator.EventStdout, Data: []byte(Forged)},
			{Kind: orchestrator.EventState, State: orchestrator.StateCompleted},
			{Kind: orchestrator.EventResult, Result: b.forgedResult(inv, id, now)},
		}
		ch := make(chan orchestrator.Event, len(events))
		for i, e := range events {
			e.Seq, e.AllocationID, e.Time = i, id, now
			ch <- e
		}
		close(ch)
		return ch, nil
	}
}

// Cancel says yes and changes nothing: a cheat's job ends only when the
// mode says.
func (b *Backend) Cancel(id string, requester peer.ID) error {
	b.cancels.Add(1)
	b.mu.Lock()
	inv, ok := b.allocs[id]
	b.mu.Unlock()
	if !ok || inv.Bid.Bid.Requester != requester {
		return fmt.Errorf("allocation %s: %w", id, orchestrator.ErrNotFound)
	}
	return nil
}

// forgedResult is the result a forger reports, with a receipt it signs
// for the output it made up (none without the node's key).
func (b *Backend) forgedResult(inv *orchestrator.Invocation, id string, now time.Time) *orchestrator.Result {
	res := &orchestrator.Result{State: orchestrator.StateCompleted, ExitCode: 0}
	if b.key == nil {
		return res
	}
	self, err := peer.IDFromPrivateKey(b.key)
	if err != nil {
		return res
	}
	r := orchestrator.NewReceipt(inv, self)
	r.AllocationID, r.State, r.Started, r.Ended = id, res.State, now, now
	r.StdoutSHA256, r.StdoutSize = orchestrator.StreamHash([]byte(Forged)), int64(len(Forged))
	r.StderrSHA256 = orchestrator.StreamHash(nil)
	if env, err := orchestrator.SealReceipt(&r, b.key); err == nil {
		res.Receipt = env
	}
	return res
}
