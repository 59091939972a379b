package orchestrator

import (
	"fmt"
	"math"
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

// HoldID is the ledger's name for the hold behind a requester's job: keyed
// by both, so that no peer can claim a job ID before its requester does.
func HoldID(requester peer.ID, jobID string) string {
	return jobID + ":" + requester.String()
}

// maxRequesters bounds the standing book; the least recently seen are
// forgotten first.
const maxRequesters = 4096

// book is the provider's memory of requesters: what each invoked, what it
// let lapse, and the bids of it still open. One mutex owns it; it never
// calls out while holding it.
type book struct {
	allowance int
	memory    time.Duration

	mu     sync.Mutex
	byPeer map[peer.ID]*requesterRecord
}

type requesterRecord struct {
	invoked, lapsed int
	open            map[string]time.Time // job ID -> hold expiry, of bids neither invoked nor released
	lastSeen        time.Time
}

func newBook(allowance int, memory time.Duration) *book {
	return &book{allowance: allowance, memory: memory, byPeer: map[peer.ID]*requesterRecord{}}
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
	case r.lapsed > r.invoked+b.allowance:
		return Lapsing
	case r.invoked > 0:
		return Known
	}
	return Newcomer
}

// record returns p's record, settling lapses; with create, making one.
func (b *book) recordLocked(p peer.ID, now time.Time, create bool) *requesterRecord {
	r := b.byPeer[p]
	if r != nil && now.Sub(r.lastSeen) > b.memory {
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

// placed notes an open bid to p, holding until expires.
func (b *book) placed(p peer.ID, jobID string, expires, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recordLocked(p, now, true).open[jobID] = expires
}

// settle closes p's open bid for the job: invoked, or released (by the
// requester, or by us when the bid never reached it).
func (b *book) settle(p peer.ID, jobID string, invoked bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.recordLocked(p, now, true)
	delete(r.open, jobID)
	if invoked {
		r.invoked++
	}
}

// admission is the check Backend.Hold runs on the ledger's holds, under
// the ledger's lock, before it places a new one: the new hold is refused
// when its requester already holds too much, or when newcomers together
// would hold more than their share. A known requester may displace
// newcomers' holds, newest first, when they leave it no room: a crowd of
// fresh identities can fill an idle offer, but never keep it from the
// requesters that have run jobs here.
func (p *Provider) admission(req *BidRequest, newcomer bool) func(registered capability.Capability, open []*PlacedBid) ([]*PlacedBid, error) {
	cfg := p.cfg
	return func(registered capability.Capability, open []*PlacedBid) ([]*PlacedBid, error) {
		var mine, newcomers capability.Capability
		var preemptible []*PlacedBid
		n := 0
		for i := len(open) - 1; i >= 0; i-- { // newest first
			pb := open[i]
			if pb.Request.Requester == req.Requester {
				n++
				mine = addResources(mine, pb.Request.Requirements)
				continue
			}
			if pb.Newcomer {
				newcomers = addResources(newcomers, pb.Request.Requirements)
				if !newcomer {
					preemptible = append(preemptible, pb)
				}
			}
		}
		if n >= cfg.MaxHoldsPerRequester {
			return nil, fmt.Errorf("requester %s already holds %d bids here (at most %d at once)", req.Requester, n, cfg.MaxHoldsPerRequester)
		}
		// A requester may always hold one bid of any size that fits; more
		// only within its share of the offer.
		if n > 0 {
			if dim := overShare(addResources(mine, req.Requirements), registered, cfg.RequesterShare); dim != "" {
				return nil, fmt.Errorf("requester %s would hold more than %.0f%% of this provider's %s", req.Requester, 100*cfg.RequesterShare, dim)
			}
		}
		if newcomer {
			if dim := overShare(addResources(newcomers, req.Requirements), registered, cfg.NewcomerShare); dim != "" {
				return nil, fmt.Errorf("requesters new to this provider would together hold more than %.0f%% of its %s", 100*cfg.NewcomerShare, dim)
			}
		}
		return preemptible, nil
	}
}

// addResources adds the CPU, memory and disk of b to a (what the shares
// bound); GPUs are counted by Fits when the hold is placed.
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
