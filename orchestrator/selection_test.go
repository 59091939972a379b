package orchestrator

import (
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
)

func TestAcceptable(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	need := capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: 64 * capability.MiB}
	price := 10.0
	req := &BidRequest{Requirements: need, MaxPrice: &price}
	good := Bid{Price: 10, Offered: need, HoldExpires: now.Add(time.Second)}
	for _, tc := range []struct {
		name string
		req  *BidRequest
		bid  func(b *Bid)
		why  string // "" acceptable, else a word of the reason
	}{
		{"at the maximum price", req, func(*Bid) {}, ""},
		{"over the maximum price", req, func(b *Bid) { b.Price = 10.5 }, "price"},
		{"no maximum price", &BidRequest{Requirements: need}, func(b *Bid) { b.Price = 1e9 }, ""},
		{"more than needed", req, func(b *Bid) { b.Offered.Memory *= 2 }, ""},
		{"short of memory", req, func(b *Bid) { b.Offered.Memory /= 2 }, "requirements"},
		{"short of cpu", req, func(b *Bid) { b.Offered.CPU.MilliCores = 100 }, "requirements"},
		{"hold expiring now", req, func(b *Bid) { b.HoldExpires = now }, "expired"},
		{"hold expired", req, func(b *Bid) { b.HoldExpires = now.Add(-time.Second) }, "expired"},
		{"labels that meet the constraints", &BidRequest{Requirements: need, Constraints: mustConstraints(t, "region=eu")},
			func(b *Bid) { b.Labels = Labels{"region": "eu"} }, ""},
		// A provider that predates constraints bids without reading them.
		{"labels that do not", &BidRequest{Requirements: need, Constraints: mustConstraints(t, "region=eu")},
			func(b *Bid) { b.Labels = nil }, "constraint region=eu not met"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := good
			tc.bid(&b)
			why := acceptable(tc.req, &b, now)
			if tc.why == "" && why != "" {
				t.Fatalf("refused: %s", why)
			}
			if tc.why != "" && !strings.Contains(why, tc.why) {
				t.Fatalf("reason %q, want one naming %q", why, tc.why)
			}
		})
	}
}

func TestRankSignedOrdersByRankingThenProvider(t *testing.T) {
	need := capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB}
	req := &BidRequest{Requirements: need}
	roomy := need // headroom counts the tightest dimension: both twice over
	roomy.CPU.MilliCores *= 2
	roomy.Memory *= 2
	bid := func(p string, price, score float64, offered capability.Capability) *SignedBid {
		return &SignedBid{Bid: Bid{Provider: peer.ID(p), Price: price, Score: score, Offered: offered}}
	}
	order := func(bids []*SignedBid) string {
		var s []string
		for _, b := range bids {
			s = append(s, string(b.Provider))
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		name    string
		ranking []string
		bids    []*SignedBid
		want    string
	}{
		{"cheapest first", nil, []*SignedBid{bid("a", 3, 0, need), bid("b", 1, 0, need), bid("c", 2, 0, need)}, "b,c,a"},
		{"same price: higher score first", nil, []*SignedBid{bid("a", 1, 0.2, need), bid("b", 1, 0.9, need)}, "b,a"},
		{"same price and score: more headroom first", nil, []*SignedBid{bid("a", 1, 0.5, need), bid("b", 1, 0.5, roomy)}, "b,a"},
		{"all equal: by provider ID", nil, []*SignedBid{bid("c", 1, 0, need), bid("a", 1, 0, need), bid("b", 1, 0, need)}, "a,b,c"},
		{"score before price", []string{"score", "price"}, []*SignedBid{bid("a", 1, 0.1, need), bid("b", 5, 0.9, need)}, "b,a"},
		{"headroom only", []string{"headroom"}, []*SignedBid{bid("a", 1, 1, need), bid("b", 9, 0, roomy)}, "b,a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rankSigned(req, tc.bids, Preferences{Ranking: tc.ranking}.Comparator())
			if got := order(tc.bids); got != tc.want {
				t.Fatalf("order %s, want %s", got, tc.want)
			}
		})
	}
}
