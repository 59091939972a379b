package orchestrator

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
)

// Hot paths of the protocol: every node validates every bid request, every
// requester decodes and ranks every bid.

func BenchmarkValidateBidRequest(b *testing.B) {
	k, id := testPeer(b)
	now := time.Now()
	v := NewValidator(func() time.Time { return now }, RequestLimits{Rate: 1, Burst: b.N + 1})
	msgs := make([][]byte, b.N)
	for i := range msgs {
		r := validRequest(id, now)
		r.Nonce = fmt.Sprintf("nonce-%012d", i)
		msgs[i], _ = SealBidRequest(r, k)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := v.Validate(id, msgs[i]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeDecodeBidRequest(b *testing.B) {
	_, id := testPeer(b)
	r := validRequest(id, time.Now())
	b.ReportAllocs()
	for range b.N {
		data, err := Encode(r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeBidRequest(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBidSignVerify(b *testing.B) {
	k, id := testPeer(b)
	_, req := testPeer(b)
	bid := &Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: req, Price: 1, HoldExpires: time.Now()}
	b.ReportAllocs()
	for range b.N {
		sb, err := SealBid(bid, k)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := OpenBid(sb.Envelope); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRankBids(b *testing.B) {
	for _, n := range []int{3, 30, 300} {
		b.Run(fmt.Sprintf("bids=%d", n), func(b *testing.B) {
			_, id := testPeer(b)
			req := validRequest(id, time.Now())
			bids := make([]*Bid, n)
			for i := range bids {
				bids[i] = &Bid{Provider: peer.ID(fmt.Sprintf("p%04d", i)), Price: float64(i % 7), Score: float64(i % 13),
					Offered: capability.Capability{CPU: capability.CPU{MilliCores: uint64(1000 + i)}, Memory: capability.GiB}}
			}
			cmp := DefaultPreferences().Comparator()
			work := make([]*Bid, n)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				copy(work, bids)
				Rank(req, work, cmp)
			}
		})
	}
}
