package orchestrator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/p2p"
)

// Backend is what the provider side needs from the node: its offer, the
// capacity that bids hold (Capacity) and its allocations. The node
// implements it. The provider's book owns the bids; the backend knows holds
// by id only.
type Backend interface {
	// Onboarded reports whether the node offers anything; when it does not,
	// bid requests are ignored.
	Onboarded() bool
	Preferences() Preferences
	// Offer is what the node could give a job right now.
	Offer() Offer
	// CanRun says why the node cannot run what req asks for, beyond its
	// capacity and preferences: a container image it does not have, an
	// engine that does not answer. nil: it can.
	CanRun(ctx context.Context, req *BidRequest) error
	// Load is how busy the node is, 0 (idle) to 1 (all locked): less loaded
	// providers bid sooner.
	Load() float64
	// Capacity holds the bids' requirements, by HoldID.
	Capacity
	// Accept makes the pinned hold holdID a lock and starts the
	// allocation. The invocation has been checked: the bid is ours,
	// unexpired, and the invoker is the requester that received it. An
	// allocation that nobody watches for AbandonGrace is stopped: its
	// requester is gone.
	Accept(holdID string, inv *Invocation) (allocationID string, err error)
	// Watch streams an allocation's events from the first; the channel is
	// closed after the result. Only the allocation's requester may watch.
	// The allocation counts as followed for as long as ctx lives.
	Watch(ctx context.Context, allocationID string, requester peer.ID) (<-chan Event, error)
	// Cancel stops an allocation on behalf of its requester.
	Cancel(allocationID string, requester peer.ID) error
	// Holds reports whether the node keeps content of this sha256 (a
	// module or inputs it fetched for an earlier job) and would use it for
	// requester's job, so that a bid can say the job would move none of it.
	Holds(requester peer.ID, sha256 string, kind BlobKind) bool
}

// ProviderConfig tunes the provider side.
type ProviderConfig struct {
	// HoldWindow bounds how long a hold waits for bidding to close,
	// whatever deadline the request names; HoldGrace is how long past that
	// it lasts, so the requester has time to invoke the next bid if the
	// first winner refuses. A hold never outlives HoldWindow+HoldGrace.
	HoldWindow time.Duration
	HoldGrace  time.Duration
	// MaxHoldsPerRequester bounds the open bids (holds) of one requester
	// here; beyond its first, they stay within RequesterShare of the offer
	// (in each of cpu, memory and disk).
	MaxHoldsPerRequester int
	RequesterShare       float64
	// NewcomerShare bounds what all the requesters that have not run a job
	// here hold together (1: all of it). Their holds give way to known
	// requesters anyway (see book.go); a share below 1 also keeps that
	// part free for known requesters' largest jobs, at the cost of jobs
	// from newcomers bigger than the share.
	NewcomerShare float64
	// LapseAllowance: a requester whose lapsed holds (neither invoked nor
	// released before they expired) outnumber its invocations by more than
	// this gets no bids, until StandingMemory after it was last seen.
	LapseAllowance int
	StandingMemory time.Duration
	// A requester owes, in offer-seconds (its share of the offer, in the
	// largest dimension, times seconds), what its holds held without
	// running: released, superseded or lapsed. What it runs here pays it
	// back, and IdleHoldForgiven a second is forgiven (about what an
	// honest requester's released bids come to; a requester may keep that
	// share of the offer held unrun for good). One that owes more than
	// IdleHoldLimit gets no bids until it owes less; the unclaimed holds
	// of one that owes more than another by IdleHoldMargin give way to
	// the other's bids, beyond the share it earned by running (see
	// book.go).
	IdleHoldLimit    float64
	IdleHoldForgiven float64
	IdleHoldMargin   float64
	// FullShareAfter is the offer-seconds a requester must have run here
	// before it may hold the whole offer firmly (safe from displacement);
	// less earns a share in proportion.
	FullShareAfter float64
	// FreshHold: a newcomer's hold younger than this gives way only to a
	// requester that has earned, by running, the share it asks for: the
	// moment between a bid and its invocation (the bidding window's Grace
	// and a round trip). Longer, it keeps known requesters from the offer
	// that a crowd of fresh identities takes in turns.
	FreshHold time.Duration
	// FollowTimeout: a requester watching an allocation that sends no
	// keepalive for this long is taken as gone. AbandonGrace: an allocation
	// nobody watches for this long is stopped and its lock released (its
	// requester was killed, partitioned, or moved on).
	FollowTimeout time.Duration
	AbandonGrace  time.Duration
	// Heartbeat is how often an idle allocation stream says it is alive; the
	// requester takes a few missed ones as the provider lost.
	Heartbeat time.Duration
	// MaxBidDelay bounds the pause before a bid (see storm.go); 0 bids at
	// once.
	MaxBidDelay time.Duration
}

// DefaultProviderConfig suits a real network.
func DefaultProviderConfig() ProviderConfig {
	return ProviderConfig{
		HoldWindow: 5 * time.Second, HoldGrace: 5 * time.Second,
		MaxHoldsPerRequester: 4, RequesterShare: 0.5, NewcomerShare: 1,
		LapseAllowance: 1, StandingMemory: time.Hour,
		IdleHoldLimit: 30, IdleHoldForgiven: 0.25, IdleHoldMargin: 8, FullShareAfter: 120,
		FreshHold:     500 * time.Millisecond,
		FollowTimeout: 5 * time.Second, AbandonGrace: DefaultAbandonGrace,
		Heartbeat: time.Second, MaxBidDelay: 10 * time.Millisecond,
	}
}

// DefaultAbandonGrace is how long an allocation runs unwatched before its
// provider stops it: three times the requester's default LostAfter, so a
// requester that merely reconnects never loses its job, and short next to
// the jobs it would otherwise run for nobody.
const DefaultAbandonGrace = 15 * time.Second

// Validate checks the provider's settings.
func (c ProviderConfig) Validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{"hold window": c.HoldWindow, "hold grace": c.HoldGrace, "standing memory": c.StandingMemory,
		"follow timeout": c.FollowTimeout, "abandon grace": c.AbandonGrace, "heartbeat": c.Heartbeat} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", name, d))
		}
	}
	if c.MaxHoldsPerRequester < 1 {
		errs = append(errs, fmt.Errorf("max holds per requester %d: want at least 1", c.MaxHoldsPerRequester))
	}
	for name, v := range map[string]float64{"requester share": c.RequesterShare, "newcomer share": c.NewcomerShare} {
		if !(v > 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("%s %v: want more than 0, at most 1", name, v))
		}
	}
	if c.LapseAllowance < 0 || c.MaxBidDelay < 0 {
		errs = append(errs, errors.New("lapse allowance and max bid delay must not be negative"))
	}
	if !(c.IdleHoldLimit > 0) || !(c.IdleHoldForgiven >= 0) || !(c.IdleHoldMargin >= 0 && c.IdleHoldMargin <= c.IdleHoldLimit) || !(c.FullShareAfter >= 0) || c.FreshHold < 0 {
		errs = append(errs, fmt.Errorf("idle hold limit %v, forgiven %v, margin %v, full share after %v, fresh hold %v: want a limit above 0, a margin from 0 to the limit, none negative",
			c.IdleHoldLimit, c.IdleHoldForgiven, c.IdleHoldMargin, c.FullShareAfter, c.FreshHold))
	}
	return errors.Join(errs...)
}

// Provider answers bid requests with bids and runs the invocations it wins.
type Provider struct {
	host    Network
	key     crypto.PrivKey
	backend Backend
	cfg     ProviderConfig
	log     *slog.Logger
	now     func() time.Time

	bidsSent     atomic.Int64
	displaced    atomic.Int64
	requestsSeen atomic.Int64

	book *book // open bids, requesters' standing, history

	declineMu sync.Mutex
	declines  *declineGate // which declines go out (decline.go)

	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// NewProvider registers the invoke and allocation handlers on host. Bid
// requests are fed to it with HandleBidRequest.
func NewProvider(host Network, key crypto.PrivKey, backend Backend, cfg ProviderConfig, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Provider{
		host: host, key: key, backend: backend, cfg: cfg, log: log.With("subsystem", "provider"),
		now: time.Now, ctx: ctx, cancel: cancel, book: newBook(cfg, backend),
		declines: newDeclineGate(DefaultDeclineLimits()),
	}
	if err := cfg.Validate(); err != nil {
		cancel()
		return nil, fmt.Errorf("provider config: %w", err)
	}
	if err := host.HandleRequest(ProtocolInvoke, MaxInvokeSize, p.handleInvoke); err != nil {
		cancel()
		return nil, err
	}
	if err := host.HandleStream(ProtocolAllocation, p.handleAllocation); err != nil {
		cancel()
		return nil, err
	}
	return p, nil
}

// Close stops pending bids and waits for them.
func (p *Provider) Close() {
	p.cancel()
	p.wg.Wait()
}

// RequestsSeen counts the bid requests that reached this provider.
func (p *Provider) RequestsSeen() int64 { return p.requestsSeen.Load() }

// Ran credits a requester with an allocation that ran here: used for d.
// What a requester runs pays back the holds it released unrun and earns
// it a firm share of the offer (see book.go).
func (p *Provider) Ran(requester peer.ID, used capability.Capability, d time.Duration) {
	p.book.ran(requester, dominantShare(used, p.backend.Offer().Registered), d, p.now())
}

// Throttled counts the times a requester came to hold far more of this
// provider's offer than it ran, and was refused bids for it.
func (p *Provider) Throttled() int64 { return p.book.throttledCount() }

// Displaced counts the unclaimed holds this provider dropped for another
// requester's bid.
func (p *Provider) Displaced() int64 { return p.displaced.Load() }

// BidsSent counts the bids this provider has sent.
func (p *Provider) BidsSent() int64 { return p.bidsSent.Load() }

// RegisteredBids returns the bids this node placed for a job.
func (p *Provider) RegisteredBids(jobID string) []Bid { return p.book.registeredBids(jobID) }

// Standing says how this provider sees a requester now.
func (p *Provider) Standing(requester peer.ID) Standing {
	return p.book.standing(requester, p.now())
}

// Declined says why this node did not bid for a job it heard of and
// could have taken by its preferences ("" when it bid or never heard).
func (p *Provider) Declined(jobID string) string { return p.book.declinedWhy(jobID) }

// HandleBidRequest decides whether to bid on a validated request and, if so,
// holds the capability and sends the bid. It returns at once; the bid goes
// out from a goroutine so the topic's reader never waits on a stream.
func (p *Provider) HandleBidRequest(req *BidRequest) { p.handle(req, false) }

// HandleDirectRequest is HandleBidRequest for a request sent to this node
// by name (direct.go): the requester chose it, so the spread does not
// apply.
func (p *Provider) HandleDirectRequest(req *BidRequest) { p.handle(req, true) }

func (p *Provider) handle(req *BidRequest, direct bool) {
	p.requestsSeen.Add(1)
	if req.Requester == p.host.ID() || !p.backend.Onboarded() {
		return
	}
	d := Distance(p.host.ID(), req.JobID)
	if !direct && !Eligible(d, req.Spread) {
		return
	}
	if direct {
		// Only the few asked hear it: waiting by distance would only
		// delay the job; the wait by load still lets the idle answer first.
		d = 0
	}
	if short, why := p.backend.Preferences().refusal(req); why != nil {
		p.log.Debug("not bidding", "job", req.JobID, "reason", why)
		if req.Executor != ExecutorWasm {
			// A user who sent a container or native job wants to know why
			// this provider did not take it; wasm jobs are the common case
			// and a mesh's worth of "not allowed" would only be noise.
			p.book.decline(req.JobID, why.Error())
		}
		p.tellWhy(req, short.Code, short.Text)
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.bid(req, d); err != nil {
			p.log.Debug("not bidding", "job", req.JobID, "reason", err)
		}
	}()
}

// HandleOwnRequest bids for a request of this very node, which the
// requester side hands over when no peer shares the topic. It reports
// whether the node is onboarded, so that the requester knows a bid may
// come. Preferences apply as to anyone's request; the spread does not (there
// is nobody else to spread over).
func (p *Provider) HandleOwnRequest(req *BidRequest) bool {
	if req.Requester != p.host.ID() || !p.backend.Onboarded() {
		return false
	}
	if short, why := p.backend.Preferences().refusal(req); why != nil {
		p.log.Info("not bidding for our own job", "job", req.JobID, "reason", why)
		p.tellWhy(req, short.Code, short.Text)
		return true
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.bid(req, 0); err != nil {
			p.log.Info("not bidding for our own job", "job", req.JobID, "reason", err)
		}
	}()
	return true
}

// bid decides (decide) and then acts: waits the bid's delay, places the
// bid in the book, which holds its capability, and sends it.
func (p *Provider) bid(req *BidRequest, distance float64) error {
	if err := p.book.supersede(req, p.now()); err != nil {
		return err
	}
	offer := p.backend.Offer()
	a := p.book.assess(req, offer.Registered, p.now())
	switch {
	case a.Throttled:
		p.log.Warn("requester throttled: it held this provider's offer far longer than it ran jobs on it; no bids until it owes less",
			"requester", req.Requester, "owed_offer_seconds", a.Owed, "limit", p.cfg.IdleHoldLimit)
	case a.Unthrottled:
		p.log.Info("requester no longer throttled", "requester", req.Requester, "owed_offer_seconds", a.Owed)
	}
	in := decisionInput{
		Now: p.now(), Distance: distance, Standing: a.Standing, Displaceable: a.Displaceable,
		Offer: offer, Load: p.backend.Load(), Config: p.cfg, Labels: p.backend.Preferences().Labels,
	}
	d := decide(req, in)
	if d.CheckCanRun {
		in.CanRun, in.Checked = p.backend.CanRun(p.ctx, req), true
		d = decide(req, in)
	}
	if d.Delay > 0 {
		t := time.NewTimer(d.Delay)
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			return p.ctx.Err()
		}
		in.Now, in.Offer, in.Waited = p.now(), p.backend.Offer(), true
		in.Displaceable = p.book.assess(req, in.Offer.Registered, in.Now).Displaceable
		d = decide(req, in)
	}
	if d.Decline != "" {
		if d.Record {
			p.book.decline(req.JobID, d.Decline)
		}
		p.tellWhy(req, d.Code, d.Short)
		return errors.New(d.Decline)
	}
	b := &Bid{
		JobID: req.JobID, Nonce: req.Nonce, Provider: p.host.ID(), Requester: req.Requester,
		Price: d.Quote, Currency: in.Offer.Price.Currency, Offered: d.Offered, Score: in.Offer.Score, HoldExpires: d.Expires,
		Labels: in.Labels,
	}
	b.HasModule, b.HasInputs = p.holds(req)
	sb, err := SealBid(b, p.key)
	if err != nil {
		return err
	}
	displaced, err := p.book.place(&placedBid{Bid: sb, Request: req, Newcomer: in.Standing == Newcomer}, in.Offer.Registered, in.Now)
	if err != nil {
		code, short := ReasonBusy, "holds all it allows one requester now"
		if now := p.backend.Offer(); !req.Requirements.Fits(now.Available) {
			code, short = tooSmall(req.Requirements, now.Registered, now.Available)
		}
		p.tellWhy(req, code, short)
		return err
	}
	p.displaced.Add(int64(len(displaced)))
	for _, o := range displaced {
		p.log.Debug("hold displaced", "job", o.Request.JobID, "holder", o.Request.Requester, "newcomer", o.Newcomer, "by", req.Requester)
	}
	ctx, cancel := context.WithDeadline(p.ctx, minTime(req.Deadline, d.Expires))
	defer cancel()
	p.bidsSent.Add(1)
	if _, err := p.host.Request(ctx, req.Requester, ProtocolBid, sb.Envelope, MaxReplySize); err != nil {
		// Late for bidding, or the requester gone: not its holding.
		p.book.release(req.Requester, req.JobID, false, p.now())
		return fmt.Errorf("send bid to %s: %w", req.Requester, err)
	}
	return nil
}

// tellWhy sends the requester a decline for req, if it is the first for
// this request and within the requester's decline rate; otherwise it drops
// it (see decline.go). HandleBidRequest has checked that req was meant for
// this provider (its spread).
func (p *Provider) tellWhy(req *BidRequest, code, text string) {
	if code == "" || !Explains(Distance(p.host.ID(), req.JobID), req.Explain) {
		return
	}
	p.declineMu.Lock()
	ok := p.declines.allow(req, p.now())
	p.declineMu.Unlock()
	if !ok {
		return
	}
	data, err := Encode(&Decline{JobID: req.JobID, Nonce: req.Nonce, Code: code, Text: shortText(text)})
	if err != nil {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithDeadline(p.ctx, req.Deadline)
		defer cancel()
		if _, err := p.host.Request(ctx, req.Requester, ProtocolDecline, data, MaxReplySize); err != nil {
			p.log.Debug("decline not delivered", "job", req.JobID, "requester", req.Requester, "err", err)
		}
	}()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// handleInvoke accepts an invocation only from the requester that received
// the bid, for an unexpired bid of this node.
func (p *Provider) handleInvoke(ctx context.Context, from peer.ID, data []byte) ([]byte, error) {
	msg, err := DecodeInvokeMessage(data)
	if err != nil {
		return nil, err
	}
	if msg.ReleaseJob != "" {
		// Only the requester's own bid can be released: bids are keyed by
		// requester and job.
		if msg.ReleaseNonce != "" {
			return Encode(&InvokeReply{Accepted: p.book.withdrawAnswer(from, msg.ReleaseJob, msg.ReleaseNonce, p.now())})
		}
		return Encode(&InvokeReply{Accepted: p.book.withdraw(from, msg.ReleaseJob, p.now())})
	}
	reply := p.invoke(from, msg.Invocation)
	return Encode(reply)
}

func (p *Provider) invoke(from peer.ID, inv *Invocation) *InvokeReply {
	bid := &inv.Bid.Bid
	refuse := func(format string, args ...any) *InvokeReply {
		reason := fmt.Sprintf(format, args...)
		p.log.Info("invocation refused", "job", bid.JobID, "from", from, "reason", reason)
		return &InvokeReply{Reason: reason}
	}
	// Claimed once, so that a second invocation of the same bid is refused.
	placed, err := p.book.claim(from, bid.JobID, p.now())
	if err != nil {
		return refuse("no open bid of this node for job %s to %s (never placed, expired, already invoked, or bid to another requester)", bid.JobID, from)
	}
	mine, req := placed.Bid, placed.Request
	// From here the hold is claimed: every refusal frees it.
	var why string
	switch {
	case bid.Provider != p.host.ID() || !bytes.Equal(inv.Bid.Envelope, mine.Envelope):
		why = fmt.Sprintf("the bid invoked for job %s is not the one this node signed", bid.JobID)
	case p.now().After(mine.Bid.HoldExpires):
		why = fmt.Sprintf("bid for job %s expired at %s", bid.JobID, mine.Bid.HoldExpires.Format(time.RFC3339))
	case !inv.Job.Requirements.Equal(req.Requirements) || inv.Job.Executor != req.Executor || inv.Job.Duration > req.Duration || inv.Job.Image != req.Image:
		why = fmt.Sprintf("job %s is not the job that was bid on (requirements, executor, image or duration differ)", bid.JobID)
	case req.ModuleHash != "" && moduleHashOf(&inv.Job) != req.ModuleHash:
		why = fmt.Sprintf("job %s: module does not match the hash in the bid request", bid.JobID)
	case inv.Job.Inputs != nil && inv.Job.Inputs.Size != req.InputSize:
		why = fmt.Sprintf("job %s: inputs of %d bytes, the bid request said %d", bid.JobID, inv.Job.Inputs.Size, req.InputSize)
	case inv.Job.Inputs != nil && req.InputsHash != "" && inv.Job.Inputs.SHA256 != req.InputsHash:
		why = fmt.Sprintf("job %s: inputs do not match the hash in the bid request", bid.JobID)
	}
	if why != "" {
		p.book.release(from, bid.JobID, true, p.now())
		return refuse("%s", why)
	}
	id, err := p.backend.Accept(HoldID(from, bid.JobID), inv)
	if err != nil {
		p.book.release(from, bid.JobID, true, p.now())
		return refuse("job %s: %v", bid.JobID, err)
	}
	p.book.invoked(from, bid.JobID, p.now())
	p.log.Info("invocation accepted", "job", bid.JobID, "allocation", id, "requester", from)
	return &InvokeReply{Accepted: true, AllocationID: id}
}

// handleAllocation serves one allocation stream: a watch that replays and
// follows events with heartbeats, or a cancel.
func (p *Provider) handleAllocation(ctx context.Context, from peer.ID, s p2p.FramedStream) {
	s.SetMaxFrameSize(MaxEventSize)
	data, err := s.Recv()
	if err != nil {
		s.Reset()
		return
	}
	req, err := DecodeAllocationRequest(data)
	if err != nil {
		s.Reset()
		return
	}
	send := func(e Event) error {
		b, err := Encode(&e)
		if err != nil {
			return err
		}
		return s.Send(b)
	}
	if req.Cancel {
		ev := Event{AllocationID: req.AllocationID, Kind: EventState, State: StateCancelled, Time: p.now()}
		if err := p.backend.Cancel(req.AllocationID, from); err != nil {
			ev = Event{AllocationID: req.AllocationID, Kind: EventHeartbeat, Message: err.Error(), Time: p.now()}
		}
		if send(ev) != nil {
			s.Reset()
			return
		}
		s.Close()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := p.backend.Watch(ctx, req.AllocationID, from)
	if err != nil {
		_ = send(Event{AllocationID: req.AllocationID, Kind: EventHeartbeat, Message: err.Error(), Time: p.now()})
		s.Close()
		return
	}
	// The requester says it still follows with keepalives; silence for
	// FollowTimeout, or the stream failing, means it is gone, and the
	// watch (and with it the allocation's follower) ends.
	s.SetTimeout(p.cfg.FollowTimeout)
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	}()
	defer func() { <-gone }() // every return below closes or resets s, which ends the reader
	ticker := time.NewTicker(p.cfg.Heartbeat)
	defer ticker.Stop()
	for {
		select {
		case <-gone:
			p.log.Debug("requester stopped following the allocation", "allocation", req.AllocationID, "requester", from)
			s.Reset()
			return
		case e, ok := <-events:
			if !ok {
				s.Close()
				return
			}
			if err := send(e); err != nil {
				s.Reset()
				return
			}
		case <-ticker.C:
			if err := send(Event{AllocationID: req.AllocationID, Kind: EventHeartbeat, Time: p.now()}); err != nil {
				s.Reset()
				return
			}
		case <-p.ctx.Done():
			s.Reset()
			return
		}
	}
}

// holds says which of what req names by hash this node already keeps: the
// module only when it is over MaxInlineModule (a smaller one travels in the
// invocation anyway), the inputs when there are some.
func (p *Provider) holds(req *BidRequest) (module, inputs bool) {
	module = req.ModuleHash != "" && req.ModuleSize > MaxInlineModule && p.backend.Holds(req.Requester, req.ModuleHash, BlobModule)
	inputs = req.InputsHash != "" && req.InputSize > 0 && p.backend.Holds(req.Requester, req.InputsHash, BlobInputs)
	return module, inputs
}

// moduleHashOf is the hash of the job's module, inline or fetched (the
// fetch checks the content against it).
func moduleHashOf(j *JobSpec) string {
	if j.ModuleBlob != nil {
		return j.ModuleBlob.SHA256
	}
	return ModuleHash(j.Module)
}

// ModuleHash is the hex sha256 a bid request names a module by.
func ModuleHash(module []byte) string {
	sum := sha256.Sum256(module)
	return hex.EncodeToString(sum[:])
}

// ErrNoHold: no open hold, so no bid that may be invoked, for a job.
var ErrNoHold = errors.New("no open hold")

// ErrNotFound is returned for an allocation or job this node does not know.
var ErrNotFound = errors.New("not found")
