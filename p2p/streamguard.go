package p2p

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Streams that have not yet named a protocol live in the resource
// manager's transient scope, which every peer shares. libp2p bounds that
// scope as a whole (128 inbound streams by default) and each peer's
// streams as a whole, but not one peer's share of the transient scope: one
// peer that opened 130 streams and never spoke on them deafened a node for
// everybody, each stream held for libp2p's 10 s negotiation timeout.
//
// streamGuard wraps the resource manager to bound, per peer, the inbound
// streams still negotiating; a stream leaves the count once it names a
// protocol or ends. Beyond the bound a stream is refused before it takes a
// transient slot. guardNegotiation (below) shortens the time a stream may
// take to name its protocol, which libp2p.New offers no option for.
type streamGuard struct {
	network.ResourceManager
	limit int
	stats *streamGuardStats

	mu   sync.Mutex
	open map[peer.ID]int // inbound streams that have not named a protocol
}

var (
	_ network.ResourceManager = (*streamGuard)(nil)
	_ connmgr.GetConnLimiter  = (*streamGuard)(nil)
)

func newStreamGuard(rm network.ResourceManager, limit int, stats *streamGuardStats) *streamGuard {
	return &streamGuard{ResourceManager: rm, limit: limit, stats: stats, open: make(map[peer.ID]int)}
}

// OpenStream refuses an inbound stream of a peer that already has limit
// streams negotiating.
func (g *streamGuard) OpenStream(p peer.ID, dir network.Direction) (network.StreamManagementScope, error) {
	if dir != network.DirInbound {
		return g.ResourceManager.OpenStream(p, dir)
	}
	g.mu.Lock()
	if g.open[p] >= g.limit {
		g.mu.Unlock()
		g.stats.refuse(p, g.limit)
		return nil, fmt.Errorf("%w: peer %s already has %d streams that have not named a protocol", network.ErrResourceLimitExceeded, p, g.limit)
	}
	g.open[p]++
	g.mu.Unlock()
	s, err := g.ResourceManager.OpenStream(p, dir)
	if err != nil {
		g.release(p)
		return nil, err
	}
	return &guardedStream{StreamManagementScope: s, negotiated: sync.OnceFunc(func() { g.release(p) })}, nil
}

func (g *streamGuard) release(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open[p]--; g.open[p] <= 0 {
		delete(g.open, p)
	}
}

// negotiating is how many of p's inbound streams have not named a protocol.
func (g *streamGuard) negotiating(p peer.ID) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open[p]
}

// GetConnLimit passes the wrapped manager's limit on, for libp2p's check
// of the connection manager against it.
func (g *streamGuard) GetConnLimit() int {
	if l, ok := g.ResourceManager.(connmgr.GetConnLimiter); ok {
		return l.GetConnLimit()
	}
	return 0
}

// guardedStream leaves its peer's count when it names a protocol (taken
// or not: a protocol the scope refuses ends the stream) or ends.
type guardedStream struct {
	network.StreamManagementScope
	negotiated func()
}

func (s *guardedStream) SetProtocol(proto protocol.ID) error {
	err := s.StreamManagementScope.SetProtocol(proto)
	s.negotiated()
	return err
}

func (s *guardedStream) Done() {
	s.negotiated()
	s.StreamManagementScope.Done()
}

// guardNegotiation wraps the network's handler of inbound streams so that
// a stream that has not named a protocol within timeout is reset. libp2p's
// own limit is 10 s, a package variable that libp2p.New has no option for.
func guardNegotiation(n network.Network, timeout time.Duration, stats *streamGuardStats) error {
	sw, ok := n.(interface{ StreamHandler() network.StreamHandler })
	if !ok {
		return fmt.Errorf("p2p: the libp2p network (%T) does not expose its stream handler", n)
	}
	inner := sw.StreamHandler()
	if inner == nil {
		return fmt.Errorf("p2p: the libp2p network has no stream handler yet")
	}
	n.SetStreamHandler(func(s network.Stream) {
		t := time.AfterFunc(timeout, func() {
			if s.Protocol() == "" {
				stats.timeout(s.Conn().RemotePeer(), timeout)
				s.ResetWithError(network.StreamProtocolNegotiationFailed)
			}
		})
		defer t.Stop()
		inner(s)
	})
	return nil
}

// streamGuardStats counts and logs the streams refused or reset for not
// naming a protocol. The log is rate-limited: a flood must not become a
// flood of log lines.
type streamGuardStats struct {
	refused, timeouts prometheus.Counter
	log               *slog.Logger
	every             *rate.Limiter

	mu                  sync.Mutex
	unlogged, unloggedT int // since the last line
}

func newStreamGuardStats(log *slog.Logger) *streamGuardStats {
	return &streamGuardStats{
		refused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dms", Subsystem: "p2p", Name: "streams_unnegotiated_refused_total",
			Help: "Inbound streams refused because their peer already had as many streams negotiating a protocol as it may."}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dms", Subsystem: "p2p", Name: "streams_negotiation_timeouts_total",
			Help: "Inbound streams reset because they named no protocol in time."}),
		log:   log,
		every: rate.NewLimiter(rate.Every(10*time.Second), 1),
	}
}

func (st *streamGuardStats) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{st.refused, st.timeouts} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (st *streamGuardStats) refuse(p peer.ID, limit int) {
	st.refused.Inc()
	st.note(p, true, "refused a stream: its peer already has as many streams negotiating a protocol as it may", "limit", limit)
}

func (st *streamGuardStats) timeout(p peer.ID, timeout time.Duration) {
	st.timeouts.Inc()
	st.note(p, false, "reset a stream that named no protocol in time", "timeout", timeout)
}

// note logs one line per 10 s at most, saying how many went unlogged.
func (st *streamGuardStats) note(p peer.ID, refused bool, msg string, args ...any) {
	st.mu.Lock()
	if refused {
		st.unlogged++
	} else {
		st.unloggedT++
	}
	if !st.every.Allow() {
		st.mu.Unlock()
		return
	}
	r, t := st.unlogged, st.unloggedT
	st.unlogged, st.unloggedT = 0, 0
	st.mu.Unlock()
	st.log.Warn(msg, append(args, "peer", p, "refused_since_last_line", r, "timed_out_since_last_line", t)...)
}
