package p2p

import (
	"math"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Penalties for misbehaviour that only the application sees (a peer
// flooding the topic with its own messages), fed to gossipsub as the
// app-specific part of the peer score. A validator that rejects such a
// message would also penalise every honest peer that relayed the same
// message while it was being validated (gossipsub blames all who delivered
// an invalid message), and honest relays may rightly have accepted it.

// penaltyPoints is what one Penalize costs; it halves every
// penaltyHalfLife. Fifteen quick ones reach the graylist threshold.
const (
	penaltyPoints   = 100
	penaltyHalfLife = time.Minute
	maxPenalised    = 4096
)

// penalties is the app-specific score; one mutex owns it (pubsub asks for
// scores from its own goroutines).
type penalties struct {
	mu  sync.Mutex
	now func() time.Time
	by  map[peer.ID]*penalty
}

type penalty struct {
	points float64
	at     time.Time
}

func newPenalties() *penalties {
	return &penalties{now: time.Now, by: map[peer.ID]*penalty{}}
}

// decayed is the penalty's points as of now.
func (p *penalty) decayed(now time.Time) float64 {
	return p.points * math.Exp2(-now.Sub(p.at).Seconds()/penaltyHalfLife.Seconds())
}

func (ps *penalties) add(p peer.ID) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	now := ps.now()
	if len(ps.by) >= maxPenalised {
		for q, pen := range ps.by {
			if pen.decayed(now) < 1 {
				delete(ps.by, q)
			}
		}
	}
	pen := ps.by[p]
	if pen == nil {
		if len(ps.by) >= maxPenalised {
			return
		}
		pen = &penalty{at: now}
		ps.by[p] = pen
	}
	pen.points, pen.at = pen.decayed(now)+penaltyPoints, now
}

// score is the app-specific score of p: 0, or negative.
func (ps *penalties) score(p peer.ID) float64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	pen := ps.by[p]
	if pen == nil {
		return 0
	}
	v := pen.decayed(ps.now())
	if v < 1 {
		delete(ps.by, p)
		return 0
	}
	return -v
}

// Penalize lowers p's gossip score for misbehaviour only the application
// can tell (a requester flooding the topic itself): each call costs 100
// points, halving every minute; at -300 we stop gossiping to p, at -1500
// we ignore it.
func (h *Host) Penalize(p peer.ID) { h.penalties.add(p) }

// Penalty is p's app-specific gossip score: 0, or negative for the floods
// it was blamed for (Penalize), decayed to now.
func (h *Host) Penalty(p peer.ID) float64 { return h.penalties.score(p) }
