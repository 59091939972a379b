package resources

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
	"pgregory.net/rapid"
)

type ledgerOp struct {
	kind   int
	id, to string
	c      capability.Capability
	ttl    time.Duration
}

const (
	opHold = iota
	opRelease
	opPromote
	opLock
	opUnlock
	opAdvance
	opRegister
	opCeiling
	opPin
	opCount
)

var propGPUs = []capability.GPU{
	{Vendor: "NVIDIA", Model: "NVIDIA A10", Memory: 24 * gib, Index: 0, UUID: "GPU-0"},
	{Vendor: "NVIDIA", Model: "NVIDIA A10", Memory: 24 * gib, Index: 1, UUID: "GPU-1"},
	{Vendor: "NVIDIA", Model: "NVIDIA H100", Memory: 80 * gib, Index: 2, UUID: "GPU-2"},
}

func genPropCap(t *rapid.T, label string, minMilli, maxMilli, minMem, maxMem uint64) capability.Capability {
	c := capOf(rapid.Uint64Range(minMilli, maxMilli).Draw(t, label+"cpu"), rapid.Uint64Range(minMem, maxMem).Draw(t, label+"mem"), rapid.Uint64Range(minMem, maxMem).Draw(t, label+"disk"))
	for i := range rapid.IntRange(0, 2).Draw(t, label+"ngpu") {
		switch rapid.IntRange(0, 2).Draw(t, fmt.Sprint(label, "gpukind", i)) {
		case 0:
			c.GPUs = append(c.GPUs, capability.GPU{Vendor: "nvidia"})
		case 1:
			c.GPUs = append(c.GPUs, capability.GPU{Memory: 40 * gib})
		default:
			c.GPUs = append(c.GPUs, capability.GPU{UUID: rapid.SampledFrom([]string{"GPU-0", "GPU-1", "GPU-2"}).Draw(t, fmt.Sprint(label, "uuid", i))})
		}
	}
	return c
}

func genOp(t *rapid.T, i int) ledgerOp {
	ids := []string{"x0", "x1", "x2"}
	op := ledgerOp{
		kind: rapid.IntRange(0, opCount-1).Draw(t, fmt.Sprint("kind", i)),
		id:   rapid.SampledFrom(ids).Draw(t, fmt.Sprint("id", i)),
		to:   rapid.SampledFrom(ids).Draw(t, fmt.Sprint("to", i)),
		ttl:  time.Duration(rapid.IntRange(1, 60).Draw(t, fmt.Sprint("ttl", i))) * time.Second,
	}
	switch op.kind {
	case opHold, opLock:
		op.c = genPropCap(t, fmt.Sprint("op", i), 0, 2500, 0, 5*gib)
	case opRegister:
		op.c = genPropCap(t, fmt.Sprint("reg", i), 2000, 8000, 4*gib, 16*gib)
		op.c.GPUs = propGPUs[:rapid.IntRange(0, len(propGPUs)).Draw(t, fmt.Sprint("reggpus", i))]
	case opCeiling:
		op.c = genPropCap(t, fmt.Sprint("ceil", i), 2000, 8000, 4*gib, 16*gib)
	}
	return op
}

// checkInvariant is what the DESIGN promises: holds plus locks never exceed
// the registered capability, and available never offers more than is left.
func checkInvariant(s Snapshot) error {
	used, err := s.Held.Add(s.Locked)
	if err != nil {
		return err
	}
	left, err := s.Registered.Subtract(used)
	if err != nil {
		return fmt.Errorf("holds %v + locks %v exceed registered %v: %w", s.Held, s.Locked, s.Registered, err)
	}
	if !s.Available.Fits(left) {
		return fmt.Errorf("available %v is more than registered - held - locked = %v", s.Available, left)
	}
	return nil
}

// TestLedgerConcurrentInvariant drives one ledger from many goroutines at
// once with random holds (some displacing others), pins, promotes, releases, locks, unlocks, re-registrations,
// ceilings and clock jumps (expiring holds), while a checker takes snapshots.
func TestLedgerConcurrentInvariant(t *testing.T) {
	var succeeded, refused [opCount]atomic.Int64
	defer func() {
		// Shows (with -v) that the random scripts really place and promote.
		t.Logf("succeeded: hold %d promote %d lock %d unlock %d register %d; refused: hold %d promote %d lock %d register %d",
			succeeded[opHold].Load(), succeeded[opPromote].Load(), succeeded[opLock].Load(), succeeded[opUnlock].Load(), succeeded[opRegister].Load(),
			refused[opHold].Load(), refused[opPromote].Load(), refused[opLock].Load(), refused[opRegister].Load())
	}()
	rapid.Check(t, func(rt *rapid.T) {
		clk := newFakeClock()
		l, err := NewLedger(memDatastore(), WithClock(clk.Now))
		if err != nil {
			rt.Fatal(err)
		}
		reg := genPropCap(rt, "reg", 4000, 8000, 8*gib, 16*gib)
		reg.GPUs = propGPUs
		if err := l.Register(reg); err != nil {
			rt.Fatal(err)
		}
		workers := rapid.IntRange(2, 6).Draw(rt, "workers")
		scripts := make([][]ledgerOp, workers)
		for w := range scripts {
			for i := range rapid.IntRange(1, 40).Draw(rt, fmt.Sprint("len", w)) {
				scripts[w] = append(scripts[w], genOp(rt, w*1000+i))
			}
		}
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			failures []error
			stop     = make(chan struct{})
		)
		fail := func(err error) {
			mu.Lock()
			failures = append(failures, err)
			mu.Unlock()
		}
		checkerDone := make(chan struct{})
		go func() {
			defer close(checkerDone)
			for {
				if err := checkInvariant(l.Snapshot()); err != nil {
					fail(err)
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
		for w, script := range scripts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, op := range script {
					var err error
					switch op.kind {
					case opHold:
						// It may displace a hold of its own or of the next worker.
						_, err = l.Reserve(fmt.Sprint(w, op.id), op.c, clk.Now().Add(op.ttl), []string{fmt.Sprint((w+1)%workers, op.to), fmt.Sprint(w, op.to)})
					case opPin:
						err = l.Pin(fmt.Sprint(w, op.id))
					case opRelease:
						l.Release(fmt.Sprint(w, op.id))
					case opPromote:
						err = l.Promote(fmt.Sprint(w, op.id), op.to, []byte(op.to))
					case opLock:
						err = l.Lock(op.to, op.c, nil)
					case opUnlock:
						err = l.Unlock(op.to)
					case opAdvance:
						clk.Advance(op.ttl / 2)
					case opRegister:
						err = l.Register(op.c)
					case opCeiling:
						l.SetCeiling(op.c)
					}
					if err == nil {
						succeeded[op.kind].Add(1)
					} else {
						refused[op.kind].Add(1)
					}
					// Refusals are expected; anything else is a bug.
					if err != nil && !errors.Is(err, capability.ErrInsufficient) && !errors.Is(err, ErrUnknownHold) &&
						!errors.Is(err, ErrUnknownLock) && !errors.Is(err, ErrDuplicateID) && !errors.Is(err, ErrBelowLocked) &&
						!errors.Is(err, ErrBadExpiry) { // another worker moved the clock past a short ttl
						fail(fmt.Errorf("op %+v: unexpected error %w", op, err))
					}
					if err := checkInvariant(l.Snapshot()); err != nil {
						fail(err)
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		<-checkerDone
		for _, err := range failures {
			rt.Error(err)
		}
		// Nothing leaks: once everything is released, all is available again.
		for _, lk := range l.Locks() {
			if err := l.Unlock(lk.ID); err != nil {
				rt.Fatal(err)
			}
		}
		for _, h := range l.Holds() {
			l.Release(h.ID)
		}
		l.ClearCeiling()
		if s := l.Snapshot(); !s.Available.Equal(s.Registered) || !s.Held.IsZero() || !s.Locked.IsZero() {
			rt.Fatalf("after releasing everything: %+v", s)
		}
	})
}

// TestLedgerManyHoldsAtOnce is the bidding storm: 200 bid requests arrive at
// once for 4 cores, each wanting a tenth of a core; exactly 40 win a hold.
func TestLedgerManyHoldsAtOnce(t *testing.T) {
	l := newTestLedger(t, nil)
	if err := l.Register(capOf(4000, 8*gib, 8*gib)); err != nil {
		t.Fatal(err)
	}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := l.Reserve(fmt.Sprintf("bid-%d", i), capOf(100, 0, 0), time.Now().Add(time.Minute), nil)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, capability.ErrInsufficient):
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 40 || refused.Load() != 160 {
		t.Fatalf("%d holds placed, %d refused; want 40 and 160", ok.Load(), refused.Load())
	}
	if err := checkInvariant(l.Snapshot()); err != nil {
		t.Fatal(err)
	}
}
