package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
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
	// or "private" (behind a NAT: reserve relay slots at once).
	Reachability string

	// Metrics, if set, receives libp2p's own metrics (swarm, identify,
	// relay, hole punching, AutoNAT, resource manager) and gossipsub's;
	// nil turns them off.
	Metrics prometheus.Registerer

	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// Option changes a Config and says why it cannot.
type Option func(*Config) error

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
		ConnHigh:           64,
		ConnGrace:          time.Minute,
		ResourceMemory:     256 << 20,
		ResourceFDs:        1024,
		MaxMessageSize:     DefaultMaxMessageSize,
		GossipHeartbeat:    time.Second,
		ScoreIPWhitelist:   loopbackNets(),
		IPColocationWeight: -10,
		StreamTimeout:      10 * time.Second,
		DialTimeout:        15 * time.Second,
		DiscoveryInterval:  30 * time.Second,
		AdvertiseTTL:       time.Hour,
		NATService:         true,
		NATPortMap:         true,
		Relay:              true,
		Reachability:       "auto",
	}
}

// LocalConfig is for tests and the one-machine test network: 127.0.0.1 on a
// free TCP port, DHT server mode (auto would stay a client on loopback),
// short timeouts and intervals, no IP-colocation penalty.
func LocalConfig() Config {
	c := DefaultConfig()
	c.ListenAddrs = mustAddrs("/ip4/127.0.0.1/tcp/0")
	c.DHTMode = DHTModeServer
	c.ResourceMemory = 128 << 20
	c.ResourceFDs = 512
	c.GossipHeartbeat = 700 * time.Millisecond
	c.IPColocationWeight = 0
	c.StreamTimeout = 3 * time.Second
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
	return c
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
		errs = append(errs, fmt.Errorf("invalid %v", c.DHTMode))
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
	if c.MaxMessageSize < 1<<10 || c.MaxMessageSize > 64<<20 {
		errs = append(errs, fmt.Errorf("max gossip message size %d: want 1 KiB to 64 MiB", c.MaxMessageSize))
	}
	if c.IPColocationWeight > 0 {
		errs = append(errs, fmt.Errorf("IP-colocation weight %v: must be negative or 0", c.IPColocationWeight))
	}
	for name, d := range map[string]time.Duration{
		"gossip heartbeat":   c.GossipHeartbeat,
		"stream timeout":     c.StreamTimeout,
		"dial timeout":       c.DialTimeout,
		"discovery interval": c.DiscoveryInterval,
		"advertise TTL":      c.AdvertiseTTL,
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

// WithConfig replaces the whole configuration, e.g. WithConfig(LocalConfig());
// put it first, options after it refine it.
func WithConfig(cfg Config) Option {
	return func(c *Config) error {
		*c = cfg
		return nil
	}
}

// WithPrivKey sets the node's identity.
func WithPrivKey(k crypto.PrivKey) Option {
	return func(c *Config) error {
		if k == nil {
			return errors.New("WithPrivKey: nil key")
		}
		c.PrivKey = k
		return nil
	}
}

// WithListenAddrs replaces the listen addresses.
func WithListenAddrs(addrs ...multiaddr.Multiaddr) Option {
	return func(c *Config) error {
		if len(addrs) == 0 {
			return errors.New("WithListenAddrs: no address")
		}
		c.ListenAddrs = append([]multiaddr.Multiaddr(nil), addrs...)
		return nil
	}
}

// WithListenAddrStrings replaces the listen addresses, parsing each one.
func WithListenAddrStrings(addrs ...string) Option {
	return func(c *Config) error {
		if len(addrs) == 0 {
			return errors.New("WithListenAddrStrings: no address")
		}
		out := make([]multiaddr.Multiaddr, 0, len(addrs))
		for _, s := range addrs {
			a, err := multiaddr.NewMultiaddr(s)
			if err != nil {
				return fmt.Errorf("listen address %q: %w", s, err)
			}
			out = append(out, a)
		}
		c.ListenAddrs = out
		return nil
	}
}

// WithBootstrap adds bootstrap peers.
func WithBootstrap(peers ...peer.AddrInfo) Option {
	return func(c *Config) error {
		for _, p := range peers {
			if p.ID == "" || len(p.Addrs) == 0 {
				return fmt.Errorf("WithBootstrap: peer %q needs an ID and an address", p.ID)
			}
		}
		c.Bootstrap = append(c.Bootstrap, peers...)
		return nil
	}
}

// WithBootstrapAddrs adds bootstrap peers given as full addresses
// ("/ip4/1.2.3.4/tcp/4001/p2p/12D3Koo...").
func WithBootstrapAddrs(addrs ...string) Option {
	return func(c *Config) error {
		infos, err := ParseAddrInfos(addrs...)
		if err != nil {
			return err
		}
		c.Bootstrap = append(c.Bootstrap, infos...)
		return nil
	}
}

// ParseAddrInfos parses full /p2p/ addresses, merging those of one peer.
func ParseAddrInfos(addrs ...string) ([]peer.AddrInfo, error) {
	mas := make([]multiaddr.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("peer address %q: %w", s, err)
		}
		mas = append(mas, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("peer addresses: %w (want /ip4/<ip>/tcp/<port>/p2p/<peer id>)", err)
	}
	return infos, nil
}

// WithNetwork sets the network ID.
func WithNetwork(name string) Option {
	return func(c *Config) error {
		if err := ValidateNetwork(name); err != nil {
			return err
		}
		c.Network = name
		return nil
	}
}

// WithPSK makes the network private (see LoadSwarmKey).
func WithPSK(psk pnet.PSK) Option {
	return func(c *Config) error {
		if len(psk) != 32 {
			return fmt.Errorf("WithPSK: swarm key has %d bytes, want 32", len(psk))
		}
		c.PSK = psk
		return nil
	}
}

// WithDHTMode sets the DHT mode.
func WithDHTMode(m DHTMode) Option {
	return func(c *Config) error {
		if m < DHTModeAuto || m > DHTModeClient {
			return fmt.Errorf("WithDHTMode: invalid %v", m)
		}
		c.DHTMode = m
		return nil
	}
}

// WithDatastore keeps the DHT's records in d instead of memory.
func WithDatastore(d ds.Batching) Option {
	return func(c *Config) error {
		c.Datastore = d
		return nil
	}
}

// WithConnLimits sets the connection manager's water marks.
func WithConnLimits(low, high int) Option {
	return func(c *Config) error {
		if low < 1 || high < low {
			return fmt.Errorf("WithConnLimits(%d, %d): need 1 <= low <= high", low, high)
		}
		c.ConnLow, c.ConnHigh = low, high
		return nil
	}
}

// WithResourceLimits scales the resource manager to memory bytes and fds
// file descriptors.
func WithResourceLimits(memory int64, fds int) Option {
	return func(c *Config) error {
		if memory < 64<<20 || fds < 64 {
			return fmt.Errorf("WithResourceLimits(%d, %d): need at least 64 MiB and 64 fds", memory, fds)
		}
		c.ResourceMemory, c.ResourceFDs = memory, fds
		return nil
	}
}

// WithMaxMessageSize bounds one gossip message.
func WithMaxMessageSize(n int) Option {
	return func(c *Config) error {
		if n < 1<<10 || n > 64<<20 {
			return fmt.Errorf("WithMaxMessageSize(%d): want 1 KiB to 64 MiB", n)
		}
		c.MaxMessageSize = n
		return nil
	}
}

// WithStreamTimeout sets the default deadline of one stream exchange.
func WithStreamTimeout(d time.Duration) Option {
	return positiveDuration("WithStreamTimeout", d, func(c *Config) { c.StreamTimeout = d })
}

// WithDialTimeout bounds one dial made by discovery.
func WithDialTimeout(d time.Duration) Option {
	return positiveDuration("WithDialTimeout", d, func(c *Config) { c.DialTimeout = d })
}

// WithDiscoveryInterval sets how often the node looks for more peers.
func WithDiscoveryInterval(d time.Duration) Option {
	return positiveDuration("WithDiscoveryInterval", d, func(c *Config) { c.DiscoveryInterval = d })
}

// ParseReachability checks "auto", "public" or "private" ("" is auto).
func ParseReachability(s string) (string, error) {
	switch s {
	case "", "auto":
		return "auto", nil
	case "public", "private":
		return s, nil
	}
	return "", fmt.Errorf("reachability %q: want auto, public or private", s)
}

// WithReachability overrides AutoNAT: auto, public or private.
func WithReachability(r string) Option {
	return func(c *Config) error {
		v, err := ParseReachability(r)
		if err != nil {
			return err
		}
		c.Reachability = v
		return nil
	}
}

// WithRelay turns the relay client (and hole punching) on or off.
func WithRelay(on bool) Option {
	return func(c *Config) error {
		c.Relay = on
		return nil
	}
}

// WithRelayService makes the node a circuit relay for others.
func WithRelayService(on bool) Option {
	return func(c *Config) error {
		c.RelayService = on
		if on {
			c.Relay = true
		}
		return nil
	}
}

// WithMetrics reports libp2p's and gossipsub's metrics to reg.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(c *Config) error {
		if reg == nil {
			return errors.New("WithMetrics: nil registerer")
		}
		c.Metrics = reg
		return nil
	}
}

// WithLogger sets the logger; each subsystem adds its own "subsystem" key.
func WithLogger(l *slog.Logger) Option {
	return func(c *Config) error {
		if l == nil {
			return errors.New("WithLogger: nil logger")
		}
		c.Logger = l
		return nil
	}
}

func positiveDuration(name string, d time.Duration, set func(*Config)) Option {
	return func(c *Config) error {
		if d <= 0 {
			return fmt.Errorf("%s(%v): must be positive", name, d)
		}
		set(c)
		return nil
	}
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
