package resources

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func memDatastore() datastore.Batching { return dssync.MutexWrap(datastore.NewMapDatastore()) }

func newTestLedger(t testing.TB, ds datastore.Batching, opts ...LedgerOption) *Ledger {
	t.Helper()
	if ds == nil {
		ds = memDatastore()
	}
	l, err := NewLedger(ds, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func capOf(milli uint64, mem, disk uint64, gpus ...capability.GPU) capability.Capability {
	return capability.Capability{CPU: capability.CPU{MilliCores: milli}, Memory: mem, Disk: disk, GPUs: gpus}
}

const gib = capability.GiB

func TestLedgerHoldPromoteUnlock(t *testing.T) {
	clk := newFakeClock()
	l := newTestLedger(t, nil, WithClock(clk.Now))
	if err := l.Register(capOf(4000, 8*gib, 100*gib)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve("bid-1", capOf(2500, 2*gib, 10*gib), clk.Now().Add(time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	if got := l.Available(); !got.Equal(capOf(1500, 6*gib, 90*gib)) {
		t.Fatalf("available after hold = %v", got)
	}
	if err := l.Promote("bid-1", "alloc-1", []byte(`{"job":"j1"}`)); err != nil {
		t.Fatal(err)
	}
	if len(l.Holds()) != 0 {
		t.Fatalf("hold still there after promote: %+v", l.Holds())
	}
	locks := l.Locks()
	if len(locks) != 1 || locks[0].ID != "alloc-1" || string(locks[0].Meta) != `{"job":"j1"}` || !locks[0].Since.Equal(clk.Now()) {
		t.Fatalf("locks = %+v", locks)
	}
	if got := l.Locked(); !got.Equal(capOf(2500, 2*gib, 10*gib)) {
		t.Fatalf("locked = %v", got)
	}
	if got := l.Available(); !got.Equal(capOf(1500, 6*gib, 90*gib)) {
		t.Fatalf("available after promote = %v", got)
	}
	if err := l.Unlock("alloc-1"); err != nil {
		t.Fatal(err)
	}
	if got := l.Available(); !got.Equal(l.Registered()) {
		t.Fatalf("available after unlock = %v, want all of %v", got, l.Registered())
	}
	if err := l.Unlock("alloc-1"); !errors.Is(err, ErrUnknownLock) {
		t.Fatalf("second unlock: %v", err)
	}
}

func TestLedgerRefusesWhatDoesNotFit(t *testing.T) {
	clk := newFakeClock()
	l := newTestLedger(t, nil, WithClock(clk.Now))
	exp := clk.Now().Add(time.Minute)
	if _, err := l.Reserve("h0", capOf(1, 0, 0), exp, nil); !errors.Is(err, capability.ErrInsufficient) {
		t.Fatalf("hold before registering: %v, want ErrInsufficient", err)
	}
	if err := l.Register(capOf(2000, 4*gib, 10*gib)); err != nil {
		t.Fatal(err)
	}
	_, err := l.Reserve("h1", capOf(2001, gib, gib), exp, nil)
	if !errors.Is(err, capability.ErrInsufficient) || !strings.Contains(err.Error(), "cpu") {
		t.Fatalf("hold too much cpu: %v", err)
	}
	if err := l.Lock("a1", capOf(1000, 3*gib, gib), nil); err != nil {
		t.Fatal(err)
	}
	err = l.Lock("a2", capOf(500, 2*gib, gib), nil)
	if !errors.Is(err, capability.ErrInsufficient) || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("lock too much memory: %v", err)
	}
	if n := len(l.Locks()); n != 1 {
		t.Fatalf("a refused lock was recorded: %d locks", n)
	}
}

func TestLedgerHoldExpiry(t *testing.T) {
	clk := newFakeClock()
	l := newTestLedger(t, nil, WithClock(clk.Now), WithMaxHold(time.Hour))
	if err := l.Register(capOf(1000, gib, gib)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve("h1", capOf(1000, gib, gib), clk.Now().Add(30*time.Second), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve("h2", capOf(1, 0, 0), clk.Now().Add(time.Minute), nil); !errors.Is(err, capability.ErrInsufficient) {
		t.Fatalf("hold while all is held: %v", err)
	}
	clk.Advance(30 * time.Second) // expiry is exclusive: at Expires the hold is gone
	if got := l.Available(); !got.Equal(capOf(1000, gib, gib)) {
		t.Fatalf("available after expiry = %v", got)
	}
	if err := l.Promote("h1", "a1", nil); !errors.Is(err, ErrUnknownHold) {
		t.Fatalf("promote of an expired hold: %v", err)
	}
	if _, err := l.Reserve("h3", capOf(1, 0, 0), clk.Now(), nil); !errors.Is(err, ErrBadExpiry) {
		t.Fatalf("hold expiring now: %v", err)
	}
	if _, err := l.Reserve("h4", capOf(1, 0, 0), clk.Now().Add(2*time.Hour), nil); !errors.Is(err, ErrBadExpiry) {
		t.Fatalf("hold beyond max: %v", err)
	}
	if _, err := l.Reserve("h5", capOf(1, 0, 0), clk.Now().Add(time.Second), nil); err != nil {
		t.Fatal(err)
	}
	if !l.Release("h5") || l.Release("h5") {
		t.Fatal("Release should report true once, then false")
	}
}

func TestLedgerRegisterBelowLocked(t *testing.T) {
	clk := newFakeClock()
	l := newTestLedger(t, nil, WithClock(clk.Now))
	if err := l.Register(capOf(4000, 4*gib, 4*gib)); err != nil {
		t.Fatal(err)
	}
	if err := l.Lock("a1", capOf(2000, gib, gib), nil); err != nil {
		t.Fatal(err)
	}
	err := l.Register(capOf(1000, 4*gib, 4*gib))
	if !errors.Is(err, ErrBelowLocked) || !errors.Is(err, capability.ErrInsufficient) || !strings.Contains(err.Error(), "cpu") {
		t.Fatalf("register below locked: %v", err)
	}
	if got := l.Registered(); got.CPU.MilliCores != 4000 {
		t.Fatalf("a refused registration changed it: %v", got)
	}
	// Shrinking to exactly what is locked plus an old hold drops the newer hold.
	exp := clk.Now().Add(time.Minute)
	if _, err := l.Reserve("old", capOf(1000, 0, 0), exp, nil); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if _, err := l.Reserve("new", capOf(1000, 0, 0), exp, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Register(capOf(3000, 4*gib, 4*gib)); err != nil {
		t.Fatal(err)
	}
	holds := l.Holds()
	if len(holds) != 1 || holds[0].ID != "old" {
		t.Fatalf("holds after shrinking = %+v, want only the old one", holds)
	}
}

func TestLedgerGPUs(t *testing.T) {
	clk := newFakeClock()
	l := newTestLedger(t, nil, WithClock(clk.Now))
	g0 := capability.GPU{Vendor: "NVIDIA", Model: "NVIDIA A10", Memory: 24 * gib, Index: 0, UUID: "GPU-0"}
	g1 := capability.GPU{Vendor: "NVIDIA", Model: "NVIDIA H100 80GB HBM3", Memory: 80 * gib, Index: 1, UUID: "GPU-1"}
	if err := l.Register(capOf(4000, 8*gib, 8*gib, g0, g1)); err != nil {
		t.Fatal(err)
	}
	exp := clk.Now().Add(time.Minute)
	if _, err := l.Reserve("any", capOf(0, 0, 0, capability.GPU{Vendor: "nvidia"}), exp, nil); err != nil {
		t.Fatal(err)
	}
	if h := l.Holds(); len(h) != 1 || len(h[0].Capability.GPUs) != 1 || h[0].Capability.GPUs[0] != g0 {
		t.Fatalf("hold should name the concrete gpu it took: %+v", h)
	}
	if _, err := l.Reserve("want-0", capOf(0, 0, 0, capability.GPU{UUID: "GPU-0"}), exp, nil); !errors.Is(err, capability.ErrInsufficient) || !strings.Contains(err.Error(), "gpu") {
		t.Fatalf("hold of a taken gpu: %v", err)
	}
	if err := l.Lock("big", capOf(0, 0, 0, capability.GPU{Memory: 40 * gib}), nil); err != nil {
		t.Fatal(err)
	}
	if got := l.Available(); len(got.GPUs) != 0 {
		t.Fatalf("gpus left = %+v", got.GPUs)
	}
	if err := l.Register(capOf(4000, 8*gib, 8*gib, g0)); !errors.Is(err, ErrBelowLocked) {
		t.Fatalf("dropping a locked gpu from the offer: %v", err)
	}
}

func TestLedgerCeiling(t *testing.T) {
	clk := newFakeClock()
	l := newTestLedger(t, nil, WithClock(clk.Now))
	if err := l.Register(capOf(4000, 8*gib, 8*gib)); err != nil {
		t.Fatal(err)
	}
	if err := l.Lock("a1", capOf(1000, gib, gib), nil); err != nil {
		t.Fatal(err)
	}
	// The owner now uses the machine: the node may have 1.5 cores in all.
	l.SetCeiling(capOf(1500, 100*gib, 5*gib))
	if got := l.Available(); !got.Equal(capOf(500, 7*gib, 4*gib)) {
		t.Fatalf("available under ceiling = %v", got)
	}
	if _, err := l.Reserve("h", capOf(600, 0, 0), clk.Now().Add(time.Minute), nil); !errors.Is(err, capability.ErrInsufficient) {
		t.Fatalf("hold over the ceiling: %v", err)
	}
	l.SetCeiling(capOf(500, 0, 0)) // below what is locked: nothing more, nothing evicted
	if got := l.Available(); got.CPU.MilliCores != 0 || got.Memory != 0 || len(l.Locks()) != 1 {
		t.Fatalf("available under a low ceiling = %v, locks %d", got, len(l.Locks()))
	}
	if s := l.Snapshot(); s.Ceiling == nil || s.Ceiling.CPU.MilliCores != 500 {
		t.Fatalf("snapshot ceiling = %+v", s.Ceiling)
	}
	l.ClearCeiling()
	if got := l.Available(); !got.Equal(capOf(3000, 7*gib, 7*gib)) {
		t.Fatalf("available without ceiling = %v", got)
	}
}

func TestLedgerDeregister(t *testing.T) {
	ds := memDatastore()
	clk := newFakeClock()
	l := newTestLedger(t, ds, WithClock(clk.Now))
	if err := l.Register(capOf(4000, 8*gib, 8*gib)); err != nil {
		t.Fatal(err)
	}
	if err := l.Lock("a1", capOf(1000, gib, gib), []byte("m1")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve("h1", capOf(1000, gib, gib), clk.Now().Add(time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	affected, err := l.Deregister(false)
	if !errors.Is(err, ErrLocked) || len(affected) != 1 || affected[0].ID != "a1" || !strings.Contains(err.Error(), "a1") {
		t.Fatalf("deregister while locked: %v, %+v", err, affected)
	}
	affected, err = l.Deregister(true)
	if err != nil || len(affected) != 1 || string(affected[0].Meta) != "m1" {
		t.Fatalf("forced deregister: %v, %+v", err, affected)
	}
	s := l.Snapshot()
	if !s.Registered.IsZero() || len(s.Locks) != 0 || len(s.Holds) != 0 {
		t.Fatalf("after forced deregister: %+v", s)
	}
	for _, k := range []datastore.Key{registeredKey, lockKey("a1"), AllocationKey("a1")} {
		if ok, _ := ds.Has(bg, k); ok {
			t.Errorf("%s still stored", k)
		}
	}
	if _, err := l.Deregister(false); err != nil {
		t.Fatalf("deregistering twice: %v", err)
	}
}

func TestLedgerIDs(t *testing.T) {
	clk := newFakeClock()
	l := newTestLedger(t, nil, WithClock(clk.Now))
	if err := l.Register(capOf(4000, 8*gib, 8*gib)); err != nil {
		t.Fatal(err)
	}
	exp := clk.Now().Add(time.Minute)
	for _, bad := range []string{"", "a/b", "../x", " x", strings.Repeat("x", 201), "-x"} {
		if _, err := l.Reserve(bad, capOf(1, 0, 0), exp, nil); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Hold(%q): %v", bad, err)
		}
		if err := l.Lock(bad, capOf(1, 0, 0), nil); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Lock(%q): %v", bad, err)
		}
	}
	if _, err := l.Reserve("QmPeer:bid.1_x-y", capOf(1, 0, 0), exp, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve("QmPeer:bid.1_x-y", capOf(1, 0, 0), exp, nil); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("duplicate hold: %v", err)
	}
	if err := l.Lock("a", capOf(1, 0, 0), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Lock("a", capOf(1, 0, 0), nil); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("duplicate lock: %v", err)
	}
	if err := l.Promote("QmPeer:bid.1_x-y", "a", nil); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("promote onto an existing lock: %v", err)
	}
	if err := l.Lock("big", capOf(1, 0, 0), make([]byte, MaxMetaSize+1)); !errors.Is(err, ErrMetaTooBig) {
		t.Fatalf("oversized meta: %v", err)
	}
}

func TestLedgerBenchmarkAndPreferences(t *testing.T) {
	ds := memDatastore()
	l := newTestLedger(t, ds)
	b := Benchmark{SingleCore: 500, AllCore: 1000, Threads: 2, MemoryBandwidth: 1e10, DiskWrite: 1e8, Score: 123.4}
	if err := l.SetBenchmark(b); err != nil {
		t.Fatal(err)
	}
	if err := l.Register(capOf(1000, gib, gib)); err != nil {
		t.Fatal(err)
	}
	if got := l.Registered().CPU.Score; got != 123.4 {
		t.Fatalf("registered score = %v, want the benchmark's", got)
	}
	b.Score = 200
	if err := l.SetBenchmark(b); err != nil {
		t.Fatal(err)
	}
	if err := l.SetPreferences([]byte(`{"max_price":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := l.SetBenchmark(Benchmark{}); err == nil {
		t.Fatal("a zero benchmark was accepted")
	}
	again := newTestLedger(t, ds)
	if got := again.Registered().CPU.Score; got != 200 {
		t.Fatalf("score after reload = %v", got)
	}
	if got, ok := again.Benchmark(); !ok || got.SingleCore != 500 {
		t.Fatalf("benchmark after reload = %+v, %v", got, ok)
	}
	if got := string(again.Preferences()); got != `{"max_price":1}` {
		t.Fatalf("preferences after reload = %q", got)
	}
}

// Reserve may displace the holds it is given, the fewest that make room,
// in the order given, never a pinned one; nothing changes when even all of
// them would not make room.
func TestLedgerReserveDisplaces(t *testing.T) {
	clk := newFakeClock()
	l := newTestLedger(t, nil, WithClock(clk.Now))
	if err := l.Register(capOf(1000, gib, gib)); err != nil {
		t.Fatal(err)
	}
	exp := clk.Now().Add(time.Minute)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := l.Reserve(id, capOf(300, 0, 0), exp, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Pin("c"); err != nil {
		t.Fatal(err)
	}
	if err := l.Pin("c"); !errors.Is(err, ErrUnknownHold) {
		t.Fatalf("pinning a pinned hold again: %v, want ErrUnknownHold", err)
	}
	if err := l.Pin("nope"); !errors.Is(err, ErrUnknownHold) {
		t.Fatalf("pinning no hold: %v, want ErrUnknownHold", err)
	}
	// A hold that fits displaces nothing, whatever it is given.
	if dropped, err := l.Reserve("small", capOf(50, 0, 0), exp, []string{"a", "b"}); err != nil || len(dropped) != 0 {
		t.Fatalf("a hold that fits displaced %v, %v", dropped, err)
	}
	l.Release("small")
	// 100m free; 500m needs two of the three 300m holds gone, and c is
	// pinned: b then a (the order given), and nothing more.
	dropped, err := l.Reserve("d", capOf(500, 0, 0), exp, []string{"c", "b", "a"})
	if err != nil || len(dropped) != 2 || dropped[0] != "b" || dropped[1] != "a" {
		t.Fatalf("displaced %v, %v; want b then a", dropped, err)
	}
	if l.HasHold("a") || l.HasHold("b") || !l.HasHold("c") || !l.HasHold("d") {
		t.Fatal("holds after displacing: want c and d")
	}
	// 200m free, and displacing d would free only 700m of the 1000m asked.
	if _, err := l.Reserve("e", capOf(1000, 0, 0), exp, []string{"d"}); !errors.Is(err, capability.ErrInsufficient) {
		t.Fatalf("a hold that displacing cannot make room for: %v", err)
	}
	if !l.HasHold("d") {
		t.Fatal("a failed displacement dropped a hold")
	}
	// A pinned hold is still promoted.
	if err := l.Promote("c", "alloc-c", nil); err != nil {
		t.Fatalf("promote a pinned hold: %v", err)
	}
	if s := l.Snapshot(); !mustSum(t, s.Held, s.Locked).Fits(s.Registered) {
		t.Fatalf("held %s + locked %s exceed %s", s.Held, s.Locked, s.Registered)
	}
}

func mustSum(t *testing.T, a, b capability.Capability) capability.Capability {
	t.Helper()
	c, err := a.Add(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
