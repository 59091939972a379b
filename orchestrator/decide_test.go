package orchestrator

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
)

// A provider's bid decision is a pure function: each case is one request
// and what the provider knew, no host, no clock.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := DefaultProviderConfig()
	cfg.MaxBidDelay = 100 * time.Millisecond
	cpu := func(m uint64) capability.Capability {
		return capability.Capability{CPU: capability.CPU{MilliCores: m}, Memory: capability.GiB}
	}
	price := capability.PriceInformation{Currency: "DMS", PerCoreHour: 2}
	offer := Offer{
		Registered: cpu(4000),
		Available: capability.Capability{CPU: capability.CPU{MilliCores: 2000, Model: "m"}, Memory: capability.GiB,
			Connectivity: capability.Connectivity{ListenAddrs: []string{"/ip4/1.2.3.4/tcp/1"}}},
		Price: price, Score: 300,
	}
	maxPrice := func(v float64) *float64 { return &v }
	req := func(edit func(*BidRequest)) *BidRequest {
		r := &BidRequest{JobID: "job-1", Requirements: cpu(1000), Duration: seconds.Duration(time.Hour), Deadline: now.Add(time.Minute), Spread: 1}
		if edit != nil {
			edit(r)
		}
		return r
	}
	in := func(edit func(*decisionInput)) decisionInput {
		i := decisionInput{Now: now, Standing: Newcomer, Offer: offer, Checked: true, Waited: true, Config: cfg}
		if edit != nil {
			edit(&i)
		}
		return i
	}
	for _, tc := range []struct {
		name    string
		req     *BidRequest
		in      decisionInput
		decline string // a part of the reason; "" for a bid
		record  bool
	}{
		{"a newcomer's request that fits", req(nil), in(nil), "", false},
		{"a lapsing requester", req(nil), in(func(i *decisionInput) { i.Standing = Lapsing }), "let more holds lapse", false},
		{"requirements that do not fit", req(func(r *BidRequest) { r.Requirements = cpu(3000) }), in(nil), "do not fit available", false},
		{"beyond what is available, within what would give way", req(func(r *BidRequest) { r.Requirements = cpu(3000) }), in(func(i *decisionInput) { i.Displaceable = cpu(1000) }), "", false},
		{"beyond what is available and what would give way", req(func(r *BidRequest) { r.Requirements = cpu(3000) }), in(func(i *decisionInput) { i.Standing, i.Displaceable = Known, cpu(500) }), "do not fit available", false},
		{"a throttled requester", req(nil), in(func(i *decisionInput) { i.Standing = Throttled }), "far longer than it ran", false},
		{"a lapsing requester whose job fits nowhere", req(func(r *BidRequest) { r.Requirements = cpu(3000) }), in(func(i *decisionInput) { i.Standing = Lapsing }), "let more holds lapse", false},
		{"a job the node cannot run", req(nil), in(func(i *decisionInput) { i.CanRun = errors.New("no such image") }), "no such image", true},
		{"over the max price", req(func(r *BidRequest) { r.MaxPrice = maxPrice(1.5) }), in(nil), "over max price", false},
		{"at the max price", req(func(r *BidRequest) { r.MaxPrice = maxPrice(2) }), in(nil), "", false},
		{"constraints the labels meet", req(func(r *BidRequest) { r.Constraints = mustConstraints(t, "region=eu-west", "gpu") }),
			in(func(i *decisionInput) { i.Labels = Labels{"region": "eu-west", "gpu": "a100"} }), "", false},
		{"a constraint the labels do not meet", req(func(r *BidRequest) { r.Constraints = mustConstraints(t, "region=eu-west") }),
			in(func(i *decisionInput) { i.Labels = Labels{"region": "us-east"} }), "constraint region=eu-west not met (region=us-east)", true},
		{"a constraint on a label the provider lacks", req(func(r *BidRequest) { r.Constraints = mustConstraints(t, "tier in (gold,silver)") }),
			in(nil), "constraint tier in (gold,silver) not met (no tier label)", true},
		{"a constraint not met, from a lapsing requester", req(func(r *BidRequest) { r.Constraints = mustConstraints(t, "!gpu") }),
			in(func(i *decisionInput) { i.Standing, i.Labels = Lapsing, Labels{"gpu": "h100"} }), "constraint !gpu not met (gpu=h100)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(tc.req, tc.in)
			if tc.decline == "" {
				if d.Decline != "" || d.Delay != 0 {
					t.Fatalf("declined %q (delay %v), want a bid", d.Decline, d.Delay)
				}
				return
			}
			if !strings.Contains(d.Decline, tc.decline) || d.Record != tc.record {
				t.Fatalf("decline %q (recorded %v), want one naming %q (recorded %v)", d.Decline, d.Record, tc.decline, tc.record)
			}
		})
	}

	t.Run("the bid", func(t *testing.T) {
		d := decide(req(nil), in(nil))
		if d.Quote != 2 {
			t.Errorf("quote %v, want 2 (a core for an hour at 2)", d.Quote)
		}
		if d.Offered.CPU.MilliCores != 2000 || d.Offered.Price != price || d.Offered.CPU.Score != 300 || d.Offered.CPU.Model != "m" {
			t.Errorf("offered %+v, want what is available with the price and score", d.Offered)
		}
		if len(d.Offered.Connectivity.ListenAddrs) != 0 {
			t.Errorf("offered carries listen addresses %v", d.Offered.Connectivity.ListenAddrs)
		}
		// What would give way to the requester is offered too.
		d = decide(req(func(r *BidRequest) { r.Requirements = cpu(3000) }), in(func(i *decisionInput) { i.Standing, i.Displaceable = Known, cpu(1500) }))
		if d.Offered.CPU.MilliCores != 3500 {
			t.Errorf("offered %d millicores, want the 2000 available and the 1500 that would give way", d.Offered.CPU.MilliCores)
		}
	})

	t.Run("CanRun is asked last", func(t *testing.T) {
		// Only once nothing cheaper declines: it may ask a container engine.
		if d := decide(req(nil), in(func(i *decisionInput) { i.Checked = false })); !d.CheckCanRun || d.Decline != "" {
			t.Errorf("unchecked: %+v, want CheckCanRun", d)
		}
		if d := decide(req(nil), in(func(i *decisionInput) { i.Checked, i.Standing = false, Lapsing })); d.CheckCanRun || d.Decline == "" {
			t.Errorf("a lapsing requester, unchecked: %+v, want a decline without asking", d)
		}
	})

	t.Run("hold expiry", func(t *testing.T) {
		// min(deadline, now+window) + grace.
		if d := decide(req(nil), in(nil)); !d.Expires.Equal(now.Add(cfg.HoldWindow + cfg.HoldGrace)) {
			t.Errorf("far deadline: expires %v, want now+window+grace", d.Expires.Sub(now))
		}
		soon := now.Add(time.Second)
		if d := decide(req(func(r *BidRequest) { r.Deadline = soon }), in(nil)); !d.Expires.Equal(soon.Add(cfg.HoldGrace)) {
			t.Errorf("near deadline: expires %v, want deadline+grace", d.Expires.Sub(now))
		}
	})

	t.Run("delay", func(t *testing.T) {
		delay := func(distance, load float64) time.Duration {
			d := decide(req(nil), in(func(i *decisionInput) { i.Waited, i.Distance, i.Load = false, distance, load }))
			if d.Decline != "" {
				t.Fatalf("declined %q", d.Decline)
			}
			return d.Delay
		}
		if near, far := delay(0.1, 0), delay(0.9, 0); !(near > 0 && far > near) {
			t.Errorf("delay near %v, far %v: want it to grow with distance", near, far)
		}
		if idle, busy := delay(0.5, 0), delay(0.5, 0.9); !(busy > idle) {
			t.Errorf("delay idle %v, busy %v: want it to grow with load", idle, busy)
		}
		if d := delay(1, 1); d > cfg.MaxBidDelay {
			t.Errorf("delay %v beyond the max %v", d, cfg.MaxBidDelay)
		}
		// Declines are decided before any delay is waited.
		if d := decide(req(nil), in(func(i *decisionInput) { i.Waited, i.Distance, i.Standing = false, 0.9, Lapsing })); d.Delay != 0 || d.Decline == "" {
			t.Errorf("a lapsing requester: delay %v, decline %q; want a decline at once", d.Delay, d.Decline)
		}
		// No delay configured: a bid at once.
		if d := decide(req(nil), in(func(i *decisionInput) { i.Waited, i.Distance, i.Config.MaxBidDelay = false, 0.9, 0 })); d.Delay != 0 || d.Decline != "" {
			t.Errorf("no max delay: delay %v, decline %q; want a bid at once", d.Delay, d.Decline)
		}
	})
}
