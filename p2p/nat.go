package p2p

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// relayLimit bounds one relayed connection on our relay service. libp2p's
// default (2 minutes, 128 KiB) is meant for the few seconds hole punching
// needs; a dms job's module and its allocation stream can need more when
// hole punching fails, and a relay is an operator's opt-in.
var relayLimit = relayv2.RelayLimit{Duration: 30 * time.Minute, Data: 64 << 20}

// natOptions are libp2p's NAT traversal: AutoNAT (always on as a client;
// the service with NATService), the circuit relay v2 transport, autorelay
// over the bootstrap peers, DCUtR hole punching, and an opt-in relay
// service.
func natOptions(cfg *Config) []libp2p.Option {
	var opts []libp2p.Option
	switch cfg.Reachability {
	case "public":
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case "private":
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	if cfg.RelayService && cfg.Reachability != "public" {
		// The relay service starts only on a node that believes itself
		// public; whoever turns it on says so.
		opts = append(opts, libp2p.ForceReachabilityPublic())
	}
	if !cfg.Relay {
		return append(opts, libp2p.DisableRelay())
	}
	opts = append(opts, libp2p.EnableRelay(), libp2p.EnableHolePunching())
	if len(cfg.Bootstrap) > 0 {
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(cfg.Bootstrap))
	}
	if cfg.RelayService {
		res := relayv2.DefaultResources()
		lim := relayLimit
		res.Limit = &lim
		opts = append(opts, libp2p.EnableRelayService(
			relayv2.WithResources(res),
			// The reservation tells a client our addresses; libp2p keeps
			// only public ones, which leaves a relay on a LAN (or a test
			// network) with none. Loopback is the only thing no client can
			// use.
			relayv2.WithReservationAddressFilter(func(a multiaddr.Multiaddr) bool { return !manet.IsIPLoopback(a) }),
		))
	}
	return opts
}

// reach makes sure we hold a connection to p before a stream opens: a
// known address, else one the DHT finds, else a circuit through each
// bootstrap peer (those that run a relay service carry it; the others
// refuse). A node behind a NAT is reached the last way until hole
// punching makes the connection direct.
func (h *Host) reach(ctx context.Context, p peer.ID) error {
	if h.connected(p) {
		return nil
	}
	ps := h.host.Peerstore()
	if len(ps.Addrs(p)) == 0 && h.kad != nil {
		fctx, cancel := context.WithTimeout(ctx, h.cfg.DialTimeout)
		if ai, err := h.kad.FindPeer(fctx, p); err == nil {
			ps.AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
		}
		cancel()
	}
	err := h.Connect(ctx, peer.AddrInfo{ID: p})
	if err == nil || !h.cfg.Relay {
		return err
	}
	for _, b := range h.cfg.Bootstrap {
		if b.ID == p || !h.connected(b.ID) {
			continue
		}
		circuit, cerr := multiaddr.NewMultiaddr(fmt.Sprintf("/p2p/%s/p2p-circuit", b.ID))
		if cerr != nil {
			continue
		}
		if cerr = h.Connect(ctx, peer.AddrInfo{ID: p, Addrs: []multiaddr.Multiaddr{circuit}}); cerr == nil {
			h.log.Debug("reached peer through a relay", "peer", p, "relay", b.ID)
			return nil
		}
		err = fmt.Errorf("%w; through relay %s: %v", err, b.ID, cerr)
	}
	return err
}

// streamContext lets our streams use a relayed (limited) connection: a
// bid or an invocation cannot wait for hole punching to succeed.
func streamContext(ctx context.Context) context.Context {
	return network.WithAllowLimitedConn(ctx, "dms")
}
