package orchestrator

import (
	"container/list"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ErrStale marks a request that was valid once (expired, replayed): honest
// peers forward such messages too, so they are dropped without blame.
var ErrStale = errors.New("stale bid request")

// ErrRateLimited marks a request over its requester's rate. The requester
// is blamed (its gossip score lowered) only when it sent the message to us
// itself: a peer that merely relayed it may have counted differently.
var ErrRateLimited = errors.New("bid request over its requester's rate")

// ClockSkew is how far a peer's clock may be from ours before its bid
// requests are taken as stale or from the future. Seconds, not more: a
// request's life (and what providers hold for it) is bounded by its
// window plus this.
const ClockSkew = 5 * time.Second

// replayWindow bounds how many nonces the validator remembers; past that the
// oldest are forgotten, which is safe because their requests have expired.
const replayWindow = 1 << 16

// maxBuckets bounds the requesters whose rate is tracked; idle ones (full
// buckets) are forgotten first.
const maxBuckets = 1 << 14

// RequestLimits bound how many bid requests one requester may publish:
// Burst at once, then Rate per second. An honest requester publishes one
// or two per job (a second when bids are short), a few more on retries.
type RequestLimits struct {
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
}

// DefaultRequestLimits suit a busy honest requester (a batch of jobs
// submitted at once, a hundred a second after that) and bound a flood to
// what a hold quota makes harmless.
func DefaultRequestLimits() RequestLimits { return RequestLimits{Rate: 100, Burst: 200} }

// Validate checks the limits.
func (l RequestLimits) Validate() error {
	if !(l.Rate > 0) || l.Burst < 1 {
		return fmt.Errorf("request limits rate=%v burst=%d: want a rate above 0 and a burst of at least 1", l.Rate, l.Burst)
	}
	return nil
}

// Validator checks bid requests as they arrive on the topic: well formed,
// within size, sealed by their requester, not expired, not from the
// future, within their requester's rate, not replayed. It is safe for
// concurrent use (pubsub runs validators in parallel); one mutex owns its
// state.
type Validator struct {
	now    func() time.Time
	limits RequestLimits

	mu      sync.Mutex
	seen    map[string]time.Time // requester/nonce -> expiry
	order   *list.List           // of keys, oldest first
	expiry  map[string]*list.Element
	buckets map[peer.ID]*bucket

	verified atomic.Int64 // signatures checked
}

// bucket is a token bucket: tokens at last, refilled at the rate.
type bucket struct {
	tokens float64
	last   time.Time
}

// NewValidator returns a validator; now may be nil for time.Now.
func NewValidator(now func() time.Time, limits RequestLimits) *Validator {
	if now == nil {
		now = time.Now
	}
	return &Validator{now: now, limits: limits, seen: map[string]time.Time{}, order: list.New(), expiry: map[string]*list.Element{}, buckets: map[peer.ID]*bucket{}}
}

// Validate opens and checks a sealed bid request that arrived from via
// (the peer that sent it to us, not necessarily its requester). A request
// over its requester's rate comes back with the error wrapping
// ErrRateLimited, so the caller can tell who to blame.
func (v *Validator) Validate(via peer.ID, data []byte) (*BidRequest, error) {
	v.verified.Add(1)
	req, err := OpenBidRequest(data)
	if err != nil {
		return nil, err
	}
	now := v.now()
	if req.Deadline.Before(now) {
		return nil, fmt.Errorf("%w: %w", ErrStale, invalid("bid request %s expired at %s", req.JobID, req.Deadline.Format(time.RFC3339Nano)))
	}
	if req.SentAt.After(now.Add(ClockSkew)) {
		return nil, invalid("bid request %s sent %v in the future (at most %v of clock skew)", req.JobID, req.SentAt.Sub(now).Round(time.Millisecond), ClockSkew)
	}
	if w := req.Deadline.Sub(req.SentAt); w > MaxBiddingWindow {
		return nil, invalid("bid request %s: bidding window %v exceeds %v", req.JobID, w, MaxBiddingWindow)
	}
	if req.Deadline.After(now.Add(MaxBiddingWindow + ClockSkew)) {
		return nil, invalid("bid request %s: deadline %v from now, at most %v", req.JobID, req.Deadline.Sub(now).Round(time.Millisecond), MaxBiddingWindow+ClockSkew)
	}
	key := string(req.Requester) + "/" + req.Nonce
	v.mu.Lock()
	defer v.mu.Unlock()
	v.prune(now)
	if _, dup := v.seen[key]; dup {
		return nil, fmt.Errorf("%w: %w", ErrStale, invalid("bid request %s: nonce replayed", req.JobID))
	}
	if !v.take(req.Requester, now) {
		return req, fmt.Errorf("%w: %w", ErrRateLimited, invalid("bid request %s: requester %s is over %v requests a second (burst %d)", req.JobID, req.Requester, v.limits.Rate, v.limits.Burst))
	}
	v.seen[key] = req.Deadline.Add(ClockSkew)
	v.expiry[key] = v.order.PushBack(key)
	return req, nil
}

// take spends one of the requester's tokens, if it has one.
func (v *Validator) take(p peer.ID, now time.Time) bool {
	b := v.buckets[p]
	if b == nil {
		if len(v.buckets) >= maxBuckets {
			v.forgetIdle(now)
		}
		b = &bucket{tokens: float64(v.limits.Burst), last: now}
		v.buckets[p] = b
	}
	b.refill(now, v.limits)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(now time.Time, l RequestLimits) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(float64(l.Burst), b.tokens+dt*l.Rate)
		b.last = now
	}
}

// forgetIdle drops the buckets that have refilled: forgetting them changes
// nothing. If none has, half are dropped, which only favours requesters.
func (v *Validator) forgetIdle(now time.Time) {
	for p, b := range v.buckets {
		if b.refill(now, v.limits); b.tokens >= float64(v.limits.Burst) {
			delete(v.buckets, p)
		}
	}
	for p := range v.buckets {
		if len(v.buckets) < maxBuckets/2 {
			break
		}
		delete(v.buckets, p)
	}
}

// prune forgets expired nonces, and the oldest ones past replayWindow.
func (v *Validator) prune(now time.Time) {
	for e := v.order.Front(); e != nil; {
		key := e.Value.(string)
		if v.order.Len() <= replayWindow && v.seen[key].After(now) {
			// Entries are roughly in expiry order; stop at the first live one.
			return
		}
		next := e.Next()
		v.order.Remove(e)
		delete(v.seen, key)
		delete(v.expiry, key)
		e = next
	}
}

// Verified counts the signatures this validator checked.
func (v *Validator) Verified() int64 { return v.verified.Load() }
