package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultNetwork is the network ID used when none is configured.
const DefaultNetwork = "dms"

// DefaultMaxMessageSize bounds one gossip message. Gossip carries only small
// bid requests (job modules travel on direct streams), and every byte of a
// gossip message is re-sent to D mesh peers by every node, so we keep
// gossipsub's own default of 1 MiB: far above a bid request, small enough
// that a spammer cannot make each node upload megabytes per message.
const DefaultMaxMessageSize = 1 << 20

// DefaultMaxStreamFrame is the default frame limit of a FramedStream.
const DefaultMaxStreamFrame = 1 << 20

// DHTMode says whether this node answers DHT queries (server) or only asks
// (client). Auto starts as a client and becomes a server once AutoNAT says
// the node can be dialled from outside.
type DHTMode int

const (
	// DHTModeAuto is a client until AutoNAT finds the node publicly reachable.
	// It stays a client on loopback and private networks.
	DHTModeAuto DHTMode = iota
	// DHTModeServer always answers queries: use it on a bootstrap node and
	// on any node of a LAN or loopback test network.
	DHTModeServer
	// DHTModeClient never answers queries.
	DHTModeClient
)

// String returns the name ParseDHTMode accepts.
func (m DHTMode) String() string {
	switch m {
	case DHTModeAuto:
		return "auto"
	case DHTModeServer:
		return "server"
	case DHTModeClient:
		return "client"
	default:
		return fmt.Sprintf("DHTMode(%d)", int(m))
	}
}

// ParseDHTMode parses "auto", "server" or "client".
func ParseDHTMode(s string) (DHTMode, error) {
	switch s {
	case "auto":
		return DHTModeAuto, nil
	case "server":
		return DHTModeServer, nil
	case "client":
		return DHTModeClient, nil
	default:
		return 0, fmt.Errorf("dht mode %q: want auto, server or client", s)
	}
}

// Config is everything New needs. Build it with DefaultConfig or LocalConfig
// and Options; New validates it once before anything starts.
type Config struct {
	// PrivKey is the node's identity (required); see LoadOrCreateIdentity.
	PrivKey crypto.PrivKey
	// ListenAddrs are the addresses to listen on. TCP (optionally /ws) and
	// QUIC v1 are supported; with a PSK only the TCP ones are used.
	ListenAddrs []multiaddr.Multiaddr
	// Bootstrap peers are dialled at start, protected in the connection
	// manager, and re-dialled whenever the node has lost all its peers.
	Bootstrap []peer.AddrInfo
	// Network names the network: DHT prefix, topics and protocols all carry
	// it, so nodes of different networks never mix. 1-32 of [a-z0-9-_.].
	Network string
	// PSK makes the network private (nil: public). libp2p's QUIC refuses a
	// pre-shared key, so a private node uses TCP only.
	PSK pnet.PSK
	// DHTMode: see DHTMode.
	DHTMode DHTMode
	// Datastore holds the DHT's records; nil keeps them in memory.
	Datastore ds.Batching

	// ConnLow and ConnHigh are the connection manager's water marks: above
	// ConnHigh it trims back to ConnLow (bootstrap peers are protected).
	ConnLow, ConnHigh int
	// ConnGrace protects new connections from trimming for this long.
	ConnGrace time.Duration
	// ResourceMemory and ResourceFDs scale the resource manager's default
	// limits (rcmgr.DefaultLimits.Scale).
	ResourceMemory int64
	ResourceFDs    int
	// MaxNegotiatingStreams bounds the inbound streams one peer may have
	// open that have not yet named a protocol; more are refused. Such
	// streams share one scope among all peers (libp2p's transient scope),
	// which is sized for 64 peers at this bound: one peer cannot fill it.
	MaxNegotiatingStreams int
	// NegotiationTimeout is how long an inbound stream may take to name
	// its protocol before it is reset (libp2p's own is 10 s).
	NegotiationTimeout time.Duration

	// MaxMessageSize bounds one gossip message (see DefaultMaxMessageSize).
	MaxMessageSize int
	// GossipHeartbeat is gossipsub's heartbeat: how often meshes are repaired.
	GossipHeartbeat time.Duration
	// ScoreIPWhitelist are networks exempt from the IP-colocation penalty.
	ScoreIPWhitelist []*net.IPNet
	// IPColocationWeight is the (negative) weight of the IP-colocation
	// penalty; 0 disables it, which tests on one address need.
	IPColocationWeight float64

	// StreamTimeout bounds one request/response exchange (and one Send or
	// Recv on a FramedStream) when the caller's context has no deadline.
	StreamTimeout time.Duration
	// DialTimeout bounds one dial made by discovery and bootstrapping.
	DialTimeout time.Duration
	// DiscoveryInterval is how often the node looks for more peers.
	DiscoveryInterval time.Duration
	// AdvertiseTTL is how long our rendezvous record lives in the DHT; we
	// re-advertise after 7/8 of it.
	AdvertiseTTL time.Duration

	// NATService answers other peers' AutoNAT dial-back requests, which is
	// what lets DHTModeAuto peers find out that they are reachable.
	NATService bool
	// NATPortMap asks the home router (UPnP / NAT-PMP) for a port mapping.
	NATPortMap bool

	// Relay lets the node dial and be dialled through circuit relay v2
	// relays: behind a NAT it reserves a slot on its bootstrap peers that
	// run a relay service, and DCUtR hole punching then tries to turn a
	// relayed connection into a direct one.
	Relay bool
	// RelayService makes this node a relay for others (opt-in: it costs
	// bandwidth). It implies public reachability: run it only on a node
	// that others can dial.
	RelayService bool
	// Reachability overrides AutoNAT: "auto" (AutoNAT decides), "public"
	// or "private" (behind a NAT: reserve relay slots at once). Only auto
	// runs AutoNAT's loop, a goroutine per host that reads every identify
	// event.
	Reachability string
	// ObservedAddrs learns our own addresses from what peers say they see
	// (identify), which is how a node behind a NAT finds its public
	// address. Off, the host keeps no observed-address book and does not
	// subscribe to identify events for it.
	ObservedAddrs bool

	// Metrics, if set, receives libp2p's own metrics (swarm, identify,
	// relay, hole punching, AutoNAT, resource manager) and gossipsub's;
	// nil turns them off.
	Metrics prometheus.Registerer
	// Bandwidth, if set, is told the bytes of every stream read and write
	// (libp2p's BandwidthReporter); nil, the default, costs nothing. The
	// bench sets it to add up the mesh's traffic per job.
	Bandwidth metrics.Reporter

	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// Validate checks the whole configuration; New calls it before starting.
func (c *Config) Validate() error {
	var errs []error
	if c.PrivKey == nil {
		errs = append(errs, errors.New("no private key: use WithPrivKey (see LoadOrCreateIdentity)"))
	}
	if err := ValidateNetwork(c.Network); err != nil {
		errs = append(errs, err)
	}
	if len(c.ListenAddrs) == 0 {
		errs = append(errs, errors.New("no listen address"))
	}
	for _, a := range c.ListenAddrs {
		if kind := transportOf(a); kind == transportUnsupported {
			errs = append(errs, fmt.Errorf("listen address %s: only TCP, TCP+WebSocket and QUIC v1 are supported", a))
		}
	}
	if c.PSK != nil && len(c.PSK) != 32 {
		errs = append(errs, fmt.Errorf("swarm key has %d bytes, want 32", len(c.PSK)))
	}
	if c.PSK != nil && len(c.usableListenAddrs()) == 0 {
		errs = append(errs, errors.New("a private network (swarm key) needs a TCP listen address: QUIC refuses a pre-shared key"))
	}
	for _, b := range c.Bootstrap {
		if b.ID == "" || len(b.Addrs) == 0 {
			errs = append(errs, fmt.Errorf("bootstrap peer %q: need a peer ID and at least one address", b.ID))
		}
	}
	if c.DHTMode < DHTModeAuto || c.DHTMode > DHTModeClient {
		errs = append(errs, fmt.Errorf("dht mode %v: want auto, server or client", c.DHTMode))
	}
	if c.ConnLow < 1 || c.ConnHigh < c.ConnLow {
		errs = append(errs, fmt.Errorf("connection limits low=%d high=%d: need 1 <= low <= high", c.ConnLow, c.ConnHigh))
	}
	if c.ConnGrace < 0 {
		errs = append(errs, fmt.Errorf("connection grace period %v is negative", c.ConnGrace))
	}
	if c.ResourceMemory < 64<<20 || c.ResourceFDs < 64 {
		errs = append(errs, fmt.Errorf("resource limits memory=%d fds=%d: need at least 64 MiB and 64 fds", c.ResourceMemory, c.ResourceFDs))
	}
	if c.MaxNegotiatingStreams < 1 || c.MaxNegotiatingStreams > 1024 {
		errs = append(errs, fmt.Errorf("max negotiating streams per peer %d: want 1 to 1024", c.MaxNegotiatingStreams))
	}
	if c.MaxMessageSize < 1<<10 || c.MaxMessageSize > 64<<20 {
		errs = append(errs, fmt.Errorf("max gossip message size %d: want 1 KiB to 64 MiB", c.MaxMessageSize))
	}
	if c.IPColocationWeight > 0 {
		errs = append(errs, fmt.Errorf("IP-colocation weight %v: must be negative or 0", c.IPColocationWeight))
	}
	for name, d := range map[string]time.Duration{
		"gossip heartbeat":    c.GossipHeartbeat,
		"stream timeout":      c.StreamTimeout,
		"dial timeout":        c.DialTimeout,
		"discovery interval":  c.DiscoveryInterval,
		"advertise TTL":       c.AdvertiseTTL,
		"negotiation timeout": c.NegotiationTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", name, d))
		}
	}
	if _, err := ParseReachability(c.Reachability); err != nil {
		errs = append(errs, err)
	}
	if c.RelayService && c.Reachability == "private" {
		errs = append(errs, errors.New("a relay service needs a publicly reachable node, not reachability private"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("p2p config: %w", err)
	}
	return nil
}

// transientPeers is how many peers at their MaxNegotiatingStreams the
// transient scope has room for.
const transientPeers = 64

// resourceLimits scales libp2p's defaults to ResourceMemory and
// ResourceFDs, and makes the transient scope, where streams wait until
// they name a protocol, roomy enough that no few peers fill it: a
// negotiating stream costs a little bookkeeping and no memory of its own
// (yamux reserves its buffers in the connection's scope).
func (c *Config) resourceLimits(defaults rcmgr.ScalingLimitConfig) rcmgr.ConcreteLimitConfig {
	scaled := defaults.Scale(c.ResourceMemory, c.ResourceFDs)
	base := scaled.ToPartialLimitConfig()
	in := max(int(base.Transient.StreamsInbound), transientPeers*c.MaxNegotiatingStreams)
	out := max(int(base.Transient.StreamsOutbound), in)
	partial := rcmgr.PartialLimitConfig{Transient: rcmgr.ResourceLimits{
		StreamsInbound:  rcmgr.LimitVal(in),
		StreamsOutbound: rcmgr.LimitVal(out),
		Streams:         rcmgr.LimitVal(max(int(base.Transient.Streams), in+out)),
	}}
	return partial.Build(scaled)
}

// usableListenAddrs drops what the transports in use cannot listen on: with
// a PSK, everything but TCP.
func (c *Config) usableListenAddrs() []multiaddr.Multiaddr {
	out := make([]multiaddr.Multiaddr, 0, len(c.ListenAddrs))
	for _, a := range c.ListenAddrs {
		if c.PSK != nil && transportOf(a) != transportTCP {
			continue
		}
		out = append(out, a)
	}
	return out
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// ValidateNetwork accepts 1-32 characters of [a-z0-9-_.]: the ID lands in
// protocol IDs and topic names, where a slash or a space would be trouble.
func ValidateNetwork(name string) error {
	if len(name) == 0 || len(name) > 32 {
		return fmt.Errorf("network ID %q: want 1 to 32 characters of a-z 0-9 - _ .", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("network ID %q: character %q not allowed, want a-z 0-9 - _ .", name, r)
		}
	}
	return nil
}

// validateName checks a topic or protocol name such as "bid-requests/1":
// 1-64 characters of [a-z0-9-_./], no leading, trailing or double slash.
func validateName(kind, name string) error {
	if len(name) == 0 || len(name) > 64 {
		return fmt.Errorf("%s name %q: want 1 to 64 characters", kind, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '/') {
			return fmt.Errorf("%s name %q: character %q not allowed, want a-z 0-9 - _ . /", kind, name, r)
		}
	}
	if name[0] == '/' || name[len(name)-1] == '/' || containsDoubleSlash(name) {
		return fmt.Errorf("%s name %q: no leading, trailing or double slash", kind, name)
	}
	return nil
}

func containsDoubleSlash(s string) bool {
	for i := 1; i < len(s); i++ {
		if s[i] == '/' && s[i-1] == '/' {
			return true
		}
	}
	return false
}

type transportKind int

const (
	transportUnsupported transportKind = iota
	transportTCP                       // TCP, optionally with /ws
	transportQUIC
)

// transportOf classifies a listen address by the transport that serves it.
func transportOf(a multiaddr.Multiaddr) transportKind {
	var hasTCP, hasUDP, hasQUIC, other bool
	multiaddr.ForEach(a, func(c multiaddr.Component) bool {
		switch c.Protocol().Code {
		case multiaddr.P_IP4, multiaddr.P_IP6, multiaddr.P_DNS, multiaddr.P_DNS4, multiaddr.P_DNS6:
		case multiaddr.P_TCP:
			hasTCP = true
		case multiaddr.P_WS:
		case multiaddr.P_UDP:
			hasUDP = true
		case multiaddr.P_QUIC_V1:
			hasQUIC = true
		default:
			other = true
		}
		return true
	})
	switch {
	case other:
		return transportUnsupported
	case hasTCP && !hasUDP:
		return transportTCP
	case hasUDP && hasQUIC && !hasTCP:
		return transportQUIC
	default:
		return transportUnsupported
	}
}
