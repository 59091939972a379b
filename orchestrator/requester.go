package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/dms-project/dms/internal/randid"
	"github.com/dms-project/dms/p2p"
)

// Errors a submitter branches on.
var (
	// ErrNoBids: no acceptable bid arrived before bidding closed.
	ErrNoBids = errors.New("no acceptable bids")
	// ErrAllRefused: every bid was invoked and every provider refused.
	ErrAllRefused = errors.New("every bidder refused the invocation")
	// ErrProviderLost: the provider stopped answering while the job ran.
	ErrProviderLost = errors.New("provider lost")
	// ErrProviderStalled: the provider accepted the job and then sent
	// nothing (no start, no heartbeat) within StallTimeout. It is a way of
	// being lost: errors.Is(err, ErrProviderLost) holds too.
	ErrProviderStalled = fmt.Errorf("%w: it accepted the job and then sent nothing", ErrProviderLost)
	// ErrProviderOverran: the allocation was still going at the
	// requester's own deadline for it (the job's duration plus a margin),
	// whatever the provider's heartbeats said. A way of being lost too.
	ErrProviderOverran = fmt.Errorf("%w: it ran past the job's deadline", ErrProviderLost)
)

// RequesterConfig tunes the requester side.
type RequesterConfig struct {
	// BiddingWindow is how long bidding stays open at most.
	BiddingWindow time.Duration
	// WantBids closes bidding as soon as this many acceptable bids are in.
	WantBids int
	// Grace closes bidding this long after the first acceptable bid, so a
	// small job in a quiet network starts in milliseconds, not at the end
	// of the window.
	Grace time.Duration
	// InvokeTimeout bounds one invocation round trip.
	InvokeTimeout time.Duration
	// LostAfter: an allocation stream silent this long means the provider
	// is gone (providers send heartbeats every ProviderConfig.Heartbeat).
	LostAfter time.Duration
	// Retries is how many times a job is submitted again after its provider
	// refused every bid or was lost; the providers that refused or lost it
	// are not invoked in the attempt that follows.
	Retries int
	// QueueBackoff is how long a queued job first waits before asking
	// again for bids; the wait doubles up to QueueBackoffMax. A retry after
	// a lost provider waits the same way. Small, so that capacity that
	// frees up is taken within seconds, not at the end of a long step.
	QueueBackoff    time.Duration
	QueueBackoffMax time.Duration
	// SpreadFactor sets how many providers are asked to bid: about
	// SpreadFactor*WantBids of them (see storm.go); 0 asks everyone.
	SpreadFactor float64
	// TopicOnly sends every bid request on the topic, to every node, as
	// before requests went straight to the nearest providers (direct.go):
	// for comparing the two in dms bench.
	TopicOnly bool
	// Widen paces asking again for bids (widening.go); 0 never asks again.
	// When fewer than WantBids bids have come Widen after the request (or
	// twice the usual wait for a first bid, if longer), it is sent again
	// at the same spread. If no bid at all has come Widen after that (or
	// three times the usual wait after the request, if later), it is sent
	// to four times as many providers; if still none has come Widen after
	// that, to everyone.
	Widen time.Duration
	// Keepalive is how often the requester tells a provider, on the
	// allocation stream, that it still follows the job.
	Keepalive time.Duration
	// ChaseAbandoned is how long the requester keeps asking a provider it
	// gave up on to stop its copy of the job (a provider that was frozen
	// or cut off learns it when it comes back).
	ChaseAbandoned time.Duration
	// StallTimeout: a winner that has sent nothing at all (no event, no
	// heartbeat) this long after it accepted the job has stalled; the job
	// goes on without it. An honest provider answers a watch at once and
	// sends heartbeats every ProviderConfig.Heartbeat while it stages.
	StallTimeout time.Duration
	// DeadlineMargin: the requester ends an allocation that is still going
	// at the job's duration plus a tenth plus this margin (counted from
	// the job's start, or from the accept if no start came), whatever its
	// heartbeats say, and runs the job elsewhere.
	DeadlineMargin time.Duration
}

// DefaultRequesterConfig suits a real network.
func DefaultRequesterConfig() RequesterConfig {
	return RequesterConfig{
		BiddingWindow: 3 * time.Second, WantBids: 3, Grace: 25 * time.Millisecond,
		InvokeTimeout: 30 * time.Second, LostAfter: 5 * time.Second, Retries: 2,
		SpreadFactor: 2, Widen: 250 * time.Millisecond,
		Keepalive: time.Second, ChaseAbandoned: 10 * time.Minute,
		QueueBackoff: 250 * time.Millisecond, QueueBackoffMax: 2 * time.Second,
		StallTimeout: 5 * time.Second, DeadlineMargin: 5 * time.Second,
	}
}

// runLimit is how long after its start the requester lets an allocation
// run: the job's duration, a tenth more for a slow clock or a slow start,
// and margin for the result to come back.
func runLimit(duration, margin time.Duration) time.Duration {
	return duration + duration/10 + margin
}

// Validate checks the requester's settings. A bidding window longer than
// every validator accepts would have each request dropped as malformed.
func (c RequesterConfig) Validate() error {
	var errs []error
	if c.BiddingWindow <= 0 || c.BiddingWindow > MaxBiddingWindow {
		errs = append(errs, fmt.Errorf("bidding window %v: want more than 0, at most %v", c.BiddingWindow, MaxBiddingWindow))
	}
	if c.Keepalive <= 0 || c.LostAfter <= 0 {
		errs = append(errs, fmt.Errorf("keepalive %v and lost-after %v: must be positive", c.Keepalive, c.LostAfter))
	}
	if c.Grace < 0 || c.Widen < 0 || c.InvokeTimeout <= 0 || c.ChaseAbandoned < 0 {
		errs = append(errs, fmt.Errorf("grace %v, widen %v and chase %v must not be negative, invoke timeout %v must be positive", c.Grace, c.Widen, c.ChaseAbandoned, c.InvokeTimeout))
	}
	if c.QueueBackoff < 0 || c.QueueBackoffMax < c.QueueBackoff {
		errs = append(errs, fmt.Errorf("queue backoff %v to %v: want 0 or more, the most no less than the first", c.QueueBackoff, c.QueueBackoffMax))
	}
	if c.StallTimeout <= 0 || c.DeadlineMargin < 0 {
		errs = append(errs, fmt.Errorf("stall timeout %v must be positive, deadline margin %v must not be negative", c.StallTimeout, c.DeadlineMargin))
	}
	if c.Retries < 0 || c.WantBids < 0 || c.SpreadFactor < 0 {
		errs = append(errs, fmt.Errorf("retries %d, want bids %d and spread factor %v must not be negative", c.Retries, c.WantBids, c.SpreadFactor))
	}
	return errors.Join(errs...)
}

// Progress reports one step of a submission as it happens.
type Progress struct {
	Kind    ProgressKind `json:"kind"`
	JobID   string       `json:"job_id"`
	Attempt int          `json:"attempt"`
	Time    time.Time    `json:"time"`
	Bid     *Bid         `json:"bid,omitempty"`
	Event   *Event       `json:"event,omitempty"`
	// Provider and AllocationID name the winner from ProgressAccepted on.
	Provider     peer.ID `json:"provider,omitempty"`
	AllocationID string  `json:"allocation_id,omitempty"`
	Message      string  `json:"message,omitempty"`
	// Replicas are a replicated job's runs as compared, on
	// ProgressReplicas (replicas.go).
	Replicas []Replica `json:"replicas,omitempty"`
}

// ProgressKind names a step of a submission.
type ProgressKind string

// Steps of a submission, in order.
const (
	ProgressPublished ProgressKind = "published"
	ProgressBid       ProgressKind = "bid"
	ProgressClosed    ProgressKind = "closed"
	ProgressRefused   ProgressKind = "refused"
	ProgressAccepted  ProgressKind = "accepted"
	ProgressEvent     ProgressKind = "event"
	ProgressRetry     ProgressKind = "retry"
	// ProgressQueued: the job waits for a provider (no acceptable bid) or
	// for an earlier job of this requester; Message says why. It is sent
	// when the job starts waiting and when the reason changes.
	ProgressQueued ProgressKind = "queued"
)

// Submission is a job to submit: the spec, what the requester pays, and
// the tar archive of its input files (nil: none).
type Submission struct {
	Job      JobSpec
	MaxPrice *float64
	Inputs   []byte
	// QueueTimeout is how long the job waits for a provider when none
	// bids, asking again with backoff; 0 fails at once (ErrNoBids).
	QueueTimeout time.Duration
	// RetryOnFailure is how many times a job that ran and failed (exited
	// non-zero, or failed on its provider) is run again; 0: never, the
	// failure is the job's.
	RetryOnFailure int
	// Replication runs the job on several providers at once and delivers
	// a result only when they agree (replicas.go); zero: one provider.
	Replication Replication
	// FirstAttempt numbers the first attempt (0 for a new job). A job
	// submitted again after its requester restarted counts on from its
	// last attempt, so that providers still holding for an earlier one
	// void that hold and bid afresh rather than answer "already bid".
	FirstAttempt int
}

// Requester publishes bid requests, collects bids, invokes the best and
// follows the allocation to its result.
type Requester struct {
	host  Network
	key   crypto.PrivKey
	topic p2p.Topic
	cfg   RequesterConfig
	prefs func() Preferences
	log   *slog.Logger
	now   func() time.Time

	bidsReceived atomic.Int64
	// firstBid is a moving average of how long the first bid takes to come
	// (nanoseconds): the re-ask waits for a multiple of it, so that bids
	// that are only late, as they are on a loaded machine, are waited for
	// rather than asked for again from four times as many providers.
	firstBid atomic.Int64
	// usualBids is a moving average of the acceptable bids a job drew
	// (float64 bits): a sudden drop below it widens at once (widening.go).
	usualBids atomic.Uint64

	// ctx and wg cover the fire-and-forget releases, so Close can end them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// blobs is the node's shared content: a large module and the inputs
	// are shared with each winner in turn, for it to fetch.
	blobs *blobs
	// pace keeps this node's bid requests within the rate validators allow
	// a requester (nil: unpaced).
	pace *rate.Limiter
	// local, if set, hands a bid request to this node's own provider side
	// and reports whether it took it (it is onboarded). It is used only
	// when no peer shares the topic: a lone node runs its own jobs.
	local func(*BidRequest) bool

	// queue orders this requester's jobs that wait for capacity.
	queue *line
	// rnd jitters the backoff; uniform in [0, 1).
	rnd func() float64
	// rep is what this requester has seen each provider do: it ranks bids
	// and keeps offenders out (reputation.go).
	rep *Reputation

	mu   sync.Mutex
	open map[string]*openJob // by job ID, while bidding is open
}

// BidsReceived counts the bids that reached this requester, taken or not.
func (r *Requester) BidsReceived() int64 { return r.bidsReceived.Load() }

type openJob struct {
	nonces map[string]float64 // of every request sent for this attempt, to its spread
	bids   chan *SignedBid
	// answers are the declines heard (handleDecline), at most maxAnswers.
	answers []answer
}

// requesterDeps is what a requester shares with the rest of its Service.
type requesterDeps struct {
	topic p2p.Topic          // the joined bid-request topic
	prefs func() Preferences // the node's current ranking
	blobs *blobs             // the node's shared content
	pace  *rate.Limiter      // nil: unpaced
	local func(*BidRequest) bool
	rep   *Reputation // nil: a fresh one, kept in memory only
}

// newRequester registers the bid handler on host. Service is its only
// caller: a requester shares its topic, blobs and pace with the node.
func newRequester(host Network, key crypto.PrivKey, cfg RequesterConfig, deps requesterDeps, log *slog.Logger) (*Requester, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("requester config: %w", err)
	}
	if host == nil || key == nil || deps.topic == nil || deps.prefs == nil || deps.blobs == nil {
		return nil, errors.New("requester: network, key, topic, preferences and blobs are all required")
	}
	if deps.rep == nil {
		var err error
		if deps.rep, err = NewReputation(DefaultReputationConfig(), nil, nil, log); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Requester{rep: deps.rep,
		host: host, key: key, topic: deps.topic, cfg: cfg, prefs: deps.prefs, blobs: deps.blobs, pace: deps.pace, local: deps.local,
		log: log.With("subsystem", "requester"), now: time.Now, open: map[string]*openJob{}, ctx: ctx, cancel: cancel,
		queue: newLine(), rnd: rand.Float64,
	}
	if err := host.HandleRequest(ProtocolBid, MaxBidSize+envelopeOverhead, r.handleBid); err != nil {
		cancel()
		return nil, err
	}
	if err := host.HandleRequest(ProtocolDecline, MaxDeclineSize, r.handleDecline); err != nil {
		cancel()
		return nil, err
	}
	return r, nil
}

// Reputation is what this requester has seen each provider do. Record an
// outcome with Reputation().Record; a provider with a recent offence is not
// invoked until its cool-down ends.
func (r *Requester) Reputation() *Reputation { return r.rep }

// close stops the releases still under way and waits for them.
func (r *Requester) close() {
	r.cancel()
	r.wg.Wait()
}

// NewJobID returns a fresh random job ID.
func NewJobID() string { return randid.Hex(16) }

// handleBid takes a bid from a provider. Only the requester named in the
// bid, with bidding open, accepts it; an error tells the provider to let go
// of its hold.
func (r *Requester) handleBid(_ context.Context, from peer.ID, data []byte) ([]byte, error) {
	sb, err := OpenBid(data)
	if err != nil {
		return nil, err
	}
	b := &sb.Bid
	if b.Provider != from {
		return nil, invalid("bid names provider %s but came from %s", b.Provider, from)
	}
	if b.Requester != r.host.ID() {
		return nil, invalid("bid is for requester %s, not this node", b.Requester)
	}
	r.bidsReceived.Add(1)
	// The bid is handed over under the lock that collect closes bidding
	// with: a bid this handler says it took is one collect sees. Taken
	// after collect stopped reading, it would be answered "{}" and never
	// used, and the provider would hold for it until its hold lapsed.
	r.mu.Lock()
	defer r.mu.Unlock()
	job, ok := r.open[b.JobID]
	if ok {
		_, ok = job.nonces[b.Nonce]
	}
	if !ok {
		return nil, fmt.Errorf("bidding for job %s is closed", b.JobID)
	}
	select {
	case job.bids <- sb:
	default:
		return nil, fmt.Errorf("job %s has enough bids", b.JobID)
	}
	return []byte("{}"), nil
}

// handleDecline takes a provider's reason for not bidding, for a request
// of a job whose bidding is open, from a provider the request was meant
// for. Declines beyond maxAnswers are dropped: they only make the counts
// of a summary.
func (r *Requester) handleDecline(_ context.Context, from peer.ID, data []byte) ([]byte, error) {
	d, err := DecodeDecline(data)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	job, ok := r.open[d.JobID]
	if !ok {
		return nil, fmt.Errorf("bidding for job %s is closed", d.JobID)
	}
	spread, ok := job.nonces[d.Nonce]
	if !ok {
		return nil, fmt.Errorf("no request of job %s with that nonce", d.JobID)
	}
	if from != r.host.ID() && !Eligible(Distance(from, d.JobID), spread) {
		return nil, fmt.Errorf("job %s: request did not ask this provider", d.JobID)
	}
	if len(job.answers) < maxAnswers && !slices.ContainsFunc(job.answers, func(a answer) bool { return a.Provider == from }) {
		job.answers = append(job.answers, answer{Provider: from, Code: d.Code, Text: d.Text})
	}
	return []byte("{}"), nil
}

// Submit runs a job on the mesh and returns its result. progress, if not
// nil, sees every step as it happens and must not block.
//
// A job that finds no provider waits for one, up to sub.QueueTimeout,
// asking again with backoff; while it waits, this requester's later jobs
// that would compete with it for the same capacity wait behind it. A
// provider that refused the job or was lost is left out of the next
// attempt, which comes after a backoff, up to Retries times; a job that
// ran and failed is run again only sub.RetryOnFailure times.
func (r *Requester) Submit(ctx context.Context, sub Submission, progress func(Progress)) (*Result, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	job := sub.Job
	if job.ID == "" {
		job.ID = NewJobID()
	}
	if err := job.check(); err != nil {
		return nil, err
	}
	if err := sub.Validate(); err != nil {
		return nil, err
	}
	if len(sub.Inputs) > MaxInputSize {
		return nil, invalid("inputs of %d bytes: at most %d", len(sub.Inputs), MaxInputSize)
	}
	st := &staged{job: job, inputs: sub.Inputs, blobs: r.blobs, ttl: r.cfg.InvokeTimeout + job.Duration.Std() + 10*time.Minute}
	defer st.unshare()
	w := &waiting{r: r, job: job.ID, progress: progress, timeout: sub.QueueTimeout, deadline: r.now().Add(sub.QueueTimeout)}
	// A job that does not wait for a provider does not wait in line.
	if sub.QueueTimeout > 0 {
		w.place = r.queue.join(job)
		w.inLine = true
	}
	defer r.queue.leave(job.ID)
	if sub.Replication.Replicas > 1 {
		return r.replicated(ctx, sub, st, w)
	}
	// avoid holds the providers left out of the next attempt (see
	// avoiding): those that refused this job in the attempt before (asked
	// again only if nobody else bids), and those that lost, stalled or
	// overran it in any attempt before (never asked again for it).
	avoid := map[peer.ID]bool{}
	lostRetries, failRetries, noBidRounds := 0, 0, 0
	for attempt := sub.FirstAttempt; ; attempt++ {
		if err := w.turn(ctx); err != nil {
			return nil, fmt.Errorf("job %s: %w", job.ID, err)
		}
		res, err := r.attempt(ctx, st, sub.MaxPrice, min(attempt, maxAttempt), avoid, w)
		avoid = keepLosers(avoid)
		switch {
		case err == nil && failed(res) && failRetries < sub.RetryOnFailure:
			failRetries++
			w.retry(attempt+1, fmt.Sprintf("the job failed (%s); running it again, %d of %d", describeFailure(res), failRetries, sub.RetryOnFailure))
			if err := w.sleep(ctx, backoff(failRetries-1, r.cfg.QueueBackoff, r.cfg.QueueBackoffMax, r.rnd()), false); err != nil {
				return nil, fmt.Errorf("job %s: %w", job.ID, err)
			}
			continue
		case err == nil:
			return res, nil
		case errors.Is(err, ErrReceipt):
			// The result is kept with the error: it and its receipt are
			// the evidence.
			return res, fmt.Errorf("job %s: %w", job.ID, err)
		case errors.Is(err, ErrNoBids) && sub.QueueTimeout > 0 && ctx.Err() == nil:
			if !r.now().Before(w.deadline) {
				return nil, fmt.Errorf("job %s: %w", job.ID, queuedFor(sub.QueueTimeout, err))
			}
			w.queued(err.Error(), true)
			if err := w.sleep(ctx, backoff(noBidRounds, r.cfg.QueueBackoff, r.cfg.QueueBackoffMax, r.rnd()), true); err != nil {
				return nil, fmt.Errorf("job %s: %w", job.ID, err)
			}
			noBidRounds++
			continue
		case (errors.Is(err, ErrAllRefused) || errors.Is(err, ErrProviderLost)) && lostRetries < r.cfg.Retries && ctx.Err() == nil:
			for p, lost := range blamed(err) {
				avoid[p] = avoid[p] || lost
			}
			w.retry(attempt+1, err.Error())
			if err := w.sleep(ctx, backoff(lostRetries, r.cfg.QueueBackoff, r.cfg.QueueBackoffMax, r.rnd()), false); err != nil {
				return nil, fmt.Errorf("job %s: %w", job.ID, err)
			}
			lostRetries++
			continue
		}
		return nil, fmt.Errorf("job %s: %w", job.ID, err)
	}
}

// failed reports whether a job that ran failed by its own doing: it exited
// non-zero or failed on its provider. A cancelled job did not fail.
func failed(res *Result) bool {
	return res != nil && (res.State == StateFailed || (res.State == StateCompleted && res.ExitCode != 0))
}

func describeFailure(res *Result) string {
	if res.State == StateCompleted {
		return fmt.Sprintf("exit code %d", res.ExitCode)
	}
	if res.Reason != "" {
		return res.Reason
	}
	return string(res.State)
}

// attemptError is an attempt's failure with the providers to blame for it:
// those that refused the invocation, or the one lost while running it
// (it stalled, overran or stopped answering).
type attemptError struct {
	err     error
	culprit []peer.ID
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// blamed returns the providers an attempt's error blames, each mapped to
// whether it must be left out whatever else bids: one that lost the job
// must; one that only refused the invocation (its hold had lapsed, or was
// displaced) is left out when another bids, and asked again when none does.
func blamed(err error) map[peer.ID]bool {
	var ae *attemptError
	if !errors.As(err, &ae) || len(ae.culprit) == 0 {
		return nil
	}
	lost := errors.Is(err, ErrProviderLost)
	out := map[peer.ID]bool{}
	for _, p := range ae.culprit {
		out[p] = lost
	}
	return out
}

// keepLosers is what an attempt's avoid set carries to the one after: a
// provider that refused is asked again one attempt later (it may have
// been busy), one that lost the job is never asked again for it.
func keepLosers(avoid map[peer.ID]bool) map[peer.ID]bool {
	out := map[peer.ID]bool{}
	for p, lost := range avoid {
		if lost {
			out[p] = true
		}
	}
	return out
}

// avoiding splits bids into those to invoke and those to release, leaving
// out the providers avoid names (see blamed).
func avoiding(bids []*SignedBid, avoid map[peer.ID]bool) (kept, dropped []*SignedBid) {
	var soft []*SignedBid
	for _, b := range bids {
		strict, ok := avoid[b.Bid.Provider]
		switch {
		case !ok:
			kept = append(kept, b)
		case strict:
			dropped = append(dropped, b)
		default:
			soft = append(soft, b)
		}
	}
	if len(kept) == 0 {
		return soft, dropped
	}
	return kept, append(dropped, soft...)
}

// waiting is one submission's place in the requester's queue and what it
// has told its watcher about waiting.
type waiting struct {
	r        *Requester
	job      string
	progress func(Progress)
	timeout  time.Duration
	deadline time.Time // of the current wait: from the submission, or the last retry
	place    lineJob
	inLine   bool   // in the line (a job with no queue timeout never is)
	why      string // the reason last reported as ProgressQueued; "" when not queued
}

// report forwards an attempt's step. While the job is queued the rounds of
// asking again are not reported one by one: the job stays queued, with its
// reason, until one brings a bid.
func (w *waiting) report(p Progress) {
	if w.why != "" && (p.Kind == ProgressPublished || p.Kind == ProgressClosed) {
		return
	}
	if p.Kind == ProgressBid || p.Kind == ProgressAccepted {
		w.why = ""
	}
	w.progress(p)
}

// queued reports that the job waits, and why, when that is news. noBids
// is the reason it found no provider, which the jobs behind it repeat.
func (w *waiting) queued(why string, noBids bool) {
	if w.inLine && noBids {
		w.r.queue.setWhy(w.job, why)
	}
	if why == w.why {
		return
	}
	w.why = why
	w.progress(Progress{Kind: ProgressQueued, JobID: w.job, Time: w.r.now(), Message: why})
}

// retry reports that the job is submitted again and puts it back in line,
// in its old place. Its queue timeout starts again: a job that ran for an
// hour before its provider was lost may still wait for another.
func (w *waiting) retry(attempt int, why string) {
	w.why = ""
	w.deadline = w.r.now().Add(w.timeout)
	if w.inLine {
		w.r.queue.rejoin(w.place)
	}
	w.progress(Progress{Kind: ProgressRetry, JobID: w.job, Attempt: attempt, Time: w.r.now(), Message: why})
}

// placed takes the job out of the line: bidding brought it bids, so the
// jobs behind it may bid.
func (w *waiting) placed() {
	if w.inLine {
		w.r.queue.leave(w.job)
	}
}

// turn waits until no earlier job of this requester that competes for the
// same capacity is waiting for it, or the queue timeout passes. Behind a
// job that is only bidding the wait is short (its bidding window at most)
// and not reported; behind one that found no provider the job is queued
// too, for the same reason.
func (w *waiting) turn(ctx context.Context) error {
	if !w.inLine {
		return nil
	}
	for {
		ahead, blocked, changed := w.r.queue.blocker(w.place)
		if !blocked {
			return nil
		}
		// The job ID as dms job list shows it: this requester's own job.
		why := fmt.Sprintf("waiting behind job %.12s, submitted earlier and needing no more than this one", ahead.ID)
		if ahead.Why != "" {
			why += ": " + ahead.Why
		}
		left := w.deadline.Sub(w.r.now())
		if left <= 0 {
			return fmt.Errorf("%w: %s", ErrNoBids, queuedFor(w.timeout, errors.New(why)))
		}
		if ahead.Why != "" {
			w.queued(why, false)
		}
		t := time.NewTimer(left)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// sleep waits d, or until the queue timeout if that comes first (and
// bounded says it does), or ctx ends. Bounded, one more round of asking
// follows at the queue timeout.
func (w *waiting) sleep(ctx context.Context, d time.Duration, bounded bool) error {
	if left := w.deadline.Sub(w.r.now()); bounded && left < d {
		d = max(left, 0)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Requester) attempt(ctx context.Context, st *staged, maxPrice *float64, attempt int, avoid map[peer.ID]bool, w *waiting) (*Result, error) {
	job := st.job
	bids, req, err := r.collect(ctx, job, st.inputs, maxPrice, attempt, 1, w.report)
	if err != nil {
		return nil, err
	}
	if len(avoid) > 0 {
		kept, dropped := avoiding(bids, avoid)
		r.release(dropped)
		if len(kept) == 0 {
			return nil, fmt.Errorf("%w: only %d provider(s) bid, each of which lost this job in an attempt before", ErrNoBids, len(dropped))
		}
		bids = kept
	}
	w.placed()
	r.rank(req, bids, job.Prefer)
	winner, allocID, err := r.invoke(ctx, st, bids, attempt, w.report)
	if err != nil {
		var culprits []peer.ID
		for _, b := range bids {
			culprits = append(culprits, b.Bid.Provider)
		}
		return nil, &attemptError{err: err, culprit: culprits}
	}
	lim := watchLimits{accepted: r.now(), stall: r.cfg.StallTimeout, run: runLimit(job.Duration.Std(), r.cfg.DeadlineMargin)}
	res, err := r.follow(ctx, job.ID, winner, allocID, attempt, w.report, lim)
	o := outcomeOf(res, err)
	if err == nil {
		if err = r.checkReceipt(st, bids, winner, res); err != nil {
			o = OutcomeBadReceipt
		}
	}
	if o != "" && ctx.Err() == nil {
		r.rep.Record(winner, o, job.ID)
	}
	if err != nil && errors.Is(err, ErrProviderLost) {
		return nil, &attemptError{err: err, culprit: []peer.ID{winner}}
	}
	return res, err
}

// staged is a job as each winner gets it: a module over MaxInlineModule and
// the inputs are shared with that winner, and the invocation names them.
type staged struct {
	job    JobSpec
	inputs []byte
	blobs  *blobs
	ttl    time.Duration
	shared []sharing
}

type sharing struct {
	blob Blob
	with peer.ID
}

// forWinner returns the job spec to invoke p with, sharing what p fetches.
func (s *staged) forWinner(p peer.ID) JobSpec {
	job := s.job
	if len(job.Module) > MaxInlineModule {
		b := s.blobs.share(job.Module, p, s.ttl)
		s.shared = append(s.shared, sharing{b, p})
		job.Module, job.ModuleBlob = nil, &b
	}
	if len(s.inputs) > 0 {
		b := s.blobs.share(s.inputs, p, s.ttl)
		s.shared = append(s.shared, sharing{b, p})
		job.Inputs = &b
	}
	return job
}

func (s *staged) unshare() {
	for _, sh := range s.shared {
		s.blobs.unshare(sh.blob, sh.with)
	}
}

// collect publishes the bid request and gathers acceptable bids until
// WantBids are in, Grace has passed since the first, or the window closes.
//
// need is the fewest bids the job can use (a replicated job's replicas):
// the grace does not close bidding before that many are in, only the window.
func (r *Requester) collect(ctx context.Context, job JobSpec, inputs []byte, maxPrice *float64, attempt, need int, progress func(Progress)) ([]*SignedBid, *BidRequest, error) {
	now := r.now()
	want := max(r.cfg.WantBids, need, 1)
	providers := len(r.host.KnownPeers(ProtocolBidRequest))
	req := &BidRequest{
		JobID: job.ID, Requester: r.host.ID(), Requirements: job.Requirements, MaxPrice: maxPrice,
		Duration: job.Duration, Executor: job.Executor, Image: job.Image, InputSize: int64(len(inputs)), Deadline: now.Add(r.cfg.BiddingWindow),
		Nonce: randid.Hex(12), WantBids: want, SentAt: now, Attempt: attempt,
		// Erring low on the network's size only widens the spread; a
		// spread too narrow (peers that left still counted) is made up
		// for by widening.
		Spread:      SpreadFor(want, providers, r.cfg.SpreadFactor),
		Explain:     SpreadFor(MaxExplainers, providers, 1),
		Constraints: job.Constraints,
	}
	if len(job.Module) > 0 {
		req.ModuleHash, req.ModuleSize = ModuleHash(job.Module), len(job.Module)
	}
	if len(inputs) > 0 {
		req.InputsHash = ModuleHash(inputs) // the same sha256 names any content
	}
	open := &openJob{nonces: map[string]float64{req.Nonce: req.Spread}, bids: make(chan *SignedBid, 4*want+16)}
	r.mu.Lock()
	r.open[job.ID] = open
	r.mu.Unlock()
	closed := false
	closeBidding := func() {
		if !closed {
			closed = true
			r.mu.Lock()
			delete(r.open, job.ID)
			r.mu.Unlock()
		}
	}
	defer closeBidding()

	window, cancel := context.WithDeadline(ctx, req.Deadline)
	defer cancel()
	if err := r.publish(window, req); err != nil {
		if ctx.Err() == nil && !r.now().Before(req.Deadline) {
			return nil, nil, fmt.Errorf("%w: the %v bidding window closed before the bid request went out (%v); is this machine overloaded?", ErrNoBids, r.cfg.BiddingWindow, err)
		}
		return nil, nil, err
	}
	progress(Progress{Kind: ProgressPublished, JobID: job.ID, Attempt: attempt, Time: r.now(), Message: fmt.Sprintf("spread %.3g", req.Spread)})

	plan := newWidening(req.Spread, r.resendAfter(), r.widenAfter(), r.cfg.Widen)
	asked := 1
	var widen <-chan time.Time
	if d := plan.first(); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		widen = t.C
	}
	var bids []*SignedBid
	var unacceptable []answer
	var grace <-chan time.Time
	var graceTimer *time.Timer
	defer func() {
		if graceTimer != nil {
			graceTimer.Stop()
		}
	}()
	take := func(b *SignedBid) {
		// One bid per provider, the latest: a provider bids again for the
		// same attempt only once its earlier bid is gone (expired, or
		// pushed aside and asked again), and it honours only the one it
		// holds now.
		n := len(bids)
		bids = slices.DeleteFunc(bids, func(o *SignedBid) bool { return o.Bid.Provider == b.Bid.Provider })
		if n == 0 && len(unacceptable) == 0 {
			r.observeFirstBid(r.now().Sub(now))
		}
		if r.shunned(b) {
			if len(unacceptable) < maxAnswers {
				unacceptable = append(unacceptable, answer{Provider: b.Bid.Provider, Code: ReasonAvoided, Text: avoidedText})
			}
			return
		}
		if code, why := judge(req, &b.Bid, r.now()); why != "" {
			if len(unacceptable) < maxAnswers {
				unacceptable = append(unacceptable, answer{Provider: b.Bid.Provider, Code: code, Text: why})
			}
			r.log.Debug("bid not acceptable", "job", job.ID, "provider", b.Provider, "reason", why)
			return
		}
		bids = append(bids, b)
		progress(Progress{Kind: ProgressBid, JobID: job.ID, Attempt: attempt, Time: r.now(), Bid: &b.Bid})
		if graceTimer == nil {
			graceTimer = time.NewTimer(r.cfg.Grace)
			grace = graceTimer.C
		}
	}
	dropped := false // a sudden drop in bids was acted on
	for len(bids) < want {
		select {
		case b := <-open.bids:
			take(b)
			continue
		case <-widen:
			widen = nil
			spread, again, after := plan.next(len(bids), asked)
			if !again {
				continue
			}
			asked++
			wide := *req
			wide.Spread, wide.Nonce, wide.SentAt = spread, randid.Hex(12), r.now()
			r.mu.Lock()
			open.nonces[wide.Nonce] = wide.Spread
			r.mu.Unlock()
			// The first request is out, so a re-send that cannot go (the
			// window closing while it waits its turn, on a machine this
			// loaded) ends nothing: bidding goes on to its end.
			if err := r.publish(window, &wide); err != nil {
				r.log.Debug("bid request not sent again", "job", job.ID, "err", err)
				continue
			}
			progress(Progress{Kind: ProgressPublished, JobID: job.ID, Attempt: attempt, Time: r.now(), Message: fmt.Sprintf("%d bids so far: asked again with spread %.3g", len(bids), wide.Spread)})
			if after > 0 {
				t := time.NewTimer(after)
				defer t.Stop()
				widen = t.C
			}
			continue
		case <-grace:
			if len(bids) < need {
				// The next bid starts the grace again.
				grace, graceTimer = nil, nil
				continue
			}
			if spread, wait, again := plan.short(len(bids), r.usual(), dropped); again {
				dropped = true
				r.askAgain(window, req, open, spread, len(bids), attempt, progress)
				t := time.NewTimer(wait)
				defer t.Stop()
				grace = t.C
				continue
			}
		case <-window.Done():
		}
		break
	}
	// Close bidding, then take what handleBid accepted before it closed:
	// those providers were told their bid was taken.
	closeBidding()
	for late := true; late; {
		select {
		case b := <-open.bids:
			take(b)
		default:
			late = false
		}
	}
	if ctx.Err() != nil {
		r.release(bids)
		return nil, nil, ctx.Err()
	}
	r.observeBids(len(bids))
	progress(Progress{Kind: ProgressClosed, JobID: job.ID, Attempt: attempt, Time: r.now(), Message: fmt.Sprintf("%d acceptable bids", len(bids))})
	if len(bids) == 0 {
		r.mu.Lock()
		answers := append(slices.Clip(open.answers), unacceptable...)
		r.mu.Unlock()
		return nil, nil, &NoMatchError{
			NoMatch: summarize(answers, len(r.host.Peers())),
			Detail:  fmt.Sprintf("no provider bid for %s (executor %s, %s%s) within %v", job.Requirements, job.Executor, job.Duration, describeConstraints(job.Constraints), r.cfg.BiddingWindow),
		}
	}
	return bids, req, nil
}

// resendAfter is how long bidding waits for the bids it wants before it
// sends the request once more: Widen, or twice the usual wait for a first
// bid if that is longer (on a loaded machine bids are late, not missing),
// but never past a quarter of the bidding window.
func (r *Requester) resendAfter() time.Duration {
	return min(max(r.cfg.Widen, 2*time.Duration(r.firstBid.Load())), r.cfg.BiddingWindow/4)
}

// widenAfter is how long bidding waits for a first bid before asking
// again, wider: Widen, or three times the usual wait for a first bid if
// that is longer, but never past half the bidding window.
func (r *Requester) widenAfter() time.Duration {
	if r.cfg.Widen <= 0 {
		return 0
	}
	return min(max(r.cfg.Widen, 3*time.Duration(r.firstBid.Load())), r.cfg.BiddingWindow/2)
}

// askAgain sends the round's request once more at spread, under a nonce
// of its own; a request that cannot go only leaves bidding to its end.
func (r *Requester) askAgain(ctx context.Context, req *BidRequest, open *openJob, spread float64, bids, attempt int, progress func(Progress)) {
	again := *req
	again.Spread, again.Nonce, again.SentAt = spread, randid.Hex(12), r.now()
	r.mu.Lock()
	open.nonces[again.Nonce] = spread
	r.mu.Unlock()
	if err := r.publish(ctx, &again); err != nil {
		r.log.Debug("bid request not sent again", "job", req.JobID, "err", err)
		return
	}
	r.log.Info("bids dropped sharply: asked again, wider", "job", req.JobID, "bids", bids, "usual", r.usual(), "spread", spread)
	progress(Progress{Kind: ProgressPublished, JobID: req.JobID, Attempt: attempt, Time: r.now(), Message: fmt.Sprintf("%d bids where about %.1f come: asked again with spread %.3g", bids, r.usual(), spread)})
}

// usual is the moving average of acceptable bids per job; 0 before any.
func (r *Requester) usual() float64 { return math.Float64frombits(r.usualBids.Load()) }

// observeBids folds one job's count of acceptable bids into usual.
func (r *Requester) observeBids(n int) {
	for {
		old := r.usualBids.Load()
		next := float64(n)
		if old != 0 {
			next = math.Float64frombits(old) + (float64(n)-math.Float64frombits(old))/8
		}
		if r.usualBids.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// observeFirstBid folds one first-bid latency into the moving average.
func (r *Requester) observeFirstBid(d time.Duration) {
	for {
		old := r.firstBid.Load()
		next := int64(d)
		if old > 0 {
			next = old + (int64(d)-old)/8
		}
		if r.firstBid.CompareAndSwap(old, next) {
			return
		}
	}
}

// publish sends the bid request: straight to the providers nearest the
// job while it asks only a share of them (direct.go), else on the topic. A
// node with no peer on the topic that is onboarded itself bids for its own
// job instead (there is nobody to send it to, and a provider ignores its
// own requests on the topic).
func (r *Requester) publish(ctx context.Context, req *BidRequest) error {
	if len(r.topic.ListPeers()) == 0 && r.local != nil && r.local(req) {
		r.log.Debug("alone on the topic: bidding for our own job", "job", req.JobID)
		return nil
	}
	if r.pace != nil {
		if err := r.pace.Wait(ctx); err != nil {
			return fmt.Errorf("publish bid request: waiting for this requester's turn within its request rate: %w", err)
		}
	}
	if targets := r.directTargets(req); len(targets) > 0 {
		direct := *req
		direct.Explain = 1 // a handful asked by name: each says why not
		return r.sendDirect(ctx, &direct, targets)
	}
	return r.publishTopic(ctx, req)
}

// publishTopic publishes the bid request on the topic, to everyone.
func (r *Requester) publishTopic(ctx context.Context, req *BidRequest) error {
	data, err := SealBidRequest(req, r.key)
	if err != nil {
		return err
	}
	if err := r.topic.Publish(ctx, data); err != nil {
		if len(r.topic.ListPeers()) == 0 && !errors.Is(err, p2p.ErrTopicClosed) {
			return fmt.Errorf("%w: this node is alone on network %q: no peer shares the bid-request topic. "+
				"Join a network (dms run --bootstrap MULTIADDR, with that network's --network and --swarm-key), or onboard this node to run its own jobs", ErrNoBids, r.host.Network())
		}
		return fmt.Errorf("publish bid request: %w", err)
	}
	return nil
}

// acceptable says why a bid cannot be taken, or "" if it can.
func acceptable(req *BidRequest, b *Bid, now time.Time) string {
	_, why := judge(req, b, now)
	return why
}

// judge is acceptable with a reason code (decline.go) for the summary of
// a round with no acceptable bid; its text reads after a provider count.
func judge(req *BidRequest, b *Bid, now time.Time) (code, why string) {
	switch {
	case req.MaxPrice != nil && b.Price > *req.MaxPrice:
		return ReasonPrice, fmt.Sprintf("bid %v, over the max price %v", b.Price, *req.MaxPrice)
	case !now.Before(b.HoldExpires):
		return ReasonExpired, "bid with a hold that had expired"
	case !req.Requirements.Fits(b.Offered):
		return ReasonTooSmall, "bid an offer that does not cover the requirements"
	case Unmet(req.Constraints, b.Labels) != "":
		// A provider too old to know constraints bids regardless.
		return ReasonConstraint, "bid though " + Unmet(req.Constraints, b.Labels)
	}
	return "", ""
}

// invoke tries the bids best first until one provider accepts, then
// releases the holds of the others.
func (r *Requester) invoke(ctx context.Context, st *staged, bids []*SignedBid, attempt int, progress func(Progress)) (peer.ID, string, error) {
	var reasons []string
	for i, b := range bids {
		allocID, err := r.invokeOne(ctx, st, b, attempt, progress)
		if err == nil {
			r.release(bids[i+1:])
			return b.Provider, allocID, nil
		}
		if ctx.Err() != nil {
			r.release(bids[i+1:])
			return "", "", ctx.Err()
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", b.Provider, err))
		r.rep.Record(b.Provider, OutcomeRefused, st.job.ID)
	}
	return "", "", fmt.Errorf("%w: %v", ErrAllRefused, reasons)
}

// invokeOne invokes one bid; a provider that refuses, or that the
// invocation did not reach, is let go of its hold (one that never got the
// invocation still holds for the job: released, a retry's fresh request
// finds it free rather than "already bid").
func (r *Requester) invokeOne(ctx context.Context, st *staged, b *SignedBid, attempt int, progress func(Progress)) (string, error) {
	msg, err := EncodeInvokeMessage(&InvokeMessage{Invocation: &Invocation{Bid: *b, Job: st.forWinner(b.Bid.Provider)}})
	if err != nil {
		return "", err
	}
	ictx, cancel := context.WithTimeout(ctx, r.cfg.InvokeTimeout)
	data, err := r.host.Request(ictx, b.Provider, ProtocolInvoke, msg, MaxReplySize)
	cancel()
	var reply *InvokeReply
	if err == nil {
		reply, err = DecodeInvokeReply(data)
	}
	if err == nil && !reply.Accepted {
		err = errors.New(reply.Reason)
	}
	if err != nil {
		progress(Progress{Kind: ProgressRefused, JobID: st.job.ID, Attempt: attempt, Time: r.now(), Provider: b.Provider, Message: err.Error()})
		r.release([]*SignedBid{b})
		return "", err
	}
	progress(Progress{Kind: ProgressAccepted, JobID: st.job.ID, Attempt: attempt, Time: r.now(), Provider: b.Bid.Provider, AllocationID: reply.AllocationID, Bid: &b.Bid})
	return reply.AllocationID, nil
}

// release tells losing bidders to drop their holds. It is best effort: a
// hold that is not released expires anyway.
func (r *Requester) release(bids []*SignedBid) {
	for _, b := range bids {
		msg, err := EncodeInvokeMessage(&InvokeMessage{ReleaseJob: b.JobID, ReleaseNonce: b.Bid.Nonce})
		if err != nil {
			continue
		}
		r.wg.Add(1)
		go func(p peer.ID) {
			defer r.wg.Done()
			ctx, cancel := context.WithTimeout(r.ctx, r.cfg.InvokeTimeout)
			defer cancel()
			if _, err := r.host.Request(ctx, p, ProtocolInvoke, msg, MaxReplySize); err != nil {
				r.log.Debug("release hold", "provider", p, "err", err)
			}
		}(b.Provider)
	}
}

// follow watches the allocation until its result. Silence longer than
// LostAfter, or the stream ending without a result, is ErrProviderLost,
// and the provider is chased to stop its copy: we move on.
func (r *Requester) follow(ctx context.Context, jobID string, provider peer.ID, allocID string, attempt int, progress func(Progress), lim watchLimits) (*Result, error) {
	res, err := r.watch(ctx, jobID, provider, allocID, attempt, progress, lim)
	if errors.Is(err, ErrProviderLost) && ctx.Err() == nil {
		// We move on; the provider, if it comes back, must too.
		r.chase(provider, allocID)
	}
	return res, err
}

// Reattach follows again an allocation this node invoked before it
// restarted, from its first event (the provider replays them), until its
// result. The provider may not be reachable at once (the mesh is still
// forming) or may have gone quiet: it is asked again, with backoff, for up
// to within; only then is it given up on (ErrProviderLost) and chased. An
// answer that the allocation is unknown or not ours ends it at once.
func (r *Requester) Reattach(ctx context.Context, jobID string, provider peer.ID, allocID string, attempt int, within time.Duration, progress func(Progress)) (*Result, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	deadline := r.now().Add(within)
	wait := r.cfg.Keepalive
	for {
		// The accept is long past, its time unknown here: no stall timeout,
		// no deadline of the requester's own.
		res, err := r.watch(ctx, jobID, provider, allocID, attempt, progress, watchLimits{})
		if err == nil {
			// The bid and spec invoked are gone with the process that
			// invoked them: the rest of the receipt is checked.
			_, err = VerifyReceipt(res.Receipt, ReceiptExpect{JobID: jobID, Requester: r.host.ID(), Provider: provider, Result: res})
			return res, err
		}
		if !errors.Is(err, ErrProviderLost) || ctx.Err() != nil {
			return res, err
		}
		if !r.now().Add(wait).Before(deadline) {
			r.chase(provider, allocID)
			return nil, fmt.Errorf("%w (following it again for %v after this node restarted)", err, within)
		}
		r.log.Debug("allocation not reached again yet", "job", jobID, "provider", provider, "allocation", allocID, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// watchLimits are the requester's own bounds on an allocation it follows;
// zero values set none.
type watchLimits struct {
	accepted time.Time     // when the provider accepted the job
	stall    time.Duration // from accepted, for the first word from it
	run      time.Duration // from the job's start (or accepted, if none comes), for its result
}

// watch is one allocation stream: it replays the allocation's events from
// the first and follows them to the result. It ends the stream itself when
// the provider sends nothing within lim's stall timeout
// (ErrProviderStalled) or has no result by lim's deadline
// (ErrProviderOverran), heartbeats or not.
func (r *Requester) watch(ctx context.Context, jobID string, provider peer.ID, allocID string, attempt int, progress func(Progress), lim watchLimits) (*Result, error) {
	octx, cancelOpen := ctx, context.CancelFunc(func() {})
	if lim.stall > 0 {
		octx, cancelOpen = context.WithDeadline(ctx, lim.accepted.Add(lim.stall))
	}
	s, err := r.host.OpenStream(octx, provider, ProtocolAllocation)
	stalled := octx.Err() != nil && ctx.Err() == nil
	cancelOpen()
	if err != nil {
		if stalled {
			return nil, fmt.Errorf("%w: %s opened no allocation stream within %v", ErrProviderStalled, provider, lim.stall)
		}
		return nil, fmt.Errorf("%w: open allocation stream to %s: %v", ErrProviderLost, provider, err)
	}
	defer s.Close()
	s.SetMaxFrameSize(MaxEventSize)
	s.SetTimeout(r.cfg.LostAfter)
	// cut is why the requester ended the stream itself; a timer that sets
	// it resets the stream, which ends the Recv below.
	var cut atomic.Pointer[error]
	end := func(why error) {
		cut.CompareAndSwap(nil, &why)
		s.Reset()
	}
	var stall, deadline *time.Timer
	if lim.stall > 0 {
		// Until the first word, silence is timed by the stall timer alone.
		s.SetTimeout(lim.stall + r.cfg.LostAfter)
		stall = time.AfterFunc(lim.accepted.Add(lim.stall).Sub(r.now()), func() {
			end(fmt.Errorf("%w: nothing from %s on allocation %s within %v of its accepting the job", ErrProviderStalled, provider, allocID, lim.stall))
		})
		defer stall.Stop()
	}
	overran := func() {
		end(fmt.Errorf("%w: allocation %s on %s had no result %v after the job started (its duration and a margin); cancelled", ErrProviderOverran, allocID, provider, lim.run))
	}
	if lim.run > 0 {
		deadline = time.AfterFunc(lim.accepted.Add(lim.run).Sub(r.now()), overran)
		defer deadline.Stop()
	}
	started := false
	msg, err := Encode(&AllocationRequest{AllocationID: allocID})
	if err != nil {
		return nil, err
	}
	if err := s.Send(msg); err != nil {
		s.Reset()
		return nil, fmt.Errorf("%w: %v", ErrProviderLost, err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	// Keepalives tell the provider someone still follows the job; without
	// them it stops the allocation (ProviderConfig.AbandonGrace).
	kctx, stopKeepalive := context.WithCancel(ctx)
	keeping := make(chan struct{})
	go func() {
		defer close(keeping)
		t := time.NewTicker(r.cfg.Keepalive)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if s.Send(Keepalive) != nil {
					return
				}
			case <-kctx.Done():
				return
			}
		}
	}()
	defer func() {
		stopKeepalive()
		<-keeping
	}()
	// The result event carries no output: it is assembled from the output
	// events, bounded in case the provider sends more than it should.
	var stdout, stderr []byte
	var stdoutCut, stderrCut bool
	keep := func(buf []byte, cut *bool, p []byte) []byte {
		if room := MaxResultOutput - len(buf); room < len(p) {
			*cut = true
			p = p[:max(room, 0)]
		}
		return append(buf, p...)
	}
	for {
		data, err := s.Recv()
		if err != nil {
			s.Reset()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if why := cut.Load(); why != nil {
				return nil, *why
			}
			return nil, fmt.Errorf("%w: %s stopped answering on allocation %s: %v", ErrProviderLost, provider, allocID, err)
		}
		if stall != nil && stall.Stop() {
			s.SetTimeout(r.cfg.LostAfter)
		}
		ev, err := DecodeEvent(data)
		if err != nil {
			s.Reset()
			return nil, fmt.Errorf("allocation %s: %w", allocID, err)
		}
		if deadline != nil && !started && ev.Kind == EventState && ev.State == StateRunning {
			// Counted from the start: staging (fetching the module and
			// inputs) is not the job's duration. A start that comes only
			// after the deadline from the accept comes too late.
			started = true
			if deadline.Stop() {
				deadline = time.AfterFunc(lim.run, overran)
				defer deadline.Stop()
			}
		}
		if ev.Kind == EventHeartbeat {
			if ev.Message != "" {
				return nil, fmt.Errorf("allocation %s on %s: %s", allocID, provider, ev.Message)
			}
			continue
		}
		switch ev.Kind {
		case EventStdout:
			stdout = keep(stdout, &stdoutCut, ev.Data)
		case EventStderr:
			stderr = keep(stderr, &stderrCut, ev.Data)
		}
		progress(Progress{Kind: ProgressEvent, JobID: jobID, Attempt: attempt, Time: r.now(), Provider: provider, AllocationID: allocID, Event: ev})
		if ev.Kind == EventResult {
			res := *ev.Result
			res.Stdout, res.Stderr = stdout, stderr
			res.StdoutTruncated = res.StdoutTruncated || stdoutCut
			res.StderrTruncated = res.StderrTruncated || stderrCut
			return &res, nil
		}
	}
}

// chase keeps asking a provider that was given up on to cancel the
// allocation, for ChaseAbandoned: a frozen or cut-off provider hears it as
// soon as it is back, rather than running the job for nobody until its
// AbandonGrace runs out.
func (r *Requester) chase(provider peer.ID, allocID string) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		deadline := r.now().Add(r.cfg.ChaseAbandoned)
		wait := r.cfg.Keepalive
		for r.now().Before(deadline) {
			ctx, cancel := context.WithTimeout(r.ctx, r.cfg.LostAfter)
			err := r.Cancel(ctx, provider, allocID)
			cancel()
			if err == nil || errors.Is(err, errCancelAnswered) || r.ctx.Err() != nil {
				if err == nil {
					r.log.Info("a provider given up on has stopped its copy", "provider", provider, "allocation", allocID)
				}
				return
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
				return
			}
			wait = min(2*wait, 5*time.Second)
		}
	}()
}

// errCancelAnswered: the provider answered a cancel with why it did not
// cancel (the allocation has ended, or it does not know it): it is back
// and has nothing of ours left to stop.
var errCancelAnswered = errors.New("the provider did not cancel")

// Cancel asks a provider to stop an allocation this node invoked.
func (r *Requester) Cancel(ctx context.Context, provider peer.ID, allocID string) error {
	s, err := r.host.OpenStream(ctx, provider, ProtocolAllocation)
	if err != nil {
		return fmt.Errorf("cancel %s: %w", allocID, err)
	}
	defer s.Close()
	s.SetMaxFrameSize(MaxEventSize)
	// A provider that takes the stream and never answers must not hold the
	// chase (and Close, which waits for it) forever.
	s.SetTimeout(r.cfg.LostAfter)
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	msg, err := Encode(&AllocationRequest{AllocationID: allocID, Cancel: true})
	if err != nil {
		return err
	}
	if err := s.Send(msg); err != nil {
		s.Reset()
		return fmt.Errorf("cancel %s: %w", allocID, err)
	}
	data, err := s.Recv()
	if err != nil {
		s.Reset()
		return fmt.Errorf("cancel %s: %w", allocID, err)
	}
	ev, err := DecodeEvent(data)
	if err != nil {
		return fmt.Errorf("cancel %s: %w", allocID, err)
	}
	if ev.Message != "" {
		return fmt.Errorf("cancel %s: %w: %s", allocID, errCancelAnswered, ev.Message)
	}
	return nil
}
