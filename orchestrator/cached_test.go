package orchestrator

import (
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
)

// On a price tie the provider that already holds the module (or the
// inputs) wins, even against a higher score; a cheaper bid still wins; a
// claim about content the job does not fetch counts for nothing.
func TestRankPrefersACachingProviderOnAPriceTie(t *testing.T) {
	need := capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB}
	big := &BidRequest{Requirements: need, ModuleHash: strings.Repeat("ab", 32), ModuleSize: 2 << 20,
		InputsHash: strings.Repeat("cd", 32), InputSize: 1 << 20}
	small := &BidRequest{Requirements: need, ModuleHash: strings.Repeat("ab", 32), ModuleSize: 4 << 10}
	bid := func(p string, price, score float64, module, inputs bool) *SignedBid {
		return &SignedBid{Bid: Bid{Provider: peer.ID(p), Price: price, Score: score, Offered: need, HasModule: module, HasInputs: inputs}}
	}
	for _, tc := range []struct {
		name    string
		req     *BidRequest
		ranking []string
		bids    []*SignedBid
		want    string
	}{
		{"same price: the one with the module first, whatever its score", big, nil,
			[]*SignedBid{bid("a", 1, 0.9, false, false), bid("b", 1, 0.1, true, false)}, "b,a"},
		{"same price: more cached bytes first (a 2 MiB module over 1 MiB of inputs)", big, nil,
			[]*SignedBid{bid("a", 1, 0, false, true), bid("b", 1, 0, true, false), bid("c", 1, 0, true, true)}, "c,b,a"},
		{"a cheaper bid beats a caching one", big, nil,
			[]*SignedBid{bid("a", 1, 0, true, true), bid("b", 0.5, 0, false, false)}, "b,a"},
		{"an inlined module moves with the invocation: no preference", small, nil,
			[]*SignedBid{bid("b", 1, 0, true, false), bid("a", 1, 0, false, false)}, "a,b"},
		{"a ranking without price still breaks full ties by it", big, []string{"score"},
			[]*SignedBid{bid("a", 1, 0.5, false, false), bid("b", 2, 0.5, true, false)}, "b,a"},
		{"a ranking without price keeps score first", big, []string{"score"},
			[]*SignedBid{bid("a", 1, 0.9, false, false), bid("b", 1, 0.5, true, false)}, "a,b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rankSigned(tc.req, tc.bids, Preferences{Ranking: tc.ranking}.Comparator())
			var got []string
			for _, b := range tc.bids {
				got = append(got, string(b.Bid.Provider))
			}
			if strings.Join(got, ",") != tc.want {
				t.Fatalf("order %s, want %s", strings.Join(got, ","), tc.want)
			}
		})
	}
}

// A provider's bid says what it holds of what the request names, and only
// what would otherwise be fetched.
func TestBidSaysWhatTheProviderHolds(t *testing.T) {
	module, inputs := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	p := &Provider{backend: &fakeBackend{held: []string{module, inputs}}}
	for _, tc := range []struct {
		name              string
		req               BidRequest
		wantMod, wantInps bool
	}{
		{"both held", BidRequest{ModuleHash: module, ModuleSize: 2 << 20, InputsHash: inputs, InputSize: 100}, true, true},
		{"module inlined", BidRequest{ModuleHash: module, ModuleSize: MaxInlineModule, InputsHash: inputs, InputSize: 100}, false, true},
		{"other content", BidRequest{ModuleHash: strings.Repeat("ef", 32), ModuleSize: 2 << 20}, false, false},
		{"nothing named", BidRequest{ModuleSize: 2 << 20}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, i := p.holds(&tc.req)
			if m != tc.wantMod || i != tc.wantInps {
				t.Fatalf("holds module %v inputs %v, want %v %v", m, i, tc.wantMod, tc.wantInps)
			}
		})
	}
}
