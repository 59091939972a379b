package p2p

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
)

// maxDialsPerRound bounds the dials one discovery round starts, so a large
// answer from the DHT does not turn into a burst of handshakes.
const maxDialsPerRound = 16

// maxDiscoveryIdle is the least a settled node waits between rounds that
// found nobody new. A short DiscoveryInterval (test networks) is for joining
// fast; once joined, every round is a DHT query that the few nodes nearest
// the rendezvous key answer for everyone, which at a hundred nodes on one
// machine was most of their idle CPU.
const maxDiscoveryIdle = 5 * time.Minute

// Rendezvous is the DHT key under which the nodes of this network advertise
// themselves and look for each other.
func (h *Host) Rendezvous() string { return "/dms/" + h.cfg.Network + "/rendezvous/1" }

// connectBootstrap dials every bootstrap peer in parallel and protects
// those connections from the connection manager. Failures are logged (at
// warn level only when first is set): the discovery loop dials again while
// the node has no peers.
func (h *Host) connectBootstrap(ctx context.Context, first bool) int {
	log := h.logger("p2p.discovery")
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	for _, ai := range h.cfg.Bootstrap {
		if ai.ID == h.host.ID() {
			continue
		}
		h.host.ConnManager().Protect(ai.ID, bootstrapTag)
		wg.Go(func() {
			if err := h.Connect(ctx, ai); err != nil {
				log.Debug("bootstrap peer unreachable", "peer", ai.ID, "err", err)
				return
			}
			mu.Lock()
			ok++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(h.cfg.Bootstrap) > 0 && ok == 0 {
		level := slog.LevelDebug
		if first {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "no bootstrap peer reachable yet; will retry", "bootstrap", len(h.cfg.Bootstrap))
	}
	return ok
}

// startDiscovery runs the discovery loop until Close.
//
// Rounds run every DiscoveryInterval while they find new peers; a round
// that finds nobody new doubles the wait, up to 16 intervals or
// maxDiscoveryIdle if that is longer, so a settled node does not query the
// DHT every second. Losing a peer brings the wait
// back to one interval. While the routing table is still empty (identify
// with the bootstrap peers in progress) rounds retry within milliseconds.
//
// We call RoutingDiscovery.Advertise ourselves instead of
// discovery/util.Advertise: that helper waits two minutes after a failed
// advertisement, and the first one fails whenever the routing table is
// still empty (always on the first node of a network), which would leave a
// node unfindable for two minutes.
func (h *Host) startDiscovery() error {
	sub, err := h.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return fmt.Errorf("p2p: subscribe to connection events: %w", err)
	}
	h.bg.Go(func() {
		defer sub.Close()
		rd := drouting.NewRoutingDiscovery(h.kad)
		var nextAdvertise time.Time
		base := h.cfg.DiscoveryInterval
		retry, idle := 25*time.Millisecond, base
		timer := time.NewTimer(0)
		defer timer.Stop()
		due := time.Now()
		for {
			select {
			case <-h.ctx.Done():
				return
			case e := <-sub.Out():
				lost := e.(event.EvtPeerConnectednessChanged).Connectedness != network.Connected
				if lost && time.Until(due) > base {
					idle, due = base, time.Now().Add(base)
					timer.Reset(base)
				}
				continue
			case <-timer.C:
			}
			ready, dialed, short := h.discoverOnce(rd, &nextAdvertise)
			var wait time.Duration
			switch {
			case !ready:
				retry = min(2*retry, base)
				wait = retry
			case dialed > 0:
				idle = base
				wait = base
			case short:
				// Below ConnLow because the lookup or the dials failed,
				// as they do on a loaded machine: backing off for
				// minutes left nodes of a 300-node test network with
				// one connection each, hearing nothing. Back off, so as
				// not to add to a storm, but only to 16 intervals.
				idle = min(2*idle, 16*base)
				wait = idle
			default:
				idle = min(2*idle, max(16*base, maxDiscoveryIdle))
				wait = min(idle, max(time.Until(nextAdvertise), base))
			}
			due = time.Now().Add(wait)
			timer.Reset(wait)
		}
	})
	return nil
}

// discoverOnce is one round: re-dial the bootstrap peers when alone,
// advertise when due, then dial peers from the rendezvous record and from
// the DHT routing table until we hold ConnLow connections. ready is false
// while the routing table is empty; dialed counts new connections; short
// says we are below ConnLow because the lookup or a dial failed, rather
// than for want of peers we are not yet connected to.
func (h *Host) discoverOnce(rd *drouting.RoutingDiscovery, nextAdvertise *time.Time) (ready bool, dialed int, short bool) {
	ctx := h.ctx
	log := h.logger("p2p.discovery")

	if len(h.Peers()) == 0 && len(h.cfg.Bootstrap) > 0 {
		if h.connectBootstrap(ctx, false) > 0 {
			_ = h.kad.Bootstrap(ctx) // only schedules a refresh; never fails
		}
	}
	if h.kad.RoutingTable().Size() == 0 {
		return false, 0, false // nobody to advertise to or ask yet
	}

	if now := time.Now(); !now.Before(*nextAdvertise) {
		actx, cancel := context.WithTimeout(ctx, h.queryTimeout())
		ttl, err := rd.Advertise(actx, h.Rendezvous(), discovery.TTL(h.cfg.AdvertiseTTL))
		cancel()
		if err != nil {
			log.Debug("advertise failed; retrying next round", "err", err)
		} else {
			*nextAdvertise = now.Add(ttl * 7 / 8)
		}
	}

	want := h.cfg.ConnLow - len(h.Peers())
	if want <= 0 {
		return true, 0, false
	}
	want = min(want, maxDialsPerRound)

	fctx, cancel := context.WithTimeout(ctx, h.queryTimeout())
	defer cancel()
	found, err := rd.FindPeers(fctx, h.Rendezvous(), discovery.Limit(h.cfg.ConnHigh))
	if err != nil {
		log.Debug("find peers failed", "err", err)
		return true, 0, true
	}
	var candidates []peer.AddrInfo
	seen := make(map[peer.ID]bool)
	for ai := range found {
		if ai.ID == h.host.ID() || seen[ai.ID] || h.connected(ai.ID) {
			continue
		}
		seen[ai.ID] = true
		candidates = append(candidates, ai)
	}
	// Routing-table peers are dms nodes of this network too; connecting to
	// them keeps the mesh whole if the rendezvous records are thin.
	for _, p := range h.kad.RoutingTable().ListPeers() {
		if p == h.host.ID() || seen[p] || h.connected(p) {
			continue
		}
		seen[p] = true
		candidates = append(candidates, peer.AddrInfo{ID: p})
	}
	// Every node gets much the same rendezvous records in much the same
	// order (the first ConnHigh that the few nodes nearest the key store),
	// so taking the first few sent every node's dials to the same few
	// peers, which then sat at their inbound limits and turned away the
	// newcomers bootstrapping from them. A shuffle of both sources, the
	// routing table being different at every node, spreads the dials.
	rand.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	if len(candidates) > want {
		candidates = candidates[:want]
	}

	var (
		wg sync.WaitGroup
		ok atomic.Int32
	)
	for _, ai := range candidates {
		wg.Go(func() {
			if err := h.Connect(ctx, ai); err != nil {
				log.Debug("dial discovered peer", "peer", ai.ID, "err", err)
				return
			}
			ok.Add(1)
			log.Debug("connected to discovered peer", "peer", ai.ID)
		})
	}
	wg.Wait()
	n := int(ok.Load())
	return true, n, n < len(candidates)
}

// queryTimeout bounds one DHT advertise or lookup.
func (h *Host) queryTimeout() time.Duration {
	return max(2*h.cfg.DialTimeout, 5*time.Second)
}

// WaitForPeers returns once the node holds connections to at least n peers,
// or with ctx's error (and the count reached) when ctx ends first.
func (h *Host) WaitForPeers(ctx context.Context, n int) error {
	sub, err := h.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return fmt.Errorf("p2p: wait for peers: %w", err)
	}
	defer sub.Close()
	// The event only hints; the count is what we check, also on a slow
	// tick in case an event was coalesced.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		have := len(h.Peers())
		if have >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("p2p: wait for %d peers (have %d): %w", n, have, ctx.Err())
		case <-h.ctx.Done():
			return ErrClosed
		case <-sub.Out():
		case <-tick.C:
		}
	}
}
