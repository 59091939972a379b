package orchestrator

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Bid-storm control. In a mesh of N providers that all fit a job, letting
// every one bid would make the requester's work per job grow with N. Two
// things keep it flat:
//
//   - The requester names a Spread: the share of the key space that should
//     bid, about SpreadFactor*WantBids/N. A provider whose distance to the
//     job ID is beyond it stays silent. If too few bids come, the requester
//     asks again at the same spread; if still no bid has come, at four
//     times the spread, then at Spread 1 (everyone) (widening.go). So a
//     sparse keyspace costs a few short delays, never a failed job.
//   - Eligible providers wait a moment that grows with their distance and
//     their load before bidding, so the nearest and least loaded answer
//     first and the requester has WantBids before the rest speak.
//
// Distances are the XOR of hashes, as in Kademlia: uniform, and the same
// on every node.

// Distance is how far a provider is from a job, uniform in [0, 1).
func Distance(p peer.ID, jobID string) float64 {
	a := sha256.Sum256([]byte(p))
	b := sha256.Sum256([]byte(jobID))
	x := binary.BigEndian.Uint64(a[:8]) ^ binary.BigEndian.Uint64(b[:8])
	return float64(x>>11) / (1 << 53)
}

// Eligible reports whether a provider at distance d bids on a request with
// the given spread (0 and anything >= 1 mean everyone).
func Eligible(d, spread float64) bool {
	return spread <= 0 || spread >= 1 || d < spread
}

// MaxExplainers is about how many providers a request asks to say why they
// do not bid: enough for a summary a user can act on, few enough that a
// job nobody can run costs its requester a few dozen streams, not one per
// node of the mesh.
const MaxExplainers = 16

// Explains reports whether a provider at distance d says why it does not
// bid on a request that asks the given share to (0: none, 1: everyone).
func Explains(d, explain float64) bool {
	return explain >= 1 || (explain > 0 && d < explain)
}

// SpreadFor is the spread a requester asks for when it wants want bids and
// estimates n providers in the mesh.
func SpreadFor(want, n int, factor float64) float64 {
	if n <= 0 || factor <= 0 {
		return 1
	}
	s := factor * float64(max(want, 1)) / float64(n)
	if s >= 1 || math.IsNaN(s) {
		return 1
	}
	return s
}

// BidDelay is how long a provider waits before bidding: up to maxDelay,
// half by its place within the spread, half by its load (0 idle, 1 full).
func BidDelay(d, spread, load float64, maxDelay time.Duration) time.Duration {
	if maxDelay <= 0 {
		return 0
	}
	if spread <= 0 || spread > 1 {
		spread = 1
	}
	place := min(d/spread, 1)
	load = min(max(load, 0), 1)
	return time.Duration((place + load) / 2 * float64(maxDelay))
}
