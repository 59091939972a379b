package orchestrator

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestDistance(t *testing.T) {
	a, b := peer.ID("provider-a"), peer.ID("provider-b")
	if Distance(a, "job-1") != Distance(a, "job-1") {
		t.Fatal("the same provider and job gave two distances")
	}
	if Distance(a, "job-1") == Distance(b, "job-1") {
		t.Fatal("two providers are at one distance from a job")
	}
	if Distance(a, "job-1") == Distance(a, "job-2") {
		t.Fatal("one provider is at one distance from two jobs")
	}
	// Uniform in [0, 1): over many jobs about a tenth fall under 0.1.
	under := 0
	const n = 10000
	for i := range n {
		d := Distance(a, fmt.Sprint("job-", i))
		if d < 0 || d >= 1 {
			t.Fatalf("distance %v outside [0, 1)", d)
		}
		if d < 0.1 {
			under++
		}
	}
	if under < n/20 || under > n/5 {
		t.Fatalf("%d of %d distances under 0.1, want about %d", under, n, n/10)
	}
}

func TestEligible(t *testing.T) {
	for _, tc := range []struct {
		d, spread float64
		want      bool
	}{
		{0.05, 0.1, true},
		{0.1, 0.1, false}, // the spread is an open bound
		{0.9, 0.1, false},
		{0.99, 0, true}, // 0: everyone
		{0.99, 1, true},
		{0.99, 1.5, true},
		{0.99, -1, true},
	} {
		if got := Eligible(tc.d, tc.spread); got != tc.want {
			t.Errorf("Eligible(%v, %v) = %v, want %v", tc.d, tc.spread, got, tc.want)
		}
	}
}

func TestSpreadFor(t *testing.T) {
	for _, tc := range []struct {
		want, n int
		factor  float64
		spread  float64
	}{
		{3, 100, 2, 0.06},
		{3, 6, 2, 1},      // the whole mesh is needed
		{3, 5, 2, 1},      // more than the whole mesh: everyone
		{0, 100, 2, 0.02}, // want at least one
		{3, 0, 2, 1},      // no estimate: everyone
		{3, -1, 2, 1},
		{3, 100, 0, 1}, // factor 0: everyone
		{3, 100, -2, 1},
		{1, math.MaxInt, 2, 2 / float64(math.MaxInt)},
	} {
		got := SpreadFor(tc.want, tc.n, tc.factor)
		if math.Abs(got-tc.spread) > 1e-12 {
			t.Errorf("SpreadFor(%d, %d, %v) = %v, want %v", tc.want, tc.n, tc.factor, got, tc.spread)
		}
	}
}

func TestBidDelay(t *testing.T) {
	const most = time.Second
	for _, tc := range []struct {
		d, spread, load float64
		max             time.Duration
		want            time.Duration
	}{
		{0, 0.1, 0, most, 0},           // nearest and idle: at once
		{0.1, 0.1, 1, most, most},      // at the edge and full: the longest
		{0.05, 0.1, 0, most, most / 4}, // half way out, idle
		{0, 0.1, 0.5, most, most / 4},  // nearest, half loaded
		{0.5, 0, 0, most, most / 4},    // spread 0 is everyone
		{0.5, 2, 0, most, most / 4},    // so is one over 1
		{0.9, 0.1, 0, most, most / 2},  // beyond the spread: capped
		{0, 0.1, 7, most, most / 2},    // load capped at full
		{0, 0.1, -3, most, 0},          // and at idle
		{0.1, 0.1, 1, 0, 0},            // no delay at all
		{0.1, 0.1, 1, -time.Second, 0},
	} {
		if got := BidDelay(tc.d, tc.spread, tc.load, tc.max); got != tc.want {
			t.Errorf("BidDelay(%v, %v, %v, %v) = %v, want %v", tc.d, tc.spread, tc.load, tc.max, got, tc.want)
		}
	}
}
