package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/p2p"
)

// fakeBackend is a provider with a tiny ledger whose jobs "run" by echoing
// their args, so protocol tests need no executor.
type fakeBackend struct {
	mu        sync.Mutex
	onboarded bool
	avail     capability.Capability
	holds     map[string]*fakeHold
	refuse    bool
	accepted  []string
	allocs    map[string]chan Event
	price     capability.PriceInformation
	score     float64
}

func newFakeBackend(cpu uint64) *fakeBackend {
	return &fakeBackend{
		onboarded: true,
		avail:     capability.Capability{CPU: capability.CPU{MilliCores: cpu}, Memory: 4 * capability.GiB, Disk: 4 * capability.GiB},
		holds:     map[string]*fakeHold{}, allocs: map[string]chan Event{},
	}
}

func (f *fakeBackend) Onboarded() bool          { f.mu.Lock(); defer f.mu.Unlock(); return f.onboarded }
func (f *fakeBackend) Preferences() Preferences { return DefaultPreferences() }
func (f *fakeBackend) Offer() (capability.Capability, capability.PriceInformation, float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.avail, f.price, f.score
}

// fakeHold is a hold with the bid it was placed for, as the real ledger
// keeps it.
type fakeHold struct {
	c       capability.Capability
	bid     *PlacedBid
	claimed bool
}

// Hold places no hold in the way of another: the fake never displaces.
func (f *fakeBackend) Hold(b *PlacedBid, admit func(capability.Capability, []*PlacedBid) ([]*PlacedBid, error)) ([]*PlacedBid, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := HoldID(b.Request.Requester, b.Bid.JobID)
	if _, dup := f.holds[id]; dup {
		return nil, errors.New("already held") // as the real ledger refuses a duplicate id
	}
	var open []*PlacedBid
	for _, h := range f.holds {
		open = append(open, h.bid)
	}
	registered := f.avail
	for _, h := range f.holds {
		registered, _ = registered.Add(h.c)
	}
	if _, err := admit(registered, open); err != nil {
		return nil, err
	}
	left, err := f.avail.Subtract(b.Request.Requirements)
	if err != nil {
		return nil, err
	}
	f.avail = left
	f.holds[id] = &fakeHold{c: b.Request.Requirements, bid: b}
	return nil, nil
}

func (f *fakeBackend) HasHold(requester peer.ID, job string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.holds[HoldID(requester, job)]
	return ok
}

// placedBids are the open bids for a job, to any requester.
func (f *fakeBackend) placedBids(job string) []*PlacedBid {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*PlacedBid
	for _, h := range f.holds {
		if h.bid.Bid.JobID == job {
			out = append(out, h.bid)
		}
	}
	return out
}

func (f *fakeBackend) ClaimHold(requester peer.ID, job string, check func(*PlacedBid) error) (*PlacedBid, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := f.holds[HoldID(requester, job)]
	if !ok || h.claimed || time.Now().After(h.bid.Bid.HoldExpires) {
		return nil, ErrNoHold
	}
	if err := check(h.bid); err != nil {
		return nil, err
	}
	h.claimed = true
	return h.bid, nil
}

func (f *fakeBackend) ReleaseHold(requester peer.ID, job string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := HoldID(requester, job)
	h, ok := f.holds[id]
	if ok {
		f.avail, _ = f.avail.Add(h.c)
		delete(f.holds, id)
	}
	return ok
}

func (f *fakeBackend) Accept(inv *Invocation) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse {
		return "", errors.New("refusing on purpose")
	}
	id := "alloc-" + inv.Job.ID
	delete(f.holds, HoldID(inv.Bid.Requester, inv.Job.ID)) // the hold becomes the allocation's lock
	f.accepted = append(f.accepted, inv.Job.ID)
	ch := make(chan Event, 4)
	ch <- Event{Kind: EventState, State: StateRunning, Time: time.Now()}
	ch <- Event{Kind: EventStdout, Data: fmt.Appendf(nil, "ran %v", inv.Job.Args), Time: time.Now()}
	ch <- Event{Kind: EventResult, Result: &Result{State: StateCompleted}, Time: time.Now()}
	close(ch)
	f.allocs[id] = ch
	return id, nil
}

func (f *fakeBackend) Watch(_ context.Context, id string, _ peer.ID) (<-chan Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.allocs[id]
	if !ok {
		return nil, ErrNotFound
	}
	return ch, nil
}

func (f *fakeBackend) Cancel(string, peer.ID) error { return nil }

func (f *fakeBackend) CanRun(context.Context, *BidRequest) error { return nil }

func (f *fakeBackend) Load() float64 { return 0 }

func (f *fakeBackend) heldCount() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.holds) }

type testNode struct {
	host    *p2p.Host
	key     crypto.PrivKey
	svc     *Service
	backend *fakeBackend
}

// newMesh starts n nodes on loopback that know only node 0 and waits until
// every node has a peer on the bid-request topic.
func newMesh(t *testing.T, n int, backends func(i int) *fakeBackend) []*testNode {
	t.Helper()
	ctx := context.Background()
	cfg := LocalConfig()
	cfg.Requester.BiddingWindow = 3 * time.Second
	if os.Getenv("DMS_TEST_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	nodes := make([]*testNode, n)
	for i := range n {
		key, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		opts := []p2p.Option{p2p.WithConfig(p2p.LocalConfig()), p2p.WithPrivKey(key), p2p.WithNetwork("orch-test")}
		if i > 0 {
			opts = append(opts, p2p.WithBootstrap(nodes[0].host.AddrInfo()))
		}
		h, err := p2p.New(ctx, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		b := backends(i)
		svc, err := NewService(h, key, b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		nodes[i] = &testNode{host: h, key: key, svc: svc, backend: b}
	}
	for _, nd := range nodes {
		poll.Until(t, time.Minute, fmt.Sprintf("node %s to have %d topic peers", nd.host.ID(), min(n-1, 2)), func() bool {
			return len(nd.svc.Topic().ListPeers()) >= min(n-1, 2)
		})
	}
	return nodes
}

func wasmJob(args ...string) Submission {
	return Submission{Job: JobSpec{
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: 64 * capability.MiB},
		Duration:     seconds.Duration(time.Minute), Executor: ExecutorWasm, Module: []byte("\x00asm fake module"), Args: args,
	}}
}

// waitFor polls cond until it holds, or for a minute: generous, for a
// loaded machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, time.Minute, what, cond)
}
