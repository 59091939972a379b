package orchestrator

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/internal/seconds"
)

// Preferences are a node's choices on both sides of the protocol: which
// requests it bids for as a provider, and how it ranks bids as a requester.
type Preferences struct {
	// MinPrice: requests whose maximum price is below this are not bid for.
	MinPrice float64 `json:"min_price,omitempty"`
	// AllowedExecutors defaults to wasm only: containers (docker) and native
	// processes are opted into.
	AllowedExecutors  []string  `json:"allowed_executors,omitempty"`
	AllowedRequesters []peer.ID `json:"allowed_requesters,omitempty"` // empty: anyone
	DeniedRequesters  []peer.ID `json:"denied_requesters,omitempty"`
	// MaxDuration is the longest job this provider bids for; 0 means
	// DefaultMaxDuration. A job runs at most its duration, so this is how
	// long a stranger may tie up the offer.
	MaxDuration seconds.Duration `json:"max_duration,omitempty"`
	// Ranking orders bids at the requester: criteria among "price",
	// "score" and "headroom", most important first.
	Ranking []string `json:"ranking,omitempty"`
	// Labels describe this provider to requesters (region=eu-west): jobs
	// place themselves by them (constraint.go). Bids carry them.
	Labels Labels `json:"labels,omitempty"`
}

// DefaultPreferences bids on wasm jobs from anyone and ranks bids by price,
// then benchmark score, then headroom.
func DefaultPreferences() Preferences {
	return Preferences{AllowedExecutors: []string{ExecutorWasm}, Ranking: []string{"price", "score", "headroom"}}
}

// Validate checks the names a user could get wrong.
func (p Preferences) Validate() error {
	if !(p.MinPrice >= 0) {
		return fmt.Errorf("min price %v: want a number >= 0", p.MinPrice)
	}
	for _, e := range p.AllowedExecutors {
		if err := checkExecutor(e); err != nil {
			return fmt.Errorf("allowed executors: %w", err)
		}
	}
	if p.MaxDuration < 0 {
		return fmt.Errorf("max duration %v: must not be negative", p.MaxDuration)
	}
	if err := p.Labels.Validate(); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	for _, r := range p.Ranking {
		switch r {
		case "price", "score", "headroom":
		default:
			return fmt.Errorf("ranking %q: want price, score or headroom", r)
		}
	}
	return nil
}

// DefaultMaxDuration caps the jobs a provider bids for unless its
// preferences say otherwise.
const DefaultMaxDuration = 24 * time.Hour

// MaxJobDuration is the longest job these preferences bid for.
func (p Preferences) MaxJobDuration() time.Duration {
	if p.MaxDuration > 0 {
		return p.MaxDuration.Std()
	}
	return DefaultMaxDuration
}

// Executors are the executor kinds the provider runs (wasm unless it
// opted into others).
func (p Preferences) Executors() []string {
	if len(p.AllowedExecutors) == 0 {
		return []string{ExecutorWasm}
	}
	return p.AllowedExecutors
}

// Accepts reports whether a provider with these preferences bids on req,
// and if not, why.
func (p Preferences) Accepts(req *BidRequest) (bool, string) {
	if _, why := p.refusal(req); why != nil {
		return false, why.Error()
	}
	return true, ""
}

// refusal is why these preferences refuse req, for the provider's own
// record (long) and, with a reason code, for the requester (short); nil
// when they accept it.
func (p Preferences) refusal(req *BidRequest) (short *DeclineError, long error) {
	if !slices.Contains(p.Executors(), req.Executor) {
		return Declined(ReasonNoExecutor, "does not run %s jobs", req.Executor),
			fmt.Errorf("this provider does not run %s jobs (dms onboard --executors opts in)", req.Executor)
	}
	if slices.Contains(p.DeniedRequesters, req.Requester) {
		return Declined(ReasonRequester, "does not take this requester's jobs"), errors.New("requester denied")
	}
	if len(p.AllowedRequesters) > 0 && !slices.Contains(p.AllowedRequesters, req.Requester) {
		return Declined(ReasonRequester, "does not take this requester's jobs"), errors.New("requester not allowed")
	}
	if limit := p.MaxJobDuration(); req.Duration.Std() > limit {
		return Declined(ReasonDuration, "runs jobs of at most %v", limit),
			fmt.Errorf("duration %v over this provider's maximum %v", req.Duration, limit)
	}
	if p.MinPrice > 0 && req.MaxPrice != nil && *req.MaxPrice < p.MinPrice {
		return Declined(ReasonPrice, "asks at least %v", p.MinPrice),
			fmt.Errorf("max price %v below the minimum %v", *req.MaxPrice, p.MinPrice)
	}
	return nil, nil
}

// CapabilityComparator orders two bids for one request: negative when a is
// better than b.
type CapabilityComparator func(req *BidRequest, a, b *Bid) int

// Comparator builds the comparator the ranking names. Equal prices go to
// the provider that holds the job's module or inputs already
// (cachedFirst); other ties fall back to that, then to the provider ID, so
// the order is total and the same on every run.
func (p Preferences) Comparator() CapabilityComparator {
	ranking := p.Ranking
	if len(ranking) == 0 {
		ranking = DefaultPreferences().Ranking
	}
	return func(req *BidRequest, a, b *Bid) int {
		for _, r := range ranking {
			var c int
			switch r {
			case "price":
				if c = cmp.Compare(a.Price, b.Price); c == 0 {
					c = cachedFirst(req, a, b)
				}
			case "score":
				c = cmp.Compare(b.Score, a.Score) // higher is better
			case "headroom":
				c = cmp.Compare(headroom(req, b), headroom(req, a))
			}
			if c != 0 {
				return c
			}
		}
		if c := cachedFirst(req, a, b); c != 0 {
			return c
		}
		return cmp.Compare(a.Provider, b.Provider)
	}
}

// cachedFirst breaks a tie in favour of the bid whose provider already
// holds more of the bytes the job would move (a module over
// MaxInlineModule, the inputs): they run sooner and cost the requester no
// upload. It decides nothing else: a cheaper bid still wins.
func cachedFirst(req *BidRequest, a, b *Bid) int {
	return cmp.Compare(cachedBytes(req, b), cachedBytes(req, a))
}

// cachedBytes is how many of the bytes req would send its winner the
// bid's provider says it already holds.
func cachedBytes(req *BidRequest, b *Bid) int64 {
	var n int64
	if b.HasModule && req.ModuleHash != "" && req.ModuleSize > MaxInlineModule {
		n += int64(req.ModuleSize)
	}
	if b.HasInputs && req.InputsHash != "" {
		n += req.InputSize
	}
	return n
}

// headroom is how many times over the offer covers the requirement, in its
// tightest dimension: an offer with room to spare runs the job more safely.
func headroom(req *BidRequest, b *Bid) float64 {
	ratio := func(have, need uint64) float64 {
		if need == 0 {
			return 1e9
		}
		return float64(have) / float64(need)
	}
	return min(ratio(b.Offered.CPU.MilliCores, req.Requirements.CPU.MilliCores),
		ratio(b.Offered.Memory, req.Requirements.Memory),
		ratio(b.Offered.Disk, req.Requirements.Disk))
}

// rankSigned sorts sealed bids best first with c.
func rankSigned(req *BidRequest, bids []*SignedBid, c CapabilityComparator) {
	slices.SortStableFunc(bids, func(a, b *SignedBid) int { return c(req, &a.Bid, &b.Bid) })
}

// Rank sorts bids best first with cmp.
func Rank(req *BidRequest, bids []*Bid, c CapabilityComparator) {
	slices.SortStableFunc(bids, func(a, b *Bid) int { return c(req, a, b) })
}
