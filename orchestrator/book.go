package orchestrator

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
)

// What one requester may hold on a provider. Identities cost nothing, so a
// per-requester bound alone does not stop a peer with many of them. The
// requesters a provider has never run a job for (newcomers) may fill an
// idle offer, but their holds are tentative: a requester that has run jobs
// here displaces them when they leave it no room, so a crowd of fresh
// identities never keeps the offer from known requesters. A newcomer's
// hold younger than FreshHold, though, gives way only to a requester that
// has earned by running what it asks for, so that identities known by one
// tiny job each cannot push an honest newcomer's bid aside before it is
// invoked. Newcomers may also be held to a share of the offer
// together (NewcomerShare; all of it by default). A requester that lets
// holds lapse (neither invoked nor released before they expire) loses its
// standing and gets no more bids until it is forgotten.
//
// One invocation does not buy the offer, though. Every hold that ends
// without an invocation (released, superseded, lapsed, refused) costs its
// requester what it held: its share of the offer times the seconds held
// (offer-seconds, see dominantShare). What the requester runs here pays
// that back, and so does each invocation, for the bids its job asked for
// beyond the one it invoked (WantBids-1 holds as long as the invoked one,
// the honest norm of releases); time forgives a steady trickle on top
// (IdleHoldForgiven). A requester that owes more than IdleHoldLimit is
// throttled: no bids, and its holds give way to anyone. Below that, the
// holds of a requester beyond the share it has earned by running
// (earnedShare) give way to a requester that owes less by IdleHoldMargin:
// whoever has held more without running yields.
//
// Identities cost nothing, and one tiny job makes each known: fifty of
// them, each owing little, can hold the offer in turns. So the known
// requesters that have earned little by running owe together too (the
// pool). While the pool owes much, their holds give way, fresh or not, to
// a requester that is no debtor of it like them: a newcomer, or one that
// has run here far more than the holder (outranks); among themselves,
// standing goes by what each really ran, so that they cannot push each
// other's holds aside in turns, nor an honest requester's before it is
// invoked, however slow that is; and none of them displaces a newcomer's
// hold. The rules are pure (account, mayDisplace, outranks); the book
// keeps their inputs.

// Standing is how a provider sees a requester.
type Standing int

// Standings, from the provider's own history with the requester.
const (
	// Newcomer: no job invoked here that the provider remembers.
	Newcomer Standing = iota
	// Known: has invoked bids here and lets few holds lapse.
	Known
	// Lapsing: let more holds lapse than it invoked, by the allowance.
	Lapsing
	// Throttled: owes more than IdleHoldLimit offer-seconds held without
	// running.
	Throttled
)

func (s Standing) String() string {
	switch s {
	case Newcomer:
		return "newcomer"
	case Known:
		return "known"
	case Lapsing:
		return "lapsing"
	case Throttled:
		return "throttled"
	}
	return fmt.Sprintf("Standing(%d)", int(s))
}

// Capacity is the capability behind open bids, kept as holds by id (the
// node's ledger). It knows nothing of bids and never calls back, so the
// book may call it under its own lock.
type Capacity interface {
	// Reserve holds c under holdID until expires, or fails (wrapping
	// capability.ErrInsufficient when c does not fit). When c does not fit
	// it may drop the fewest of displaceable, in that order and never a
	// pinned one, that make room, and returns their ids.
	Reserve(holdID string, c capability.Capability, expires time.Time, displaceable []string) (displaced []string, err error)
	// Release gives a hold back; it reports whether there was one.
	Release(holdID string) bool
	// Pin marks a hold as handed to its invoker: never displaced, only
	// promoted (Backend.Accept) or released. It fails when the hold is
	// gone (expired, released, or dropped by a smaller offer).
	Pin(holdID string) error
}

// HoldID is the capacity's name for the hold behind a requester's job:
// keyed by both, so that no peer can claim a job ID before its requester
// does.
func HoldID(requester peer.ID, jobID string) string {
	return jobID + ":" + requester.String()
}

// placedBid is a bid this provider sent and the request it answers, open
// until it is invoked, released or expires.
type placedBid struct {
	Bid     *SignedBid
	Request *BidRequest
	// Newcomer: the requester had run no job here when the bid was placed,
	// so the hold counts against the newcomers' share and may be displaced.
	Newcomer bool

	claimed bool
	seq     uint64    // placement order, for "newest first"
	placed  time.Time // when its hold was reserved
	share   float64   // of the offer, in its largest dimension (dominantShare)
}

// maxRequesters bounds the standing book; the least recently seen are
// forgotten first.
const maxRequesters = 4096

// maxPlaced bounds the bid history kept for RegisteredBids.
const maxPlaced = 1024

// book is the one owner of a provider's open bids: each bid with its
// request, the requesters' standing (what each invoked, what it let
// lapse), and the history of bids sent and declined. One mutex owns all of
// it; the only call out under it is to capacity, which never calls back
// (lock order: book, then ledger).
type book struct {
	cfg      ProviderConfig
	capacity Capacity

	mu     sync.Mutex
	bids   map[string]*placedBid // by HoldID: open or claimed
	seq    uint64
	byPeer map[peer.ID]*requesterRecord
	// throttled counts requesters refused bids for holding without running.
	throttled int64
	// pool is what the known requesters that have earned little here by
	// running (earnedShare under 1) owe together, forgiven at one rate for
	// all of them: fifty identities each known by one tiny job, holding
	// the offer in turns, each owe little, but together they owe what they
	// held. Newcomers owe apart: their holds give way to known requesters
	// anyway, and a flood of them must not make those look like debtors.
	pool requesterRecord

	// History, for RegisteredBids and Declined: every bid sent, invoked or
	// not, and why this node did not bid for a job it could have; the
	// oldest jobs are forgotten past maxPlaced.
	placed   map[string][]Bid // by job ID: one per requester that asked
	declined map[string]string
	order    []string
}

type requesterRecord struct {
	invoked, lapsed int
	open            map[string]openHold // by job ID: bids neither invoked nor released
	// debt is the offer-seconds held without running, as of debtAt (time
	// forgives it from then on); ran, the offer-seconds run here.
	debt      float64
	debtAt    time.Time
	ran       float64
	throttled bool // as last reported, so that a change is logged once
	lastSeen  time.Time
}

// openHold is what a requester's open bid will cost it if it ends unrun.
type openHold struct {
	placed, expires time.Time
	share           float64
}

// owed is the record's debt as of now, after time forgave what it does.
func (r *requesterRecord) owed(now time.Time, forgiven float64) float64 {
	return max(0, r.debt-forgiven*now.Sub(r.debtAt).Seconds())
}

// charge adds offer-seconds to the debt (or, negative, pays it back).
func (r *requesterRecord) charge(x float64, now time.Time, forgiven float64) {
	r.debt, r.debtAt = max(0, r.owed(now, forgiven)+x), now
}

func newBook(cfg ProviderConfig, capacity Capacity) *book {
	return &book{
		cfg: cfg, capacity: capacity,
		bids: map[string]*placedBid{}, byPeer: map[peer.ID]*requesterRecord{},
		placed: map[string][]Bid{}, declined: map[string]string{},
	}
}

// standing settles the requester's lapsed holds as of now and says where
// it stands.
func (b *book) standing(p peer.ID, now time.Time) Standing {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, _ := b.standingLocked(p, now)
	return s
}

// standingLocked is p's standing now, and whether it changed from or to
// Throttled since last asked (so that the change is logged once).
func (b *book) standingLocked(p peer.ID, now time.Time) (Standing, bool) {
	r := b.recordLocked(p, now, false)
	if r == nil {
		return Newcomer, false
	}
	throttled := b.accountLocked(p, r.invoked > 0, now).throttled(b.cfg)
	changed := throttled != r.throttled
	if changed {
		r.throttled = throttled
		if throttled {
			b.throttled++
		}
	}
	switch {
	case r.lapsed > r.invoked+b.cfg.LapseAllowance:
		return Lapsing, changed
	case throttled:
		return Throttled, changed
	case r.invoked > 0:
		return Known, changed
	}
	return Newcomer, changed
}

// assessment is what the book says of a requester asking for a bid.
type assessment struct {
	Standing Standing
	// Displaceable is what its bid could push aside of others' holds.
	Displaceable capability.Capability
	// Throttled and Unthrottled: the requester has just crossed the
	// idle-hold limit, one way or the other (log it once).
	Throttled, Unthrottled bool
	Owed                   float64
}

// assess says where req's requester stands and what its bid could
// displace; registered is the whole offer, that the shares are of.
func (b *book) assess(req *BidRequest, registered capability.Capability, now time.Time) assessment {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(now)
	s, changed := b.standingLocked(req.Requester, now)
	a := assessment{Standing: s, Throttled: changed && s == Throttled, Unthrottled: changed && s != Throttled}
	a.Owed = b.accountLocked(req.Requester, s != Newcomer, now).Owed
	if s == Newcomer || s == Known {
		for _, pb := range b.displaceableLocked(req.Requester, s == Newcomer, dominantShare(req.Requirements, registered), now) {
			a.Displaceable = addResources(a.Displaceable, pb.Request.Requirements)
		}
	}
	return a
}

// supersede is called for every request before deciding: when a bid of
// ours stands for the job, the same attempt again (a re-send, wider) gets
// no second bid, and a later attempt (the requester's release of our
// earlier bid lost or late) voids the earlier one, which is not a lapse.
func (b *book) supersede(req *BidRequest, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(now)
	id := HoldID(req.Requester, req.JobID)
	pb := b.bids[id]
	if pb == nil {
		return nil
	}
	if pb.claimed || pb.Request.Attempt >= req.Attempt {
		return fmt.Errorf("already bid for job %s of %s", req.JobID, req.Requester)
	}
	b.voidLocked(req.Requester, req.JobID, now)
	return nil
}

// place admits a bid by the quotas, reserves its requirements until the
// bid's HoldExpires, and records it. A known requester's bid may displace
// newcomers' open bids, which are void (not lapsed); they are returned.
// registered is the whole offer, that the shares are of.
func (b *book) place(pb *placedBid, registered capability.Capability, now time.Time) (displaced []*placedBid, err error) {
	req, bid := pb.Request, &pb.Bid.Bid
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(now)
	id := HoldID(req.Requester, req.JobID)
	if _, dup := b.bids[id]; dup {
		return nil, fmt.Errorf("already bid for job %s of %s", req.JobID, req.Requester)
	}
	displaceable, err := b.admitLocked(req, pb.Newcomer, registered, now)
	if err != nil {
		return nil, err
	}
	dropped, err := b.capacity.Reserve(id, req.Requirements, bid.HoldExpires, displaceable)
	if err != nil {
		return nil, fmt.Errorf("hold: %w", err)
	}
	for _, did := range dropped {
		d := b.bids[did]
		b.dropLocked(did, false) // the capacity dropped its hold already
		if d != nil {
			// Not a newcomer's doing: its bid is void, not lapsed, and
			// costs it nothing. A known requester pushed aside had held
			// more than it earned, and what it held counts.
			b.settleLocked(d.Request.Requester, d.Request.JobID, false, !d.Newcomer, now)
			displaced = append(displaced, d)
		}
	}
	b.seq++
	pb.seq, pb.claimed, pb.placed, pb.share = b.seq, false, now, dominantShare(req.Requirements, registered)
	b.bids[id] = pb
	b.recordLocked(req.Requester, now, true).open[req.JobID] = openHold{placed: now, expires: bid.HoldExpires, share: pb.share}
	b.rememberLocked(bid)
	return displaced, nil
}

// claim hands the requester's open bid for the job to one invocation: it
// fails wrapping ErrNoHold when none stands (never placed, expired,
// released, claimed already, or its hold lost to a smaller offer). A
// claimed bid is then settled by invoked or release.
func (b *book) claim(requester peer.ID, jobID string, now time.Time) (*placedBid, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id, pb := b.unclaimedLocked(requester, jobID, now)
	if pb == nil {
		return nil, fmt.Errorf("job %s of %s: %w", jobID, requester, ErrNoHold)
	}
	if err := b.capacity.Pin(id); err != nil {
		// The capacity let the hold go (re-registered smaller, offboarded):
		// the bid went with it, and lapses if never released.
		delete(b.bids, id)
		return nil, fmt.Errorf("job %s of %s: %w: %w", jobID, requester, ErrNoHold, err)
	}
	pb.claimed = true
	return pb, nil
}

// withdraw is the requester's release of its bid for a job it will not
// invoke: only an open, unclaimed bid. It reports whether there was one.
func (b *book) withdraw(requester peer.ID, jobID string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, pb := b.unclaimedLocked(requester, jobID, now); pb == nil {
		return false
	}
	b.voidLocked(requester, jobID, now)
	return true
}

// release gives back the bid for the requester's job, claimed or not: its
// invocation was refused, or it never reached the requester. Not a lapse;
// with charge (it was refused: the requester held it until then), what it
// held is owed.
func (b *book) release(requester peer.ID, jobID string, charge bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropLocked(HoldID(requester, jobID), true)
	b.settleLocked(requester, jobID, false, charge, now)
}

// unclaimedLocked is the requester's open bid for the job that no
// invocation has claimed, and its hold's id; nil when there is none.
func (b *book) unclaimedLocked(requester peer.ID, jobID string, now time.Time) (string, *placedBid) {
	b.expireLocked(now)
	id := HoldID(requester, jobID)
	if pb := b.bids[id]; pb != nil && !pb.claimed {
		return id, pb
	}
	return id, nil
}

// voidLocked forgets the requester's bid for the job and gives its hold
// back, settled as not invoked and not lapsed, but held without running:
// the requester released it, asked again, or never took it.
func (b *book) voidLocked(requester peer.ID, jobID string, now time.Time) {
	b.dropLocked(HoldID(requester, jobID), true)
	b.settleLocked(requester, jobID, false, true, now)
}

// invoked closes the requester's claimed bid for the job, whose hold the
// backend has promoted to its allocation's lock: the requester is known
// from now on.
func (b *book) invoked(requester peer.ID, jobID string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := HoldID(requester, jobID)
	if pb := b.bids[id]; pb != nil {
		// A job that asked for n bids invokes one and releases the rest,
		// each held about as long as this one: forgive that much.
		n := min(max(pb.Request.WantBids, 1), b.cfg.MaxHoldsPerRequester)
		r := b.recordLocked(requester, now, true)
		b.chargeLocked(r, -float64(n-1)*pb.share*max(0, now.Sub(pb.placed).Seconds()), now)
	}
	delete(b.bids, id)
	b.settleLocked(requester, jobID, true, false, now)
}

// ran credits the requester with an allocation that ran here: share of
// the offer (dominantShare) for d. It pays back what the requester owes
// and earns it a share of the offer it may hold firmly.
func (b *book) ran(requester peer.ID, share float64, d time.Duration, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	x := share * max(0, d.Seconds())
	r := b.recordLocked(requester, now, true)
	b.chargeLocked(r, -x, now)
	r.ran += x
}

// open returns the open bids for a job, to any requester.
func (b *book) open(jobID string) []*placedBid {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*placedBid
	for _, pb := range b.bids {
		if pb.Request.JobID == jobID {
			out = append(out, pb)
		}
	}
	return out
}

// decline remembers why a job was not bid for.
func (b *book) decline(jobID, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.declined[jobID]; !ok {
		if _, placed := b.placed[jobID]; !placed {
			b.order = append(b.order, jobID)
		}
	}
	b.declined[jobID] = why
	b.trimLocked()
}

// registeredBids returns the bids sent for a job.
func (b *book) registeredBids(jobID string) []Bid {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.placed[jobID])
}

// declinedWhy says why no bid was sent for a job ("" when one was).
func (b *book) declinedWhy(jobID string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.declined[jobID]
}

// rememberLocked keeps a sent bid for RegisteredBids.
func (b *book) rememberLocked(bid *Bid) {
	_, placed := b.placed[bid.JobID]
	_, declined := b.declined[bid.JobID]
	if !placed && !declined {
		b.order = append(b.order, bid.JobID)
	}
	delete(b.declined, bid.JobID)
	b.placed[bid.JobID] = append(b.placed[bid.JobID], *bid)
	b.trimLocked()
}

func (b *book) trimLocked() {
	for len(b.order) > maxPlaced {
		delete(b.placed, b.order[0])
		delete(b.declined, b.order[0])
		b.order = b.order[1:]
	}
}

// expireLocked forgets the unclaimed bids whose holds have expired, as the
// capacity does; what they cost the requester is settled in its record.
func (b *book) expireLocked(now time.Time) {
	for id, pb := range b.bids {
		if !pb.claimed && !pb.Bid.Bid.HoldExpires.After(now) {
			delete(b.bids, id)
		}
	}
}

// dropLocked forgets a bid and, with release, gives its hold back.
func (b *book) dropLocked(id string, release bool) {
	delete(b.bids, id)
	if release {
		b.capacity.Release(id)
	}
}

// recordLocked returns p's record, settling lapses; with create, making one.
func (b *book) recordLocked(p peer.ID, now time.Time, create bool) *requesterRecord {
	r := b.byPeer[p]
	if r != nil && now.Sub(r.lastSeen) > b.cfg.StandingMemory {
		delete(b.byPeer, p)
		r = nil
	}
	if r == nil {
		if !create {
			return nil
		}
		if len(b.byPeer) >= maxRequesters {
			b.forgetOldestLocked()
		}
		r = &requesterRecord{open: map[string]openHold{}, debtAt: now}
		b.byPeer[p] = r
	}
	b.lapseLocked(r, now)
	r.lastSeen = now
	return r
}

// lapseLocked settles the record's holds that expired unrun: lapses, and
// owed for all they held.
func (b *book) lapseLocked(r *requesterRecord, now time.Time) {
	for job, h := range r.open {
		if !now.Before(h.expires) {
			delete(r.open, job)
			r.lapsed++
			b.chargeLocked(r, h.share*h.expires.Sub(h.placed).Seconds(), now)
		}
	}
}

func (b *book) forgetOldestLocked() {
	var oldest peer.ID
	var at time.Time
	for p, r := range b.byPeer {
		if oldest == "" || r.lastSeen.Before(at) {
			oldest, at = p, r.lastSeen
		}
	}
	delete(b.byPeer, oldest)
}

// settleLocked closes p's open bid for the job: invoked, or released (by
// the requester, or by us when the bid never reached it or was void); with
// charge, what it held until now is owed.
func (b *book) settleLocked(p peer.ID, jobID string, invoked, charge bool, now time.Time) {
	r := b.recordLocked(p, now, true)
	h, open := r.open[jobID]
	delete(r.open, jobID)
	if invoked {
		r.invoked++
	}
	if open && charge && !invoked {
		b.chargeLocked(r, h.share*max(0, now.Sub(h.placed).Seconds()), now)
	}
}

// chargeLocked charges r (negative: pays back), and the pool too while r
// is known here and has earned little by running.
func (b *book) chargeLocked(r *requesterRecord, x float64, now time.Time) {
	r.charge(x, now, b.cfg.IdleHoldForgiven)
	if r.invoked > 0 && earnedShare(r.ran, b.cfg) < 1 {
		b.pool.charge(x, now, b.cfg.IdleHoldForgiven)
	}
}

// admitLocked checks a new bid against the open ones: it is refused when
// its requester already holds too much, or when newcomers together would
// hold more than their share. It returns the holds that may be displaced
// to make room (see mayDisplace), in the order to drop them.
func (b *book) admitLocked(req *BidRequest, newcomer bool, registered capability.Capability, now time.Time) ([]string, error) {
	var mine, newcomers capability.Capability
	n := 0
	for _, pb := range b.bids {
		if pb.Request.Requester == req.Requester {
			n++
			mine = addResources(mine, pb.Request.Requirements)
			continue
		}
		if pb.Newcomer {
			newcomers = addResources(newcomers, pb.Request.Requirements)
		}
	}
	if n >= b.cfg.MaxHoldsPerRequester {
		return nil, fmt.Errorf("requester %s already holds %d bids here (at most %d at once)", req.Requester, n, b.cfg.MaxHoldsPerRequester)
	}
	// A requester may always hold one bid of any size that fits; more
	// only within its share of the offer.
	if n > 0 {
		if dim := overShare(addResources(mine, req.Requirements), registered, b.cfg.RequesterShare); dim != "" {
			return nil, fmt.Errorf("requester %s would hold more than %.0f%% of this provider's %s", req.Requester, 100*b.cfg.RequesterShare, dim)
		}
	}
	if newcomer {
		if dim := overShare(addResources(newcomers, req.Requirements), registered, b.cfg.NewcomerShare); dim != "" {
			return nil, fmt.Errorf("requesters new to this provider would together hold more than %.0f%% of its %s", 100*b.cfg.NewcomerShare, dim)
		}
	}
	var displaceable []string
	for _, pb := range b.displaceableLocked(req.Requester, newcomer, dominantShare(req.Requirements, registered), now) {
		displaceable = append(displaceable, HoldID(pb.Request.Requester, pb.Request.JobID))
	}
	return displaceable, nil
}

// displaceableLocked is the unclaimed bids of others that a bid of p for
// share of the offer may push aside: those of the requesters that owe
// most first, then the newest first.
func (b *book) displaceableLocked(p peer.ID, newcomer bool, share float64, now time.Time) []*placedBid {
	acc := b.accountsLocked(p, !newcomer, now)
	acc[p].Holding += share
	var out []*placedBid
	for _, pb := range b.bids {
		q := pb.Request.Requester
		if q == p || pb.claimed {
			continue
		}
		qa := *acc[q]
		qa.Fresh = now.Sub(pb.placed) < b.cfg.FreshHold
		if mayDisplace(*acc[p], qa, b.cfg) {
			out = append(out, pb)
		}
	}
	slices.SortFunc(out, func(x, y *placedBid) int {
		if c := cmp.Compare(acc[y.Request.Requester].Owed, acc[x.Request.Requester].Owed); c != 0 {
			return c
		}
		return cmp.Compare(y.seq, x.seq)
	})
	return out
}

// accountsLocked sums up, in one pass over the open bids, the account of
// each requester that holds any, and of p (known or not) whether it does
// or not.
func (b *book) accountsLocked(p peer.ID, pKnown bool, now time.Time) map[peer.ID]*account {
	acc := map[peer.ID]*account{}
	get := func(q peer.ID) *account {
		a := acc[q]
		if a == nil {
			a = &account{}
			if r := b.byPeer[q]; r != nil {
				b.lapseLocked(r, now)
				a.Owed, a.Ran, a.Earned = r.owed(now, b.cfg.IdleHoldForgiven), r.ran, earnedShare(r.ran, b.cfg)
			}

			acc[q] = a
		}
		return a
	}
	get(p).Known = pKnown
	// What the known that earned little hold unclaimed now counts against
	// them together too, as it counts against each.
	pooled := b.pool.owed(now, b.cfg.IdleHoldForgiven)
	for _, pb := range b.bids {
		a := get(pb.Request.Requester)
		a.Holding += pb.share
		a.Known = a.Known || !pb.Newcomer
		if !pb.claimed {
			held := pb.share * max(0, now.Sub(pb.placed).Seconds())
			a.Owed += held
			if a.Earned < 1 && !pb.Newcomer {
				pooled += held
			}
		}
	}
	for _, a := range acc {
		if a.Earned < 1 {
			a.Pooled = pooled
		}
	}
	return acc
}

// accountLocked is p's account now.
func (b *book) accountLocked(p peer.ID, known bool, now time.Time) account {
	return *b.accountsLocked(p, known, now)[p]
}

// account is what the displacement rule weighs of one requester, as a
// provider sees it now.
type account struct {
	// Known: it has invoked a bid here (its holds are not a newcomer's).
	Known bool
	// Owed is what it held here without running, in offer-seconds: its
	// debt after what it ran and what time forgave, and what its
	// unclaimed holds have held so far.
	Owed float64
	// Holding is the share of the offer its open bids hold (for the one
	// asking, with the bid it asks for); Ran, the offer-seconds it ran
	// here; Earned, the share it may hold firmly, from what it ran
	// (earnedShare).
	Holding, Ran, Earned float64
	// Fresh: the hold weighed was placed less than FreshHold ago (its
	// requester is most likely about to invoke it).
	Fresh bool
	// Pooled is what the known requesters that earned little here owe
	// together (book.pool), for one that earned little; 0 for a requester
	// that earned its share.
	Pooled float64
}

// throttled: it owes more than the limit, and gets no bids.
func (a account) throttled(cfg ProviderConfig) bool { return a.Owed > cfg.IdleHoldLimit }

// firm: its holds give way to nobody. A known requester within the share
// it earned by running, and not throttled.
func (a account) firm(cfg ProviderConfig) bool {
	return a.Known && !a.throttled(cfg) && a.Holding <= a.Earned
}

// mayDisplace says whether a bid of r may push aside an unclaimed hold of
// q. A throttled requester displaces nobody, and a firm hold gives way to
// nobody; a throttled requester's holds give way to anyone else.
// Otherwise the one that has held more without running yields: q, when
// it owes more than r by the margin, whoever r is (an honest newcomer
// too), so that holding without running buys nothing. The margin is
// about one hold of a whole offer kept to its end: a fresh hold stands
// against anyone, and many identities, each owing little, cannot keep
// the offer in fresh holds by pushing each other's aside. While the known
// that earned little owe much together, see the pool's case below. A
// known requester also displaces a newcomer's hold unless it owes more
// than the newcomer by the margin (or its pool does), so that a crowd of
// fresh identities never keeps the offer from requesters that run jobs
// here; a newcomer pushed aside owes nothing for it (see place). But a
// fresh hold of a newcomer gives way only to a requester that has earned
// by running what it asks for: one tiny job makes a requester known, and
// identities known that way, taking turns, would otherwise push every
// honest newcomer's bid aside in the moment between bid and invocation.
func mayDisplace(r, q account, cfg ProviderConfig) bool {
	switch {
	case r.throttled(cfg) || q.firm(cfg):
		return false
	case q.throttled(cfg) || q.Owed > r.Owed+cfg.IdleHoldMargin:
		return true
	case q.Known && q.Pooled > r.Owed+cfg.IdleHoldMargin && (!r.Known || outranks(r, q)):
		// Those that earned little owe much together: the holds of the
		// known among them give way, fresh or not, to one that owes
		// little itself and is no debtor of that pool like them: a
		// newcomer, or one that has run here far more than the holder.
		// One of them that ran no more than the holder does not take its
		// place: identities known by a tiny job, each owing little, would
		// otherwise push each other's holds aside in turns (keeping the
		// offer in fresh holds), and an honest requester's before it is
		// invoked, however soon that is.
		return true
	case q.Fresh && r.Holding > r.Earned:
		return false
	}
	// A known requester that is a debtor of a pool that owes much leaves
	// a newcomer's hold alone, fresh or not: it is as likely one of the
	// identities holding without running as a requester that runs, and an
	// honest newcomer's invocation may be slow.
	return r.Known && !q.Known && r.Owed <= q.Owed+cfg.IdleHoldMargin && r.Pooled <= q.Owed+cfg.IdleHoldMargin
}

// ranFactor: among requesters that earned little here, one outranks
// another when it has run at least this many times as much here. Far
// apart, so that identities that ran the same tiny job do not outrank
// each other by its jitter.
const ranFactor = 4

// outranks says whether r has run here far more than q (ranFactor times
// as much, and something): where both earned little, standing goes by
// what each really ran, not by one tiny job.
func outranks(r, q account) bool { return r.Ran > 0 && r.Ran >= ranFactor*q.Ran }

// earnedShare is the share of the offer a requester that ran ran
// offer-seconds here may hold firmly: all of it once it has run
// FullShareAfter (0: at once), in proportion before. One tiny job earns
// next to nothing. (RequesterShare still bounds its holds beyond the
// first.)
func earnedShare(ran float64, cfg ProviderConfig) float64 {
	if cfg.FullShareAfter <= 0 {
		return 1
	}
	return min(1, ran/cfg.FullShareAfter)
}

// dominantShare is the share of registered that c takes in its largest
// dimension of cpu, memory and disk (GPUs go with the cpu they need).
func dominantShare(c, registered capability.Capability) float64 {
	share := func(u, r uint64) float64 {
		if r == 0 {
			return 0
		}
		return float64(u) / float64(r)
	}
	return min(1, max(share(c.CPU.MilliCores, registered.CPU.MilliCores), share(c.Memory, registered.Memory), share(c.Disk, registered.Disk)))
}

// addResources adds the CPU, memory and disk of b to a (what the shares
// bound); GPUs are counted by the capacity when the hold is placed.
func addResources(a, b capability.Capability) capability.Capability {
	a.CPU.MilliCores += b.CPU.MilliCores
	a.Memory += b.Memory
	a.Disk += b.Disk
	return a
}

// overShare names the first dimension in which used exceeds share of
// registered, or "".
func overShare(used, registered capability.Capability, share float64) string {
	over := func(u, r uint64) bool { return float64(u) > math.Floor(share*float64(r)) }
	switch {
	case over(used.CPU.MilliCores, registered.CPU.MilliCores):
		return "cpu"
	case over(used.Memory, registered.Memory):
		return "memory"
	case over(used.Disk, registered.Disk):
		return "disk"
	}
	return ""
}

// throttledCount is how many times a requester was throttled here.
func (b *book) throttledCount() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.throttled
}

// withdrawAnswer is withdraw of the bid that answered the request with
// nonce only. Releases travel apart from invocations: one sent for a
// losing bid of an earlier attempt can arrive after the requester asked
// again and this node bid anew for the same job, and must not take that
// bid away from under its invocation.
func (b *book) withdrawAnswer(requester peer.ID, jobID, nonce string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, pb := b.unclaimedLocked(requester, jobID, now); pb == nil || pb.Bid.Bid.Nonce != nonce {
		return false
	}
	b.voidLocked(requester, jobID, now)
	return true
}
