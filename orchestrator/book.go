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
// identities never keeps the offer from known requesters. Newcomers may
// also be held to a share of the offer together (NewcomerShare; all of it
// by default). A requester that lets holds lapse (neither invoked nor
// released before they expire) loses its standing and gets no more bids
// until it is forgotten.

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
)

func (s Standing) String() string {
	switch s {
	case Newcomer:
		return "newcomer"
	case Known:
		return "known"
	case Lapsing:
		return "lapsing"
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
	seq     uint64 // placement order, for "newest first"
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

	// History, for RegisteredBids and Declined: every bid sent, invoked or
	// not, and why this node did not bid for a job it could have; the
	// oldest jobs are forgotten past maxPlaced.
	placed   map[string][]Bid // by job ID: one per requester that asked
	declined map[string]string
	order    []string
}

type requesterRecord struct {
	invoked, lapsed int
	open            map[string]time.Time // job ID -> hold expiry, of bids neither invoked nor released
	lastSeen        time.Time
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
	r := b.recordLocked(p, now, false)
	if r == nil {
		return Newcomer
	}
	switch {
	case r.lapsed > r.invoked+b.cfg.LapseAllowance:
		return Lapsing
	case r.invoked > 0:
		return Known
	}
	return Newcomer
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
	displaceable, err := b.admitLocked(req, pb.Newcomer, registered)
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
			// Not the newcomer's doing: its bid is void, not lapsed.
			b.settleLocked(d.Request.Requester, d.Request.JobID, false, now)
			displaced = append(displaced, d)
		}
	}
	b.seq++
	pb.seq, pb.claimed = b.seq, false
	b.bids[id] = pb
	b.recordLocked(req.Requester, now, true).open[req.JobID] = bid.HoldExpires
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
// invocation was refused, or it never reached the requester. Not a lapse.
func (b *book) release(requester peer.ID, jobID string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.voidLocked(requester, jobID, now)
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
// back, settled as not invoked and not lapsed: the bid ended by no fault of
// the requester's, or by its own release.
func (b *book) voidLocked(requester peer.ID, jobID string, now time.Time) {
	b.dropLocked(HoldID(requester, jobID), true)
	b.settleLocked(requester, jobID, false, now)
}

// invoked closes the requester's claimed bid for the job, whose hold the
// backend has promoted to its allocation's lock: the requester is known
// from now on.
func (b *book) invoked(requester peer.ID, jobID string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.bids, HoldID(requester, jobID))
	b.settleLocked(requester, jobID, true, now)
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
		r = &requesterRecord{open: map[string]time.Time{}}
		b.byPeer[p] = r
	}
	for job, exp := range r.open {
		if !now.Before(exp) {
			delete(r.open, job)
			r.lapsed++
		}
	}
	r.lastSeen = now
	return r
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
// the requester, or by us when the bid never reached it or was void).
func (b *book) settleLocked(p peer.ID, jobID string, invoked bool, now time.Time) {
	r := b.recordLocked(p, now, true)
	delete(r.open, jobID)
	if invoked {
		r.invoked++
	}
}

// admitLocked checks a new bid against the open ones: it is refused when
// its requester already holds too much, or when newcomers together would
// hold more than their share. A known requester may displace newcomers'
// bids, newest first, when they leave it no room: a crowd of fresh
// identities can fill an idle offer, but never keep it from the requesters
// that have run jobs here. It returns the holds that may be displaced, in
// the order to drop them.
func (b *book) admitLocked(req *BidRequest, newcomer bool, registered capability.Capability) ([]string, error) {
	open := make([]*placedBid, 0, len(b.bids))
	for _, pb := range b.bids {
		open = append(open, pb)
	}
	slices.SortFunc(open, func(x, y *placedBid) int { return cmp.Compare(y.seq, x.seq) }) // newest first
	var mine, newcomers capability.Capability
	var displaceable []string
	n := 0
	for _, pb := range open {
		if pb.Request.Requester == req.Requester {
			n++
			mine = addResources(mine, pb.Request.Requirements)
			continue
		}
		if pb.Newcomer {
			newcomers = addResources(newcomers, pb.Request.Requirements)
			if !newcomer && !pb.claimed {
				displaceable = append(displaceable, HoldID(pb.Request.Requester, pb.Request.JobID))
			}
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
	return displaceable, nil
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
