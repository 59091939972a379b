package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
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
	allocs    map[string][]Event
	price     capability.PriceInformation
	score     float64
	labels    Labels   // set before the service starts
	held      []string // sha256s of content it keeps; set before the service starts
	// key signs the allocations' receipts, as the node's does (setKey);
	// forge sends other output than the receipt accounts for.
	key   crypto.PrivKey
	forge bool
}

func (f *fakeBackend) setKey(k crypto.PrivKey) { f.mu.Lock(); defer f.mu.Unlock(); f.key = k }

// withKey gives a fake backend its provider's key, for receipts.
func withKey(b Backend, k crypto.PrivKey) {
	if kb, ok := b.(interface{ setKey(crypto.PrivKey) }); ok {
		kb.setKey(k)
	}
}

// fakeReceipt seals the receipt a node would for an allocation that
// replays evs and ends with res.
func fakeReceipt(key crypto.PrivKey, inv *Invocation, allocID string, evs []Event, res *Result) []byte {
	if key == nil {
		return nil
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		panic(err)
	}
	r := NewReceipt(inv, id)
	var stdout, stderr []byte
	for _, e := range evs {
		switch e.Kind {
		case EventStdout:
			stdout = append(stdout, e.Data...)
		case EventStderr:
			stderr = append(stderr, e.Data...)
		}
	}
	r.AllocationID, r.State, r.ExitCode, r.Ended = allocID, res.State, res.ExitCode, time.Now()
	r.StdoutSHA256, r.StdoutSize = StreamHash(stdout), int64(len(stdout))
	r.StderrSHA256, r.StderrSize = StreamHash(stderr), int64(len(stderr))
	if res.Outputs != nil {
		r.OutputsSHA256 = res.Outputs.Archive.SHA256
	}
	env, err := SealReceipt(&r, key)
	if err != nil {
		panic(err)
	}
	return env
}

func newFakeBackend(cpu uint64) *fakeBackend {
	return &fakeBackend{
		onboarded: true,
		avail:     capability.Capability{CPU: capability.CPU{MilliCores: cpu}, Memory: 4 * capability.GiB, Disk: 4 * capability.GiB},
		holds:     map[string]*fakeHold{}, allocs: map[string][]Event{},
	}
}

func (f *fakeBackend) Onboarded() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.onboarded }
func (f *fakeBackend) Preferences() Preferences {
	p := DefaultPreferences()
	p.Labels = f.labels
	return p
}
func (f *fakeBackend) Offer() Offer {
	f.mu.Lock()
	defer f.mu.Unlock()
	registered := f.avail
	for _, h := range f.holds {
		registered, _ = registered.Add(h.c)
	}
	return Offer{Registered: registered, Available: f.avail, Price: f.price, Score: f.score}
}

// fakeHold is a hold as the real ledger keeps it.
type fakeHold struct {
	c       capability.Capability
	expires time.Time
	pinned  bool
}

// Reserve places no hold in the way of another: the fake never displaces.
func (f *fakeBackend) Reserve(id string, c capability.Capability, expires time.Time, _ []string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.holds[id]; dup {
		return nil, errors.New("already held") // as the real ledger refuses a duplicate id
	}
	left, err := f.avail.Subtract(c)
	if err != nil {
		return nil, err
	}
	f.avail = left
	f.holds[id] = &fakeHold{c: c, expires: expires}
	return nil, nil
}

func (f *fakeBackend) Pin(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := f.holds[id]
	if !ok || h.pinned || time.Now().After(h.expires) {
		return errors.New("no such hold")
	}
	h.pinned = true
	return nil
}

func (f *fakeBackend) Release(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := f.holds[id]
	if ok {
		f.avail, _ = f.avail.Add(h.c)
		delete(f.holds, id)
	}
	return ok
}

func (f *fakeBackend) Accept(holdID string, inv *Invocation) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse {
		return "", errors.New("refusing on purpose")
	}
	id := "alloc-" + inv.Job.ID
	delete(f.holds, holdID) // the hold becomes the allocation's lock
	f.accepted = append(f.accepted, inv.Job.ID)
	evs := []Event{
		{Seq: 0, Kind: EventState, State: StateRunning, Time: time.Now()},
		{Seq: 1, Kind: EventStdout, Data: fmt.Appendf(nil, "ran %v", inv.Job.Args), Time: time.Now()},
	}
	res := &Result{State: StateCompleted}
	res.Receipt = fakeReceipt(f.key, inv, id, evs, res)
	if f.forge {
		evs[1].Data = []byte("forged")
	}
	f.allocs[id] = append(evs, Event{Seq: 2, Kind: EventResult, Result: res, Time: time.Now()})
	return id, nil
}

// Watch replays the allocation's events from the first, as a node does to
// every watch.
func (f *fakeBackend) Watch(_ context.Context, id string, _ peer.ID) (<-chan Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	evs, ok := f.allocs[id]
	if !ok {
		return nil, fmt.Errorf("allocation %s: %w", id, ErrNotFound)
	}
	ch := make(chan Event, len(evs))
	for _, e := range evs {
		ch <- e
	}
	close(ch)
	return ch, nil
}

func (f *fakeBackend) Cancel(string, peer.ID) error { return nil }

func (f *fakeBackend) CanRun(context.Context, *BidRequest) error { return nil }

func (f *fakeBackend) Load() float64 { return 0 }

func (f *fakeBackend) Holds(_ peer.ID, sha256 string, _ BlobKind) bool {
	return slices.Contains(f.held, sha256)
}

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
		withKey(b, key)
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
	waitForDelivery(t, nodes)
	return nodes
}

// waitForDelivery publishes probes from node 0 until one has reached every
// other node: peers that see each other on the topic can still miss a
// message sent before gossipsub's heartbeats have formed its mesh, and a
// test that counts bids must not race that.
func waitForDelivery(t *testing.T, nodes []*testNode) {
	t.Helper()
	if len(nodes) < 2 {
		return
	}
	seen := func(i int) int64 { return nodes[i].svc.Stats().RequestsSeen }
	before := make([]int64, len(nodes))
	for i := range nodes {
		before[i] = seen(i)
	}
	probes := 0
	var next time.Time
	poll.Until(t, time.Minute, "a probe from node 0 to reach every node", func() bool {
		all := true
		for i := 1; i < len(nodes); i++ {
			all = all && seen(i) > before[i]
		}
		if all {
			return true
		}
		// One probe a second: a slow delivery is waited for, a lost one
		// is made up by the next.
		if now := time.Now(); now.After(next) {
			next = now.Add(time.Second)
			probes++
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := nodes[0].svc.Probe(ctx, ""); err != nil {
				t.Logf("probe %d: %v", probes, err)
			}
		}
		return false
	})
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
