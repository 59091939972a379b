package orchestrator

import (
	"fmt"
	"time"

	"github.com/dms-project/dms/capability"
)

// Offer is what a provider could give a job right now.
type Offer struct {
	// Registered is the whole offer, that the requesters' shares are of.
	Registered capability.Capability
	// Available is what is neither held nor locked.
	Available capability.Capability
	Price     capability.PriceInformation
	Score     float64 // benchmark
}

// decisionInput is everything a provider weighs to bid for a request, read
// before deciding, so that the decision itself is a pure function.
type decisionInput struct {
	Now time.Time
	// Distance of this provider from the job (see Distance): farther ones
	// bid later.
	Distance float64
	Standing Standing
	// Displaceable is what the requester's bid could push aside of
	// others' holds (book.assess): room beyond Available.
	Displaceable capability.Capability
	Offer        Offer
	// Load is how busy the provider is, 0 to 1: busier ones bid later.
	Load float64
	// CanRun is Backend.CanRun's answer, when Checked. It may ask a
	// container engine, so it is asked only when nothing cheaper declines
	// (decision.CheckCanRun).
	CanRun  error
	Checked bool
	// Waited: the bid's delay has passed and Offer was read again after
	// it; decide once more, with no second delay.
	Waited bool
	Config ProviderConfig
	// Labels are the provider's (its preferences'), for the request's
	// constraints.
	Labels Labels
}

// decision is a bid, or a reason not to bid.
type decision struct {
	// Decline is why no bid is sent; "" when one is. Code is its reason
	// code (decline.go), for the requester's summary; Short is the text
	// the requester gets, which reads after a count of providers.
	Decline string
	Code    string
	Short   string
	// Record: the decline is kept for Declined, for a user who wants to
	// know why a provider that accepts such jobs did not take this one.
	Record bool
	// CheckCanRun: ask Backend.CanRun, and decide again with its answer.
	CheckCanRun bool
	// Delay is how long to wait before bidding; then decide again with
	// the offer as it is then.
	Delay time.Duration
	// The bid, when Delay is 0.
	Quote   float64
	Expires time.Time
	Offered capability.Capability
}

// decide says whether to bid for req, and with what. The checks run from
// the one that costs a requester most to the cheapest to fix.
func decide(req *BidRequest, in decisionInput) decision {
	decline := func(code, short, format string, args ...any) decision {
		return decision{Decline: fmt.Sprintf(format, args...), Code: code, Short: short}
	}
	// A constraint not met is the one thing no wait or change of load
	// mends, and the user who set it wants to know: it is recorded.
	if why := Unmet(req.Constraints, in.Labels); why != "" {
		return decision{Decline: why, Code: ReasonConstraint, Short: unmetShort(req.Constraints, in.Labels), Record: true}
	}
	if in.Standing == Lapsing {
		return decline(ReasonLapsing, "refuses this requester: it let holds lapse there", "requester %s let more holds lapse than it invoked", req.Requester)
	}
	if in.Standing == Throttled {
		return decline(ReasonThrottled, "refuses this requester: it held the offer far longer than it ran jobs there",
			"requester %s held this provider's offer far longer than it ran jobs on it", req.Requester)
	}
	// Holds that would give way to this requester are room too; placing
	// the bid finds out for sure.
	room := addResources(in.Offer.Available, in.Displaceable)
	if !req.Requirements.Fits(room) {
		code, short := tooSmall(req.Requirements, in.Offer.Registered, in.Offer.Available)
		return decline(code, short, "requirements %s do not fit available %s", req.Requirements, in.Offer.Available)
	}
	if !in.Checked {
		return decision{CheckCanRun: true}
	}
	if in.CanRun != nil {
		code, short := reasonOf(in.CanRun)
		return decision{Decline: in.CanRun.Error(), Code: code, Short: short, Record: true}
	}
	if !in.Waited {
		if delay := BidDelay(in.Distance, req.Spread, in.Load, in.Config.MaxBidDelay); delay > 0 {
			return decision{Delay: delay}
		}
	}
	price := in.Offer.Price
	quote := price.Quote(req.Requirements, req.Duration.Std())
	if req.MaxPrice != nil && quote > *req.MaxPrice {
		return decline(ReasonPrice, fmt.Sprintf("asks %v, over the max price %v", quote, *req.MaxPrice), "quote %v over max price %v", quote, *req.MaxPrice)
	}
	// The hold lasts until bidding closes, by the request's deadline or
	// our HoldWindow, whichever comes first, and a grace after that.
	expires := req.Deadline
	if w := in.Now.Add(in.Config.HoldWindow); w.Before(expires) {
		expires = w
	}
	expires = expires.Add(in.Config.HoldGrace)
	offered := room
	offered.Price = price
	offered.CPU.Score = in.Offer.Score
	// Gossip-borne fields such as listen addresses would bloat every bid.
	offered.Connectivity = capability.Connectivity{}
	return decision{Quote: quote, Expires: expires, Offered: offered}
}
