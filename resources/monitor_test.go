package resources

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
)

func TestCeiling(t *testing.T) {
	total := capOf(8000, 16*gib, 100*gib)
	reserve := capOf(1000, 2*gib, 10*gib)
	for _, c := range []struct {
		name      string
		used, own Usage
		want      capability.Capability
	}{
		{"idle machine: the reserve is kept", Usage{}, Usage{}, capOf(7000, 14*gib, 90*gib)},
		{"owner within reserve", Usage{CPU: 800, Memory: gib}, Usage{}, capOf(7000, 14*gib, 90*gib)},
		{"owner beyond reserve shrinks it", Usage{CPU: 5000, Memory: 10 * gib, Disk: 60 * gib}, Usage{}, capOf(3000, 6*gib, 40*gib)},
		{"our own use is not the owner's", Usage{CPU: 5000, Memory: 10 * gib}, Usage{CPU: 3000, Memory: 8 * gib}, capOf(6000, 14*gib, 90*gib)},
		{"own larger than used (stale) counts as zero owner", Usage{CPU: 1000}, Usage{CPU: 3000}, capOf(7000, 14*gib, 90*gib)},
		{"owner uses everything", Usage{CPU: 9000, Memory: 20 * gib, Disk: 100 * gib}, Usage{}, capOf(0, 0, 0)},
	} {
		got := Ceiling(total, reserve, c.used, c.own)
		if !got.Equal(c.want) {
			t.Errorf("%s: ceiling = %v, want %v", c.name, got, c.want)
		}
	}
}

// fakeSampler returns the usages it is given, one per call, then the last.
type fakeSampler struct {
	mu    sync.Mutex
	queue []Usage
	err   error
	calls int
}

func (f *fakeSampler) Sample(ctx context.Context) (Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return Usage{}, f.err
	}
	u := f.queue[0]
	if len(f.queue) > 1 {
		f.queue = f.queue[1:]
	}
	return u, nil
}

func TestMonitorFeedsLedger(t *testing.T) {
	l := newTestLedger(t, nil)
	if err := l.Register(capOf(6000, 12*gib, 50*gib)); err != nil {
		t.Fatal(err)
	}
	total, reserve := capOf(8000, 16*gib, 100*gib), capOf(1000, 2*gib, 10*gib)
	fs := &fakeSampler{queue: []Usage{{}, {CPU: 6000, Memory: 4 * gib}}}
	samples := make(chan Sample, 100)
	m, err := NewMonitor(total, reserve, fs, WithInterval(5*time.Millisecond),
		WithOwnUsage(func() Usage { return Usage{CPU: 500} }),
		WithOnSample(func(s Sample) {
			l.SetCeiling(s.Ceiling)
			select {
			case samples <- s:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if got := l.Available(); !got.Equal(capOf(6000, 12*gib, 50*gib)) {
		t.Fatalf("available after the first (idle) sample = %v", got)
	}
	// Wait for the busy sample rather than sleeping.
	for s := range samples {
		if s.Used.CPU == 6000 {
			break
		}
	}
	// Owner: 6 − 0.5 own = 5.5 cores, so the node may have 8 − 5.5 = 2.5.
	if got := l.Available(); got.CPU.MilliCores != 2500 || got.Memory != 12*gib {
		t.Fatalf("available when the owner is busy = %v", got)
	}
	if s, ok := m.Latest(); !ok || s.Own.CPU != 500 {
		t.Fatalf("latest = %+v, %v", s, ok)
	}
	if err := m.Start(context.Background()); err == nil {
		t.Fatal("second Start accepted")
	}
}

// blockingSampler answers the first sample (Start's) at once and holds every
// later one until its context ends, as a slow sampler would while Close runs.
type blockingSampler struct {
	calls    atomic.Int64
	inFlight chan struct{} // closed when a held sample has begun
	once     sync.Once
}

func (b *blockingSampler) Sample(ctx context.Context) (Usage, error) {
	if b.calls.Add(1) == 1 {
		return Usage{}, nil
	}
	b.once.Do(func() { close(b.inFlight) })
	<-ctx.Done()
	return Usage{}, nil // as a sampler that finished just then: a sample follows
}

// TestMonitorCloseWaits: Close returns only once the goroutine has ended,
// so that a sample in flight when Close is called has been delivered
// before Close returns and none comes after.
func TestMonitorCloseWaits(t *testing.T) {
	bs := &blockingSampler{inFlight: make(chan struct{})}
	var mu sync.Mutex
	closed, samples := false, 0
	m, err := NewMonitor(capOf(1000, gib, gib), capOf(0, 0, 0), bs, WithInterval(time.Millisecond),
		WithOnSample(func(Sample) {
			mu.Lock()
			defer mu.Unlock()
			if closed {
				t.Error("sample after Close returned")
			}
			samples++
		}))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bs.inFlight:
	case <-time.After(time.Minute):
		t.Fatal("after 1m: still waiting for the goroutine to take a sample")
	}
	// The held sample ends when Close cancels it; Close must wait for it,
	// and for the goroutine, before returning.
	m.Close()
	mu.Lock()
	closed = true
	// The goroutine may take one more (ended) sample on its way out, but
	// the one in flight is delivered before Close returns.
	if samples < 2 {
		t.Errorf("Close returned after %d samples: the one in flight was not delivered", samples)
	}
	mu.Unlock()
	calls := bs.calls.Load()
	m.Close() // idempotent
	if n := bs.calls.Load(); n != calls {
		t.Errorf("the sampler was called %d times after Close returned", n-calls)
	}
}

func TestMonitorErrors(t *testing.T) {
	if _, err := NewMonitor(capOf(1, 0, 0), capOf(0, 0, 0), nil); err == nil {
		t.Error("nil sampler accepted")
	}
	if _, err := NewMonitor(capOf(1, 0, 0), capOf(0, 0, 0), &fakeSampler{}, WithInterval(0)); err == nil {
		t.Error("zero interval accepted")
	}
	m, err := NewMonitor(capOf(1, 0, 0), capOf(0, 0, 0), &fakeSampler{err: errors.New("boom")})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err == nil {
		t.Error("a failing first sample should fail Start")
	}
	m.Close() // nothing started: returns at once
}

func TestHostSampler(t *testing.T) {
	s := NewHostSampler(t.TempDir())
	u, err := s.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if u.Memory == 0 || u.Disk == 0 {
		t.Fatalf("a running machine uses some memory and disk: %+v", u)
	}
	u2, err := s.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m, err := Measure(context.Background(), t.TempDir(), WithGPUDetector(func(context.Context) ([]capability.GPU, error) { return nil, nil }))
	if err != nil {
		t.Fatal(err)
	}
	if u2.CPU > uint64(m.LogicalCores)*1000 {
		t.Fatalf("cpu use %d millicores on %d cores", u2.CPU, m.LogicalCores)
	}
}
