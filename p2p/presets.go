package p2p

import (
	"net"
	"time"

	"github.com/multiformats/go-multiaddr"
)

// DefaultConfig is for a real node: all interfaces on port 4001, TCP and
// QUIC, DHT auto mode, AutoNAT service and port mapping on.
func DefaultConfig() Config {
	return Config{
		ListenAddrs: mustAddrs(
			"/ip4/0.0.0.0/tcp/4001",
			"/ip4/0.0.0.0/udp/4001/quic-v1",
		),
		Network: DefaultNetwork,
		DHTMode: DHTModeAuto,
		ConnLow: 32,
		// ConnHigh stays below the resource manager's inbound limit (64 +
		// 64 per GiB scaled: 80 at 256 MiB, 72 at 128 MiB); above it the
		// resource manager would refuse newcomers before the connection
		// manager ever trimmed to make room, and a busy bootstrap node
		// would turn new nodes away for good.
		ConnHigh:       64,
		ConnGrace:      time.Minute,
		ResourceMemory: 256 << 20,
		ResourceFDs:    1024,
		// An honest peer names its protocol within a round trip, and has
		// a few streams doing so at once (gossip, DHT queries, a bid).
		MaxNegotiatingStreams: 32,
		NegotiationTimeout:    5 * time.Second,
		MaxMessageSize:        DefaultMaxMessageSize,
		GossipHeartbeat:       time.Second,
		ScoreIPWhitelist:      loopbackNets(),
		IPColocationWeight:    -10,
		StreamTimeout:         10 * time.Second,
		DialTimeout:           15 * time.Second,
		DiscoveryInterval:     30 * time.Second,
		AdvertiseTTL:          time.Hour,
		NATService:            true,
		NATPortMap:            true,
		Relay:                 true,
		Reachability:          "auto",
		ObservedAddrs:         true,
	}
}

// LocalConfig is for tests and the one-machine test network: 127.0.0.1 on a
// free TCP port, DHT server mode (auto would stay a client on loopback),
// short timeouts and intervals, no IP-colocation penalty, and none of the
// NAT machinery (AutoNAT, observed addresses, relays, port mapping).
func LocalConfig() Config {
	c := DefaultConfig()
	c.ListenAddrs = mustAddrs("/ip4/127.0.0.1/tcp/0")
	c.DHTMode = DHTModeServer
	c.ResourceMemory = 128 << 20
	c.ResourceFDs = 512
	c.GossipHeartbeat = 700 * time.Millisecond
	c.IPColocationWeight = 0
	c.StreamTimeout = 3 * time.Second
	c.NegotiationTimeout = 3 * time.Second
	c.DialTimeout = 3 * time.Second
	c.DiscoveryInterval = time.Second
	// A local network starts many nodes at once: let the connection manager
	// trim the bootstrap node's surplus soon rather than after a minute.
	c.ConnGrace = 5 * time.Second
	// Long enough that re-advertising (a DHT walk per node) stays rare on a
	// machine running hundreds of nodes.
	c.AdvertiseTTL = 10 * time.Minute
	c.NATService = false
	c.NATPortMap = false
	c.Relay = false
	// Every node of a loopback network can dial every other, so there is
	// nothing for AutoNAT or observed addresses to find out. Each would
	// run per host, subscribed to every identify event: hundreds of hosts
	// in one process paid for them, and a stalled AutoNAT loop kept a
	// closing host waiting for good.
	c.Reachability = "public"
	c.ObservedAddrs = false
	return c
}

func mustAddrs(ss ...string) []multiaddr.Multiaddr {
	out := make([]multiaddr.Multiaddr, len(ss))
	for i, s := range ss {
		out[i] = multiaddr.StringCast(s)
	}
	return out
}

func loopbackNets() []*net.IPNet {
	_, v4, _ := net.ParseCIDR("127.0.0.0/8")
	_, v6, _ := net.ParseCIDR("::1/128")
	return []*net.IPNet{v4, v6}
}
