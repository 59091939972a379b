package orchestrator

import "time"

// widening decides when a requester asks again for bids during one round
// of bidding, and how wide. It is pure: collect steps it on its timer.
//
// The plan, for a first request sent with spread s:
//
//  1. after resend, if fewer bids than wanted are in, the request is sent
//     again at spread s: a peer that joined the mesh moments ago may have
//     missed it;
//  2. widen after the first request, and at least step after step 1, if
//     no bid at all has come, it is sent to four times as many providers
//     (spread 4s, at most everyone): too few near enough could take the
//     job, or the mesh looks larger than it is;
//  3. step later, if still no bid has come and 4s did not already reach
//     everyone, it is sent to everyone (spread 1).
//
// Once any bid has come, only step 1 happens: bids that are merely late,
// as on a loaded machine, draw no storm of wider requests. Providers that
// already bid hold the job and do not bid twice.
//
// One thing widens at once (short): bidding about to close, its grace
// passed, with under half the bids a job has drawn of late. The spread was
// too narrow (the network looked larger than it is, say padded by peers
// that left), and a bidder that ignores the spread would otherwise often
// be the only bid.
type widening struct {
	spread float64       // of the first request
	resend time.Duration // until step 1; 0: never ask again
	widen  time.Duration // until step 2, from the first request
	step   time.Duration // from step 2 to step 3
}

// newWidening plans the round for a first request at spread. resend and
// widen come from the usual wait for a first bid (Requester.resendAfter,
// widenAfter); step is RequesterConfig.Widen, and 0 turns widening off.
func newWidening(spread float64, resend, widen, step time.Duration) widening {
	if step <= 0 {
		return widening{spread: spread}
	}
	return widening{spread: spread, resend: resend, widen: widen, step: step}
}

// first is how long after the first request to step; 0: never.
func (w widening) first() time.Duration { return w.resend }

// next is one step: the request has gone out asked times (1: only the
// first) and bids acceptable bids are in. again says whether to send it
// once more, at spread; after is how long from now to step again (0:
// never). Called only while bidding wants more bids.
func (w widening) next(bids, asked int) (spread float64, again bool, after time.Duration) {
	switch {
	case w.resend <= 0 || asked < 1:
		return 0, false, 0
	case asked == 1:
		return w.spread, true, max(w.widen-w.resend, w.step)
	case bids > 0:
		return 0, false, 0
	case asked == 2:
		spread = min(1, 4*w.spread)
		if spread < 1 {
			after = w.step
		}
		return spread, true, after
	case asked == 3 && w.spread*4 < 1:
		return 1, true, 0
	}
	return 0, false, 0
}

// short decides, when bidding's grace has passed with bids acceptable bids
// in (fewer than wanted) where usual came per job of late, whether this is
// a sudden drop: under half the usual. Then the request goes out again at
// once at spread, four times the first (at most everyone), and bidding
// waits up to wait more for its bids. A drop is acted on once per round
// (acted: already done), and not at all with widening off.
func (w widening) short(bids int, usual float64, acted bool) (spread float64, wait time.Duration, again bool) {
	if w.resend <= 0 || acted || float64(bids) >= usual/2 {
		return 0, 0, false
	}
	return min(1, 4*w.spread), max(w.widen, w.step), true
}
