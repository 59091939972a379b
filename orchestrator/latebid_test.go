package orchestrator

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/internal/poll"
)

// openBids is how many bids handleBid has handed to job's bidding round
// that collect has not read yet.
func (r *Requester) openBids(jobID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.open[jobID]; o != nil {
		return len(o.bids)
	}
	return 0
}

// A requester that is slow to run (a loaded machine: its bidding goroutine
// wakes after both the bid and the end of the window) must still use a bid
// it told the provider it took. Before, collect's select picked the window
// or the bid at random: about every other job failed with "0 bids" while
// its provider held for a bid it had been told was received (six jobs in
// a row pass by chance once in 64).
func TestBidTakenAtTheWindowsEndIsUsedOnASlowRequester(t *testing.T) {
	t.Parallel()
	nodes := newFakeMesh(t, 2, func(i int) *fakeBackend {
		b := newFakeBackend(64000) // room for every job: the fake never frees any
		b.onboarded = i == 1
		return b
	})
	r := nodes[0].svc
	// The window is LocalConfig's: a shorter one could end before the
	// request reaches the provider on a loaded machine, and the provider
	// drops a request whose deadline has passed.
	r.cfg.Widen = 0 // one request, one bid
	for i := range 6 {
		sub := wasmJob()
		sub.Job.ID = NewJobID()
		// The progress callback runs on the bidding goroutine: holding it
		// until the bid is in and the window is over is what a starved
		// requester goroutine sees.
		var once sync.Once
		_, err := r.Submit(context.Background(), sub, func(p Progress) {
			if p.Kind != ProgressPublished {
				return
			}
			once.Do(func() {
				poll.Until(t, time.Minute, "the bid to be handed to bidding", func() bool { return r.openBids(sub.Job.ID) > 0 })
				end := p.Time.Add(r.cfg.BiddingWindow)
				poll.Until(t, time.Minute, "the bidding window to end", func() bool { return time.Now().After(end) })
			})
		})
		if err != nil {
			t.Fatalf("job %d: %v (the provider was told its bid was taken)", i, err)
		}
	}
}

// The same on a machine under a CPU hog, end to end: every bid a provider
// was told was taken is one the requester weighed, never one left behind
// when the window closed. Bids are timed to come near the window's end.
func TestEveryBidTakenIsWeighedUnderACPUHog(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	var hogs sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		hogs.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := 0; i < 1e5; i++ {
					_ = i * i
				}
			}
		})
	}
	defer func() { close(stop); hogs.Wait() }()

	const providers = 8
	nodes := newFakeMesh(t, providers+1, func(i int) *fakeBackend {
		b := newFakeBackend(64000)
		b.onboarded = i > 0
		return b
	})
	r := nodes[0].svc
	r.cfg.BiddingWindow = 300 * time.Millisecond
	r.cfg.Widen, r.cfg.Grace = 0, r.cfg.BiddingWindow
	r.cfg.WantBids = providers + 1 // never enough: bidding runs to the window's end
	for _, n := range nodes[1:] {
		// Load 1 and this delay put the bids at the window's end and a
		// little past it.
		n.svc.provider.cfg.MaxBidDelay = r.cfg.BiddingWindow
		n.svc.provider.backend = loaded{n.svc.provider.backend}
	}
	// Count the bids the requester's handler told their provider it took.
	var taken, weighed atomic.Int64
	h := nodes[0].host
	h.mu.Lock()
	inner := h.requests[ProtocolBid]
	h.requests[ProtocolBid] = fakeHandler{inner.maxReq, func(ctx context.Context, from peer.ID, data []byte) ([]byte, error) {
		resp, err := inner.handler(ctx, from, data)
		if err == nil {
			taken.Add(1)
		}
		return resp, err
	}}
	h.mu.Unlock()
	for range 8 {
		sub := wasmJob()
		sub.Job.ID = NewJobID()
		// A job may find no bid in time on a machine this loaded; what
		// counts is that no bid is left behind.
		_, _ = r.Submit(context.Background(), sub, func(p Progress) {
			if p.Kind == ProgressBid {
				weighed.Add(1)
				runtime.Gosched() // a node records each bid: it yields here
			}
		})
		if taken.Load() != weighed.Load() {
			t.Fatalf("the requester told providers it took %d bids and weighed %d", taken.Load(), weighed.Load())
		}
	}
	t.Logf("%d bids taken and weighed", taken.Load())
}

// loaded reports a full machine, so bids take their longest delay.
type loaded struct{ Backend }

func (loaded) Load() float64 { return 1 }
