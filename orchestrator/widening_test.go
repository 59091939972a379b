package orchestrator

import (
	"testing"
	"time"
)

// step is one outcome of widening.next.
type step struct {
	spread float64
	again  bool
	after  time.Duration
}

func TestWideningPlan(t *testing.T) {
	const (
		resend = 250 * time.Millisecond
		widen  = 400 * time.Millisecond
		pace   = 250 * time.Millisecond
	)
	w := newWidening(0.1, resend, widen, pace)
	if got := w.first(); got != resend {
		t.Fatalf("first step after %v, want resend %v", got, resend)
	}
	for _, tc := range []struct {
		name        string
		bids, asked int
		want        step
	}{
		// Step 1: whatever has come, too few: the same request once more,
		// and the next step at widen (from the first request) or one pace
		// later, whichever is later.
		{"no bid yet: same spread again", 0, 1, step{0.1, true, pace}},
		{"some bids: same spread again", 2, 1, step{0.1, true, pace}},
		// Step 2: four times as wide, only if nothing came.
		{"still no bid: four times as wide", 0, 2, step{0.4, true, pace}},
		{"a bid came: no wider", 1, 2, step{}},
		// Step 3: everyone, only if nothing came.
		{"still none: everyone", 0, 3, step{1, true, 0}},
		{"a bid came late: not everyone", 1, 3, step{}},
		{"no fourth step", 0, 4, step{}},
		{"never asked: nothing to repeat", 0, 0, step{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spread, again, after := w.next(tc.bids, tc.asked)
			if got := (step{spread, again, after}); got != tc.want {
				t.Fatalf("next(%d bids, asked %d) = %+v, want %+v", tc.bids, tc.asked, got, tc.want)
			}
		})
	}
}

// The wait before step 2 counts from the first request: it is widen less
// the resend already waited, never less than one pace.
func TestWideningWaitsForWidenFromTheFirstRequest(t *testing.T) {
	w := newWidening(0.1, 300*time.Millisecond, 900*time.Millisecond, 250*time.Millisecond)
	if _, _, after := w.next(0, 1); after != 600*time.Millisecond {
		t.Fatalf("step 2 %v after step 1, want 600ms (900ms from the first request)", after)
	}
	w = newWidening(0.1, 300*time.Millisecond, 350*time.Millisecond, 250*time.Millisecond)
	if _, _, after := w.next(0, 1); after != 250*time.Millisecond {
		t.Fatalf("step 2 %v after step 1, want the 250ms pace", after)
	}
}

// A spread that four times over reaches everyone has no third step, and
// one that is already everyone is asked again as it was.
func TestWideningWideSpreads(t *testing.T) {
	for _, tc := range []struct {
		spread float64
		steps  []step // with no bid ever coming
	}{
		{0.3, []step{{0.3, true, time.Second}, {1, true, 0}}},
		{0.25, []step{{0.25, true, time.Second}, {1, true, 0}}},
		{1, []step{{1, true, time.Second}, {1, true, 0}}},
		{0.2, []step{{0.2, true, time.Second}, {0.8, true, time.Second}, {1, true, 0}}},
	} {
		w := newWidening(tc.spread, time.Second, time.Second, time.Second)
		asked := 1
		var got []step
		for d := w.first(); d > 0 && asked < 10; asked++ {
			spread, again, after := w.next(0, asked)
			if !again {
				break
			}
			got = append(got, step{spread, again, after})
			d = after
		}
		if len(got) != len(tc.steps) {
			t.Fatalf("spread %v: steps %+v, want %+v", tc.spread, got, tc.steps)
		}
		for i := range got {
			if got[i] != tc.steps[i] {
				t.Fatalf("spread %v: steps %+v, want %+v", tc.spread, got, tc.steps)
			}
		}
	}
}

func TestWideningOff(t *testing.T) {
	w := newWidening(0.1, time.Second, time.Second, 0)
	if d := w.first(); d != 0 {
		t.Fatalf("Widen 0: first step after %v, want never", d)
	}
	if _, again, _ := w.next(0, 1); again {
		t.Fatal("Widen 0 asked again")
	}
}

func TestWideningOnASuddenDropInBids(t *testing.T) {
	w := newWidening(0.1, 250*time.Millisecond, 400*time.Millisecond, 250*time.Millisecond)
	for _, tc := range []struct {
		name   string
		bids   int
		usual  float64
		acted  bool
		spread float64
		wait   time.Duration
		again  bool
	}{
		{"one bid where three come: four times as wide, at once", 1, 3, false, 0.4, 400 * time.Millisecond, true},
		{"no bid where two come", 0, 2, false, 0.4, 400 * time.Millisecond, true},
		{"half the usual is no drop", 1, 2, false, 0, 0, false},
		{"as many as usual", 2, 2, false, 0, 0, false},
		{"nothing known yet", 1, 0, false, 0, 0, false},
		{"once per round", 1, 3, true, 0, 0, false},
	} {
		spread, wait, again := w.short(tc.bids, tc.usual, tc.acted)
		if spread != tc.spread || wait != tc.wait || again != tc.again {
			t.Errorf("%s: short(%d, %v, %v) = %v, %v, %v; want %v, %v, %v", tc.name, tc.bids, tc.usual, tc.acted, spread, wait, again, tc.spread, tc.wait, tc.again)
		}
	}
	if spread, _, _ := newWidening(0.5, time.Second, time.Second, time.Second).short(1, 3, false); spread != 1 {
		t.Errorf("a drop at spread 0.5 widens to %v, want everyone (1)", spread)
	}
	if _, _, again := newWidening(0.1, 0, 0, 0).short(0, 3, false); again {
		t.Error("with widening off, a drop asked again")
	}
}
