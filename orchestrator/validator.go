package orchestrator

import (
	"container/list"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ErrStale marks a request that was valid once (expired, replayed): honest
// peers forward such messages too, so they are dropped without blame.
var ErrStale = errors.New("stale bid request")

// ClockSkew is how far a peer's clock may be from ours before its bid
// requests are taken as stale or from the future.
const ClockSkew = 30 * time.Second

// replayWindow bounds how many nonces the validator remembers; past that the
// oldest are forgotten, which is safe because their requests have expired.
const replayWindow = 1 << 16

// Validator checks bid requests as they arrive on the topic: well formed,
// within size, signed by their requester, not expired, not replayed. It is
// safe for concurrent use (pubsub runs validators in parallel).
type Validator struct {
	now func() time.Time

	mu     sync.Mutex
	seen   map[string]time.Time // requester/nonce -> expiry
	order  *list.List           // of keys, oldest first
	expiry map[string]*list.Element
}

// NewValidator returns a validator; now may be nil for time.Now.
func NewValidator(now func() time.Time) *Validator {
	if now == nil {
		now = time.Now
	}
	return &Validator{now: now, seen: map[string]time.Time{}, order: list.New(), expiry: map[string]*list.Element{}}
}

// Validate decodes and checks a bid request whose gossip message was signed
// by from.
func (v *Validator) Validate(from peer.ID, data []byte) (*BidRequest, error) {
	req, err := DecodeBidRequest(data)
	if err != nil {
		return nil, err
	}
	if req.Requester != from {
		return nil, invalid("bid request %s names requester %s but was signed by %s", req.JobID, req.Requester, from)
	}
	now := v.now()
	if req.Deadline.Before(now) {
		return nil, fmt.Errorf("%w: %w", ErrStale, invalid("bid request %s expired at %s", req.JobID, req.Deadline.Format(time.RFC3339Nano)))
	}
	if req.SentAt.After(now.Add(ClockSkew)) {
		return nil, invalid("bid request %s sent in the future (%s)", req.JobID, req.SentAt.Format(time.RFC3339))
	}
	if req.Deadline.Sub(req.SentAt) > MaxBiddingWindow {
		return nil, invalid("bid request %s: bidding window %v exceeds %v", req.JobID, req.Deadline.Sub(req.SentAt), MaxBiddingWindow)
	}
	key := string(from) + "/" + req.Nonce
	v.mu.Lock()
	defer v.mu.Unlock()
	v.prune(now)
	if _, dup := v.seen[key]; dup {
		return nil, fmt.Errorf("%w: %w", ErrStale, invalid("bid request %s: nonce replayed", req.JobID))
	}
	v.seen[key] = req.Deadline.Add(ClockSkew)
	v.expiry[key] = v.order.PushBack(key)
	return req, nil
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
