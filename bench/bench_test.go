package bench

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/p2p"
)

// TestSmoke runs a small bench end to end. It fails only if the bench
// itself fails (a node does not start, a job does not complete), never on
// timing: speed belongs in the report, not in assertions.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Nodes: 10, Jobs: 6, Concurrency: 2, FloorSamples: 5, Progress: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 6 || rep.Failed != 0 {
		t.Fatalf("completed %d, failed %d (%s)", rep.Completed, rep.Failed, rep.FirstError)
	}
	if rep.Floor.N+rep.FloorIncomplete != 5 || rep.SubmitToDone.N != 6 || rep.Join <= 0 || rep.HeapPerNode == 0 {
		t.Fatalf("report is missing figures: %+v", rep)
	}
	// Every job's request reached at least one other node (its winner),
	// and no more than the other nine.
	if rep.Reach.N != 6 || rep.Reach.Min < 1 || rep.Reach.Max > 9 || rep.DeliveriesPerJob < rep.Reach.Mean {
		t.Fatalf("nodes reached per job %+v, deliveries per job %.1f", rep.Reach, rep.DeliveriesPerJob)
	}
	gossip := 0.0
	for p, n := range rep.BytesPerJobByProtocol {
		if strings.HasPrefix(p, "/meshsub/") {
			gossip += n
		}
	}
	if rep.BytesPerJob <= 0 || gossip <= 0 || gossip > rep.BytesPerJob || rep.CPUPerJob <= 0 || rep.CPUPerJobAboveIdle > rep.CPUPerJob || rep.PeakRSS == 0 || rep.Goroutines == 0 {
		t.Fatalf("report is missing figures: %+v", rep)
	}
	t.Logf("%+v", rep)
}

func TestSpread(t *testing.T) {
	if got := spread([]int{4, 9, 5}); got != (Spread{Mean: 6, Min: 4, Max: 9, N: 3}) {
		t.Fatalf("spread %+v", got)
	}
	if (spread(nil) != Spread{}) {
		t.Fatal("empty input should give a zero spread")
	}
}

func TestWireCounterAddsUpByProtocol(t *testing.T) {
	w := newWireCounter()
	a, b := peer.ID("a"), peer.ID("b")
	w.LogSentMessageStream(100, "/dms/local-1f2e/bid/2", a)
	w.LogSentMessageStream(20, "/dms/other/bid/2", b)
	w.LogSentMessageStream(7, "/meshsub/1.3.0", a)
	w.LogSentMessageStream(3, "", b)
	w.LogRecvMessageStream(1000, "/meshsub/1.3.0", a) // received bytes are the sender's count
	if w.Sent() != 130 {
		t.Fatalf("sent %d, want 130", w.Sent())
	}
	want := map[string]int64{"bid/2": 120, "/meshsub/1.3.0": 7, "": 3}
	if got := w.ByProtocol(); !maps.Equal(got, want) {
		t.Fatalf("by protocol %v, want %v", got, want)
	}
}

func TestFitConnections(t *testing.T) {
	for _, tc := range []struct {
		nodes                    int
		limit                    uint64
		wantLow, wantHi, wantFDs int
	}{
		{100, 20000, 32, 64, 0}, // fits: a real node's marks
		{300, 20000, 5, 22, 0},  // 300 x 22 = 6,600 of 20,000; dials to a quarter
		{300, 1024, 1, 4, 0},    // never below a handful
		{300, 0, 32, 64, 0},     // limit unknown: unchanged
	} {
		c := p2p.Config{ConnLow: 32, ConnHigh: 64}
		if err := fitConnections(tc.nodes, tc.limit)(&c); err != nil {
			t.Fatal(err)
		}
		if c.ConnLow != tc.wantLow || c.ConnHigh != tc.wantHi || c.ResourceFDs != tc.wantFDs {
			t.Errorf("%d nodes, limit %d: low %d high %d FDs %d, want %d %d %d", tc.nodes, tc.limit, c.ConnLow, c.ConnHigh, c.ResourceFDs, tc.wantLow, tc.wantHi, tc.wantFDs)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(d)
	if p.P50.Std() != 50*time.Millisecond || p.P95.Std() != 95*time.Millisecond || p.P99.Std() != 99*time.Millisecond || p.N != 100 {
		t.Fatalf("percentiles %+v", p)
	}
	if (percentiles(nil) != Percentiles{}) {
		t.Fatal("empty input should give zero percentiles")
	}
}
