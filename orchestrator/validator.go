package orchestrator

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ErrStale marks a request that was valid once (expired, replayed): honest
// peers forward such messages too, so they are dropped without blame.
var ErrStale = errors.New("stale bid request")

// ErrRateLimited marks a request dropped, before its signature was
// checked, because its requester or the peer that sent it to us was over
// its rate. Nobody is blamed for it unless the error also wraps
// ErrFlooding.
var ErrRateLimited = errors.New("bid request over a rate limit")

// ErrFlooding, beside ErrRateLimited, says the peer that sent the request
// to us is to blame: it is the requester itself over its rate, or it sent
// us one requester's requests far over that requester's rate, which no
// honest relay does (it forwards only what it accepted, at most that
// rate). A relay that merely sent us a request over its requester's rate
// is not: it may have counted the requester's requests in another order,
// or heard others than we did, and rightly accepted this one.
var ErrFlooding = errors.New("the peer that sent it floods")

// ClockSkew is how far a peer's clock may be from ours before its bid
// requests are taken as stale or from the future. Seconds, not more: a
// request's life (and what providers hold for it) is bounded by its
// window plus this.
const ClockSkew = 5 * time.Second

// replayWindow bounds how many nonces the validator remembers; past that the
// oldest are forgotten, which is safe because their requests have expired.
const replayWindow = 1 << 16

// maxBuckets bounds the requesters (and the peers, and the pairs of peer
// and requester) whose rate is tracked; idle ones (full buckets) are
// forgotten first.
const maxBuckets = 1 << 14

// RequestLimits bound the bid requests a node looks at: per requester,
// Burst at once, then Rate per second; per peer that sends them to us
// (whoever signed them), peerFactor times as many.
// An honest requester publishes one or two per job (a second when bids
// are short), a few more on retries.
//
// gossipsub sends a message to a peer at most once, and an honest peer
// forwards only what it validated (each requester within its own Rate), so
// what one honest peer sends us is at most the whole mesh's bid requests:
// the sum of its requesters' rates. The peer's limit is ten requesters
// publishing flat out at once, which a mesh whose requesters publish one
// or two requests a job does not reach; it bounds the signatures one peer
// can make us verify to about 1,000 a second (some 60 ms of a core), the
// same number whether it signs its flood under one identity or a
// thousand. A peer over it is not blamed: a flood of many identities,
// accepted at several nodes at once, reaches us through honest relays
// too, and blaming them would cut the mesh apart.
//
// What one peer may send of one requester's requests is bounded too, and
// blamed: an honest relay forwards at most Burst of them at once and Rate a
// second after (what it accepted itself), so a peer that sends relayFactor
// times the burst beyond that rate sends what no honest relay does, whatever
// requester it claims to relay.
type RequestLimits struct {
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
}

// peerFactor is how many requesters publishing at their full rate one
// peer may forward to us.
const peerFactor = 10

// relayFactor is the slack, in bursts, between what an honest relay sends
// of one requester's requests and what we blame: its bucket for the
// requester may have started full when ours did not, or been forgotten
// (maxBuckets) or restarted, and gossip may retry a request or two.
const relayFactor = 4

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

// perPeer bounds what one peer sends us, whoever signed it.
func (l RequestLimits) perPeer() RequestLimits {
	return RequestLimits{Rate: peerFactor * l.Rate, Burst: peerFactor * l.Burst}
}

// perRelay bounds what one peer sends us of one requester's requests.
func (l RequestLimits) perRelay() RequestLimits {
	return RequestLimits{Rate: l.Rate, Burst: relayFactor * l.Burst}
}

// DropReason says why the validator dropped a bid request; it labels the
// counters (Dropped) and the logs.
type DropReason int

const (
	DropPeerRate      DropReason = iota // the peer that sent it was over its rate (not verified)
	DropRelayRate                       // the peer sent its requester's requests far over that requester's rate (not verified; blamed)
	DropRequesterRate                   // its requester was over its rate (not verified)
	DropStale                           // expired or replayed
	DropInvalid                         // malformed, badly signed, out of bounds
	numDropReasons
)

func (r DropReason) String() string {
	switch r {
	case DropPeerRate:
		return "peer_rate"
	case DropRelayRate:
		return "relay_rate"
	case DropRequesterRate:
		return "requester_rate"
	case DropStale:
		return "stale"
	case DropInvalid:
		return "invalid"
	}
	return fmt.Sprintf("DropReason(%d)", int(r))
}

// DropReasons are every reason, in order.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// Validator checks bid requests as they arrive on the topic: well formed,
// within size, sealed by their requester, not expired, not from the
// future, within the rates of their requester and of the peer that sent
// them, not replayed. The rates are checked first, on what the envelope
// claims, and the signature only then: a dropped request costs a parse
// and a few token-bucket lookups, not a signature verification.
//
// Who pays for a request before its signature is known: the peer that
// sent it to us, always (its tokens are spent whatever the request turns
// out to be, so the verifications one peer can cause are bounded); the
// requester it claims, only for a while (its token is reserved before the
// signature is checked and given back if the request is refused). A
// forger naming an honest requester therefore cannot drain its rate: each
// forgery is rejected, which costs the forger's connection its gossip
// score at once (four invalid messages and we ignore it), and the token
// returns. Reserving rather than only looking at the requester's tokens
// bounds the verifications of one requester's flood even when pubsub
// validates many of its requests at once.
//
// It is safe for concurrent use (pubsub runs validators in parallel); one
// mutex owns its state.
type Validator struct {
	now    func() time.Time
	limits RequestLimits

	mu         sync.Mutex
	seen       map[string]time.Time // requester/nonce -> expiry
	order      *list.List           // of keys, oldest first
	expiry     map[string]*list.Element
	requesters buckets
	peers      buckets
	relays     buckets // by peer and requester: pairKey

	verified atomic.Int64 // signatures checked
	dropped  [numDropReasons]atomic.Int64
}

// NewValidator returns a validator; now may be nil for time.Now.
func NewValidator(now func() time.Time, limits RequestLimits) *Validator {
	if now == nil {
		now = time.Now
	}
	return &Validator{
		now: now, limits: limits, seen: map[string]time.Time{}, order: list.New(), expiry: map[string]*list.Element{},
		requesters: newBuckets(limits), peers: newBuckets(limits.perPeer()), relays: newBuckets(limits.perRelay()),
	}
}

// Validate opens and checks a sealed bid request that arrived from via
// (the peer that sent it to us, not necessarily its requester). A request
// dropped for a rate comes back with an error wrapping ErrRateLimited,
// and ErrFlooding too when via is to blame.
func (v *Validator) Validate(via peer.ID, data []byte) (*BidRequest, error) {
	req, reason, err := v.validate(via, data)
	if err != nil {
		v.dropped[reason].Add(1)
		return nil, &dropError{reason: reason, err: err}
	}
	return req, nil
}

// dropError is what Validate returns: the error, and the reason it counts
// the request under.
type dropError struct {
	reason DropReason
	err    error
}

func (e *dropError) Error() string { return e.err.Error() }
func (e *dropError) Unwrap() error { return e.err }

// dropReasonOf is the reason a Validate error counts under.
func dropReasonOf(err error) (DropReason, bool) {
	var d *dropError
	if errors.As(err, &d) {
		return d.reason, true
	}
	return 0, false
}

func (v *Validator) validate(via peer.ID, data []byte) (*BidRequest, DropReason, error) {
	now := v.now()
	v.mu.Lock()
	ok := v.peers.take(via, now)
	v.mu.Unlock()
	if !ok {
		l := v.peers.limit
		return nil, DropPeerRate, fmt.Errorf("%w: %w", ErrRateLimited,
			invalid("peer %s sent more than %v bid requests a second (burst %d)", via, l.Rate, l.Burst))
	}
	claimed, err := claimedRequester(data)
	if err != nil {
		return nil, DropInvalid, err
	}
	v.mu.Lock()
	if !v.relays.take(pairKey(via, claimed), now) {
		v.mu.Unlock()
		l := v.relays.limit
		return nil, DropRelayRate, fmt.Errorf("%w: %w: %w", ErrRateLimited, ErrFlooding,
			invalid("peer %s sent more of %s's bid requests than %v a second after %d at once", via, claimed, l.Rate, l.Burst))
	}
	ok = v.requesters.take(claimed, now)
	v.mu.Unlock()
	if !ok {
		err := fmt.Errorf("%w: %w", ErrRateLimited, invalid("bid request from %s via %s: the requester is over %v requests a second (burst %d)", claimed, via, v.limits.Rate, v.limits.Burst))
		if via == claimed {
			err = fmt.Errorf("%w: %w", ErrFlooding, err)
		}
		return nil, DropRequesterRate, err
	}
	req, reason, err := v.check(claimed, data, now)
	v.mu.Lock()
	defer v.mu.Unlock()
	if err == nil {
		v.prune(now)
		key := string(req.Requester) + "/" + req.Nonce
		if _, dup := v.seen[key]; !dup {
			v.seen[key] = req.Deadline.Add(ClockSkew)
			v.expiry[key] = v.order.PushBack(key)
			return req, 0, nil
		}
		reason, err = DropStale, fmt.Errorf("%w: %w", ErrStale, invalid("bid request %s: nonce replayed", req.JobID))
	}
	// Not the requester's doing, or not counted against it: its token back.
	v.requesters.give(claimed, now)
	return nil, reason, err
}

// check verifies the request's signature and its times (not its nonce).
func (v *Validator) check(claimed peer.ID, data []byte, now time.Time) (*BidRequest, DropReason, error) {
	v.verified.Add(1)
	req, err := OpenBidRequest(data)
	if err != nil {
		return nil, DropInvalid, err
	}
	if req.Requester != claimed {
		// Both come from the same key bytes; this cannot happen.
		return nil, DropInvalid, invalid("bid request %s: requester %s, but the envelope's key is %s's", req.JobID, req.Requester, claimed)
	}
	if req.Deadline.Before(now) {
		return nil, DropStale, fmt.Errorf("%w: %w", ErrStale, invalid("bid request %s expired at %s", req.JobID, req.Deadline.Format(time.RFC3339Nano)))
	}
	if req.SentAt.After(now.Add(ClockSkew)) {
		return nil, DropInvalid, invalid("bid request %s sent %v in the future (at most %v of clock skew)", req.JobID, req.SentAt.Sub(now).Round(time.Millisecond), ClockSkew)
	}
	if w := req.Deadline.Sub(req.SentAt); w > MaxBiddingWindow {
		return nil, DropInvalid, invalid("bid request %s: bidding window %v exceeds %v", req.JobID, w, MaxBiddingWindow)
	}
	if req.Deadline.After(now.Add(MaxBiddingWindow + ClockSkew)) {
		return nil, DropInvalid, invalid("bid request %s: deadline %v from now, at most %v", req.JobID, req.Deadline.Sub(now).Round(time.Millisecond), MaxBiddingWindow+ClockSkew)
	}
	return req, 0, nil
}

// Dropped counts the requests this validator dropped, by reason.
func (v *Validator) Dropped() map[DropReason]int64 {
	m := make(map[DropReason]int64, numDropReasons)
	for _, r := range DropReasons() {
		m[r] = v.dropped[r].Load()
	}
	return m
}

// pairKey names a peer and a requester in the relays' buckets.
func pairKey(via, requester peer.ID) peer.ID { return via + "/" + requester }

// buckets are token buckets by peer (or pairKey), at most maxBuckets of them; idle ones
// (full buckets) are forgotten first.
type buckets struct {
	limit RequestLimits
	by    map[peer.ID]*bucket
}

// bucket is a token bucket: tokens at last, refilled at the rate.
type bucket struct {
	tokens float64
	last   time.Time
}

func newBuckets(l RequestLimits) buckets { return buckets{limit: l, by: map[peer.ID]*bucket{}} }

// take spends one of p's tokens, if it has one.
func (bs *buckets) take(p peer.ID, now time.Time) bool {
	b := bs.by[p]
	if b == nil {
		if len(bs.by) >= maxBuckets {
			bs.forgetIdle(now)
		}
		b = &bucket{tokens: float64(bs.limit.Burst), last: now}
		bs.by[p] = b
	}
	b.refill(now, bs.limit)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// give returns a token taken from p, up to the burst.
func (bs *buckets) give(p peer.ID, now time.Time) {
	if b := bs.by[p]; b != nil {
		b.refill(now, bs.limit)
		b.tokens = min(float64(bs.limit.Burst), b.tokens+1)
	}
}

func (b *bucket) refill(now time.Time, l RequestLimits) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(float64(l.Burst), b.tokens+dt*l.Rate)
		b.last = now
	}
}

// forgetIdle drops the buckets that have refilled: forgetting them changes
// nothing. If none has, half are dropped, which only favours those
// limited (a flood so wide is bounded by the peers' buckets).
func (bs *buckets) forgetIdle(now time.Time) {
	for p, b := range bs.by {
		if b.refill(now, bs.limit); b.tokens >= float64(bs.limit.Burst) {
			delete(bs.by, p)
		}
	}
	for p := range bs.by {
		if len(bs.by) < maxBuckets/2 {
			break
		}
		delete(bs.by, p)
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

// dropLogEvery is how often dropped requests are logged, per reason: a
// flood must not become a flood of log lines.
const dropLogEvery = 10 * time.Second

// dropLog logs dropped bid requests: the first of a reason at once, then
// at most one line per reason every dropLogEvery with the count since.
// Stale requests (honest peers relay those too) are logged at debug level,
// the rest as warnings. One mutex owns its state.
type dropLog struct {
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	logged [numDropReasons]time.Time // when a line was last written
	since  [numDropReasons]int64     // drops not yet in a line
}

func newDropLog(log *slog.Logger, now func() time.Time) *dropLog {
	if now == nil {
		now = time.Now
	}
	return &dropLog{log: log, now: now}
}

// due counts one drop for r and says whether to log now, and how many
// drops the line reports (this one and those held back).
func (d *dropLog) due(r DropReason) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.since[r]++
	now := d.now()
	if !d.logged[r].IsZero() && now.Sub(d.logged[r]) < dropLogEvery {
		return 0, false
	}
	n := d.since[r]
	d.logged[r], d.since[r] = now, 0
	return n, true
}

// note counts a request dropped from via with err (from Validate), and
// logs it if due.
func (d *dropLog) note(via peer.ID, err error) {
	r, ok := dropReasonOf(err)
	if !ok {
		r = DropInvalid
	}
	n, ok := d.due(r)
	if !ok {
		return
	}
	level := slog.LevelWarn
	if r == DropStale {
		level = slog.LevelDebug
	}
	d.log.Log(context.Background(), level, "bid requests dropped", "reason", r.String(), "count", n, "last_via", via, "last_err", err)
}
