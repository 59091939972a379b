// Package p2p is the node's libp2p layer: identity, transports, private
// network key, Kademlia DHT discovery, gossipsub topics and framed
// request/response streams. It knows nothing of bids or jobs; everything it
// names carries the network ID, so separate networks never mix.
package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ws "github.com/libp2p/go-libp2p/p2p/transport/websocket"
	"github.com/multiformats/go-multiaddr"
)

// ErrClosed is returned by operations on a closed Host.
var ErrClosed = errors.New("p2p: host closed")

// bootstrapTag protects bootstrap connections from the connection manager.
const bootstrapTag = "dms-bootstrap"

// Host is one node of the mesh: a libp2p host with its DHT and gossipsub.
type Host struct {
	cfg     Config
	base    *slog.Logger // network and self, no subsystem
	log     *slog.Logger // subsystem "p2p"
	host    host.Host
	kad     *dht.IpfsDHT
	ps      *pubsub.PubSub
	version string // identify protocolVersion: "/dms/<network>/1"

	// ctx lives as long as the Host; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	bg       sync.WaitGroup // discovery and the network gate
	handlers sync.WaitGroup // stream handlers we are running

	penalties *penalties // the app-specific part of gossip scores

	mu     sync.Mutex
	closed bool
	topics map[*joinedTopic]struct{}
	// The handlers, by protocol, for the node's requests and streams to
	// itself (self.go): libp2p does not dial its own peer ID.
	selfRequests map[protocol.ID]selfRequest
	selfStreams  map[protocol.ID]StreamHandler

	closeOnce sync.Once
	closeErr  error
}

// New starts a node: libp2p host, DHT, gossipsub, then dials the bootstrap
// peers (bounded by ctx and the dial timeout; failures are logged, not
// fatal, because discovery keeps retrying) and starts discovery. ctx bounds
// only the start; the node runs until Close. If New fails, nothing it
// started is left running.
func New(ctx context.Context, opts ...Option) (_ *Host, err error) {
	cfg := DefaultConfig()
	for i, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("p2p option %d: %w", i, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	hctx, cancel := context.WithCancel(context.Background())
	h := &Host{
		cfg:     cfg,
		base:    cfg.logger().With("network", cfg.Network),
		version: "/dms/" + cfg.Network + "/1",
		ctx:     hctx,
		cancel:  cancel,
		topics:  make(map[*joinedTopic]struct{}),

		selfRequests: make(map[protocol.ID]selfRequest),
		selfStreams:  make(map[protocol.ID]StreamHandler),
		penalties:    newPenalties(),
	}
	h.log = h.logger("p2p")
	defer func() {
		if err != nil {
			err = errors.Join(err, h.Close())
		}
	}()

	if h.host, err = newLibp2pHost(&cfg, h.version, h.logger("p2p.streams")); err != nil {
		return nil, err
	}
	h.base = h.base.With("self", h.host.ID())
	h.log = h.logger("p2p")

	// Watch identify results before we listen or dial, so that no peer of
	// another network slips in.
	if err := h.startNetworkGate(); err != nil {
		return nil, err
	}
	// Listen succeeds if any address works; libp2p logs the others.
	addrs := cfg.usableListenAddrs()
	if err := h.host.Network().Listen(addrs...); err != nil {
		return nil, fmt.Errorf("p2p: listen on %v: %w", addrs, err)
	}

	if h.kad, err = h.newDHT(); err != nil {
		return nil, err
	}
	if h.ps, err = h.newPubSub(); err != nil {
		return nil, err
	}

	h.connectBootstrap(ctx, true)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("p2p: start: %w", err)
	}
	if err := h.kad.Bootstrap(hctx); err != nil {
		return nil, fmt.Errorf("p2p: bootstrap dht: %w", err)
	}
	if err := h.startDiscovery(); err != nil {
		return nil, err
	}
	h.log.Info("p2p host started", "addrs", h.host.Addrs(), "dht_mode", cfg.DHTMode, "private", cfg.PSK != nil)
	return h, nil
}

// newLibp2pHost builds the libp2p host: our identity, TCP (+WebSocket) and,
// without a PSK, QUIC; Noise and TLS; our resource and connection managers.
func newLibp2pHost(cfg *Config, version string, log *slog.Logger) (host.Host, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	stats := newStreamGuardStats(log)
	rmOpts := []rcmgr.Option{rcmgr.WithMetricsDisabled()}
	if cfg.Metrics != nil {
		rcmgr.MustRegisterWith(cfg.Metrics)
		str, err := rcmgr.NewStatsTraceReporter()
		if err != nil {
			return nil, fmt.Errorf("p2p: resource manager metrics: %w", err)
		}
		rmOpts = []rcmgr.Option{rcmgr.WithTraceReporter(str)}
		if err := stats.register(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("p2p: stream guard metrics: %w", err)
		}
	}
	inner, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(cfg.resourceLimits(limits)), rmOpts...)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	rm := newStreamGuard(inner, cfg.MaxNegotiatingStreams, stats)
	cm, err := connmgr.NewConnManager(cfg.ConnLow, cfg.ConnHigh, connmgr.WithGracePeriod(cfg.ConnGrace))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("p2p: connection manager: %w", err), rm.Close())
	}

	opts := []libp2p.Option{
		libp2p.Identity(cfg.PrivKey),
		// New listens once the host is built: when libp2p.New itself fails
		// to listen, v0.51 leaks the swarm's and peerstore's goroutines.
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(ws.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(tls.ID, tls.New),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.ProtocolVersion(version),
		libp2p.UserAgent("dms"),
	}
	if cfg.Metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.Metrics))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	if cfg.Bandwidth != nil {
		opts = append(opts, libp2p.BandwidthReporter(cfg.Bandwidth))
	}
	opts = append(opts, natOptions(cfg)...)
	if cfg.PSK != nil {
		opts = append(opts, libp2p.PrivateNetwork(cfg.PSK))
	} else {
		opts = append(opts, libp2p.Transport(quic.NewTransport))
	}
	if cfg.NATService {
		opts = append(opts, libp2p.EnableNATService())
	}
	if cfg.NATPortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	if !cfg.ObservedAddrs {
		opts = append(opts, libp2p.DisableIdentifyAddressDiscovery())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		// libp2p closes the managers on some failure paths, not all; both
		// Close methods tolerate a second call.
		return nil, errors.Join(fmt.Errorf("p2p: start libp2p host: %w", err), rm.Close(), cm.Close())
	}
	// Before the host listens or dials, so that no stream escapes it.
	if err := guardNegotiation(h.Network(), cfg.NegotiationTimeout, stats); err != nil {
		return nil, errors.Join(err, h.Close())
	}
	return h, nil
}

// newDHT starts the Kademlia DHT under the network's own protocol prefix.
func (h *Host) newDHT() (*dht.IpfsDHT, error) {
	mode := map[DHTMode]dht.ModeOpt{
		DHTModeAuto:   dht.ModeAuto,
		DHTModeServer: dht.ModeServer,
		DHTModeClient: dht.ModeClient,
	}[h.cfg.DHTMode]
	opts := []dht.Option{
		dht.ProtocolPrefix(protocol.ID("/dms/" + h.cfg.Network)),
		dht.Mode(mode),
		// Re-dialled by the DHT itself whenever its routing table empties.
		dht.BootstrapPeers(h.cfg.Bootstrap...),
	}
	if h.cfg.Datastore != nil {
		// A namespace of its own, so the node can share one datastore.
		opts = append(opts, dht.Datastore(namespace.Wrap(h.cfg.Datastore, ds.NewKey("/p2p/dht"))))
	}
	kad, err := dht.New(h.host, opts...)
	if err != nil {
		return nil, fmt.Errorf("p2p: start dht: %w", err)
	}
	return kad, nil
}

// startNetworkGate disconnects peers whose identify protocolVersion names
// another network (or is not dms at all). Without it a peer of another
// network that dials us would stay connected, costing a connection slot
// and gossipsub bookkeeping, although it shares no topic or DHT protocol.
func (h *Host) startNetworkGate() error {
	sub, err := h.host.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return fmt.Errorf("p2p: subscribe to identify events: %w", err)
	}
	log := h.logger("p2p.gate")
	h.bg.Go(func() {
		defer sub.Close()
		warned := make(map[peer.ID]bool)
		for {
			select {
			case <-h.ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				evt := e.(event.EvtPeerIdentificationCompleted)
				if evt.ProtocolVersion == h.version {
					continue
				}
				level := slog.LevelDebug
				if h.isBootstrap(evt.Peer) && !warned[evt.Peer] {
					// Most likely a misconfiguration: say so once.
					warned[evt.Peer] = true
					level = slog.LevelWarn
				}
				log.Log(h.ctx, level, "disconnecting peer of another network", "peer", evt.Peer, "protocol_version", evt.ProtocolVersion, "want", h.version, "agent", evt.AgentVersion)
				if err := h.host.Network().ClosePeer(evt.Peer); err != nil {
					log.Debug("close peer", "peer", evt.Peer, "err", err)
				}
			}
		}
	})
	return nil
}

// Close stops discovery, leaves all topics, closes the DHT and the libp2p
// host, and waits for the goroutines it started, stream handlers included
// (a handler must return once its context is done). It is idempotent.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		topics := make([]*joinedTopic, 0, len(h.topics))
		for t := range h.topics {
			topics = append(topics, t)
		}
		h.mu.Unlock()

		var errs []error
		for _, t := range topics {
			errs = append(errs, t.Close())
		}
		h.cancel()
		h.bg.Wait()
		if h.kad != nil {
			errs = append(errs, h.kad.Close())
		}
		if h.host != nil {
			errs = append(errs, h.host.Close())
		}
		h.handlers.Wait()
		if err := errors.Join(errs...); err != nil {
			h.closeErr = fmt.Errorf("p2p: close: %w", err)
		}
	})
	return h.closeErr
}

// track registers a goroutine that Close must wait for; false once closed.
func (h *Host) track() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.handlers.Add(1)
	return true
}

// ID is this node's peer ID, the NodeID of the design.
func (h *Host) ID() peer.ID { return h.host.ID() }

// Addrs are this node's full addresses, each ending in /p2p/<id>, ready to
// give to another node as a bootstrap address.
func (h *Host) Addrs() []multiaddr.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.host.ID(), Addrs: h.host.Addrs()})
	if err != nil {
		h.log.Warn("build p2p addresses", "err", err)
		return nil
	}
	return addrs
}

// AddrInfo is this node's ID and listen addresses.
func (h *Host) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: h.host.ID(), Addrs: h.host.Addrs()}
}

// Peers are the peers we hold a connection to.
func (h *Host) Peers() []peer.ID { return h.host.Network().Peers() }

// Bootstrap are the configured bootstrap peers.
func (h *Host) Bootstrap() []peer.AddrInfo { return append([]peer.AddrInfo(nil), h.cfg.Bootstrap...) }

// Network is the network ID.
func (h *Host) Network() string { return h.cfg.Network }

// EstimatePeers is the network's size, this node not counted, from the
// peers this node knows to be there now: those it holds a connection to,
// and those of its DHT routing table that answered a query of ours within
// answeredRecently. It never counts peers it only remembers (the
// peerstore keeps a departed peer's addresses for a quarter of an hour):
// fifty identities that joined and left would otherwise shrink the share
// of providers asked to bid tenfold for that long. In a network larger
// than this node sees it errs low, which only widens the spread; the
// requester's floor from what bids show makes up for it.
func (h *Host) EstimatePeers() int { return len(h.KnownPeers("")) }

// KnownPeers are the peers this node knows to be there now, once each:
// those it holds a connection to, and those of its DHT routing table that
// answered a query of ours within answeredRecently (see EstimatePeers);
// with a protocol name, only those that identify says speak
// /dms/<network>/<name>, so that hosts that only sit in the mesh (a
// bootstrap relay, a crawler, fifty idle identities) count for nothing.
// The requester sizes its spread by them and sends bid requests straight
// to the ones nearest a job.
func (h *Host) KnownPeers(name string) []peer.ID {
	peers := h.knownPeers()
	if name == "" {
		return peers
	}
	pid := h.ProtocolID(name)
	ps := h.host.Peerstore()
	return slices.DeleteFunc(peers, func(p peer.ID) bool {
		got, err := ps.SupportsProtocols(p, pid)
		return err != nil || len(got) == 0
	})
}

func (h *Host) knownPeers() []peer.ID {
	var table []answeredPeer
	if h.kad != nil {
		if rt := h.kad.RoutingTable(); rt != nil {
			for _, pi := range rt.GetPeerInfos() {
				table = append(table, answeredPeer{id: pi.Id, at: pi.LastSuccessfulOutboundQueryAt})
			}
		}
	}
	return livePeers(h.host.Network().Peers(), table, time.Now().Add(-answeredRecently))
}

// answeredRecently is how recently a routing-table peer we hold no
// connection to must have answered a query to be counted as present. Our
// discovery walks run every DiscoveryInterval (30 s by default) and the
// DHT re-checks its table every 10 minutes; a peer none of them reached in
// two minutes is not known to be there.
const answeredRecently = 2 * time.Minute

// answeredPeer is a routing-table peer and when it last answered us.
type answeredPeer struct {
	id peer.ID
	at time.Time
}

// livePeers lists, once each, the connected peers and the table's peers
// that answered since since.
func livePeers(connected []peer.ID, table []answeredPeer, since time.Time) []peer.ID {
	seen := make(map[peer.ID]bool, len(connected)+len(table))
	out := make([]peer.ID, 0, len(connected)+len(table))
	add := func(p peer.ID) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range connected {
		add(p)
	}
	for _, p := range table {
		if p.at.After(since) {
			add(p.id)
		}
	}
	return out
}

// ConnInfo describes our connections to p: the remote ends' addresses
// (sorted, without duplicates), who dialled the oldest connection
// ("inbound": p, "outbound": we, "unknown"; "" with no connection) and
// libp2p's moving average of ping times (0 if none yet).
func (h *Host) ConnInfo(p peer.ID) (addrs []string, direction string, latency time.Duration) {
	conns := h.host.Network().ConnsToPeer(p)
	slices.SortFunc(conns, func(a, b network.Conn) int { return a.Stat().Opened.Compare(b.Stat().Opened) })
	for i, c := range conns {
		addrs = append(addrs, c.RemoteMultiaddr().String())
		if i == 0 {
			direction = strings.ToLower(c.Stat().Direction.String())
		}
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), direction, h.host.Peerstore().LatencyEWMA(p)
}

// Connect dials a peer, bounded by ctx and the dial timeout.
func (h *Host) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if h.ctx.Err() != nil {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.DialTimeout)
	defer cancel()
	if err := h.host.Connect(ctx, ai); err != nil {
		return fmt.Errorf("p2p: connect to %s: %w", ai.ID, err)
	}
	return nil
}

// logger is the logger of one subsystem.
func (h *Host) logger(subsystem string) *slog.Logger {
	return h.base.With("subsystem", subsystem)
}

// isBootstrap reports whether p is one of the configured bootstrap peers.
func (h *Host) isBootstrap(p peer.ID) bool {
	for _, b := range h.cfg.Bootstrap {
		if b.ID == p {
			return true
		}
	}
	return false
}

// connected reports whether we hold a connection to p.
func (h *Host) connected(p peer.ID) bool {
	return h.host.Network().Connectedness(p) == network.Connected
}
