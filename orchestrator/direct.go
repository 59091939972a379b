package orchestrator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Direct bid requests. On the topic every node of the mesh decrypts,
// verifies and forwards every request, so a job's cost grows with the
// mesh. A request that asks only a share of the providers (Spread < 1)
// goes instead straight to the ones nearest the job that this node knows
// (connected, or in its DHT routing table and answering): the same
// providers the spread would let bid, and nobody else does any work for
// it. The topic carries what asks everyone: the last step of widening, a
// small network's requests, probes, and a request no near provider could
// be reached for. So a job that fits one provider anywhere still finds it,
// after the few short delays widening takes (widening.go).
//
// Why not topic shards by key-space region: a shard of a few dozen nodes
// still has each of them decrypt, verify and forward the request (about
// 1 ms of CPU each, measured in dms bench), 20-30 ms a job, where the
// handful asked directly cost a stream each; and nodes moving between
// shards as their estimate of the network changes is a boundary where
// requests get lost, which direct sending does not have.
//
// A provider takes a direct request through the same validator as a topic
// message (size, rate limits per requester and per sending peer before the
// signature, signer, freshness, replay), and only from its requester: a
// relay has no business sending requests directly. Its own book then
// applies standing and limits as to any request.

// ProtocolBidRequest carries one sealed bid request from its requester to
// a provider; the answer is empty, or an error saying why it was dropped.
const ProtocolBidRequest = "bid-request/1"

// directTimeout bounds sending one direct request: a provider that has not
// taken it by then is slow or gone, and bidding's own timers go on.
const directTimeout = 2 * time.Second

// maxDirectAnswer bounds the answer to a direct request: empty, or an
// error's text.
const maxDirectAnswer = 1 << 10

// DirectCount is how many providers a request at spread asks directly in
// a network of about n other nodes: those the spread would let bid, at
// least one. 0 means the request goes on the topic (spread 1: everyone).
func DirectCount(spread float64, n int) int {
	if spread <= 0 || spread >= 1 || n <= 0 || math.IsNaN(spread) {
		return 0
	}
	return max(1, int(math.Ceil(spread*float64(n))))
}

// Nearest returns up to n of known nearest jobID by Distance, nearest
// first, leaving out self and duplicates.
func Nearest(known []peer.ID, self peer.ID, jobID string, n int) []peer.ID {
	type near struct {
		id peer.ID
		d  float64
	}
	seen := make(map[peer.ID]bool, len(known))
	all := make([]near, 0, len(known))
	for _, p := range known {
		if p == self || p == "" || seen[p] {
			continue
		}
		seen[p] = true
		all = append(all, near{p, Distance(p, jobID)})
	}
	slices.SortFunc(all, func(a, b near) int { return cmp.Or(cmp.Compare(a.d, b.d), cmp.Compare(a.id, b.id)) })
	out := make([]peer.ID, 0, min(n, len(all)))
	for _, a := range all[:min(n, len(all))] {
		out = append(out, a.id)
	}
	return out
}

// directTargets is who req goes to directly (nil: the topic).
func (r *Requester) directTargets(req *BidRequest) []peer.ID {
	if r.cfg.TopicOnly {
		return nil
	}
	known := r.host.KnownPeers(ProtocolBidRequest)
	n := DirectCount(req.Spread, len(known))
	if n == 0 {
		return nil
	}
	return Targets(known, r.host.Peers(), r.host.ID(), req.JobID, n)
}

// Targets picks n of known to send a request to: the nearest of those we
// hold a connection to, then, if too few, the nearest of the rest. A
// request to a peer we are not connected to costs a dial and a handshake
// (milliseconds of CPU on both sides, and a descriptor each) and the
// connection manager trims such connections again; jobs are spread over
// the key space, so the nearest connected peers share the work as evenly
// as the nearest of all.
func Targets(known, connected []peer.ID, self peer.ID, jobID string, n int) []peer.ID {
	isConn := make(map[peer.ID]bool, len(connected))
	for _, p := range connected {
		isConn[p] = true
	}
	var near, far []peer.ID
	for _, p := range known {
		if isConn[p] {
			near = append(near, p)
		} else {
			far = append(far, p)
		}
	}
	out := Nearest(near, self, jobID, n)
	if len(out) < n {
		out = append(out, Nearest(far, self, jobID, n-len(out))...)
	}
	return out
}

// sendDirect sends sealed (req, sealed) to each target at once and
// returns; the sends end with ctx. If none of them takes it (all gone,
// unreachable or refusing), the request goes on the topic instead, so that
// a requester with a stale view of the mesh still reaches it.
func (r *Requester) sendDirect(ctx context.Context, req *BidRequest, targets []peer.ID) error {
	data, err := SealBidRequest(req, r.key)
	if err != nil {
		return err
	}
	var taken, done atomic.Int32
	for _, p := range targets {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			sctx, cancel := context.WithTimeout(ctx, directTimeout)
			_, err := r.host.Request(sctx, p, ProtocolBidRequest, data, maxDirectAnswer)
			cancel()
			if err == nil {
				taken.Add(1)
			} else {
				r.log.Debug("direct bid request not taken", "job", req.JobID, "provider", p, "err", err)
			}
			if int(done.Add(1)) == len(targets) && taken.Load() == 0 && ctx.Err() == nil {
				r.log.Debug("no provider took the direct bid request: sending it on the topic", "job", req.JobID, "asked", len(targets))
				if err := r.publishTopic(ctx, req); err != nil {
					r.log.Debug("bid request not sent on the topic either", "job", req.JobID, "err", err)
				}
			}
		}()
	}
	return nil
}

// errNotRequester refuses a direct request sent by anyone but its
// requester.
var errNotRequester = errors.New("a bid request sent directly must come from its requester")

// handleDirect takes a bid request sent straight to this node: the same
// checks as the topic's validator, then the provider side, which bids
// whatever the spread says (it was asked by name).
func (s *Service) handleDirect(_ context.Context, from peer.ID, data []byte) ([]byte, error) {
	req, err := s.admit(from, data)
	if err != nil {
		return nil, err
	}
	if req.Requester != from {
		return nil, fmt.Errorf("%w: it names %s, it came from %s", errNotRequester, req.Requester, from)
	}
	if s.observe != nil {
		s.observe(req, time.Now())
	}
	s.provider.HandleDirectRequest(req)
	return nil, nil
}
