package bench

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// wireCounter adds up the bytes every host of the bench's network writes to
// its streams, by protocol: one counter serves all hosts (p2p.WithBandwidth),
// so its totals are the mesh's. It counts exactly, at once, which libp2p's
// own BandwidthCounter does not (its totals move on a one-second sweep), and
// keeps nothing per peer. The bytes are the streams' payload: what the
// protocols send, before Noise and yamux add their frame headers (about 30
// bytes a write) and TCP its own.
type wireCounter struct {
	sent  atomic.Int64
	byPro sync.Map // protocol.ID -> *atomic.Int64
}

var _ metrics.Reporter = (*wireCounter)(nil)

func newWireCounter() *wireCounter { return &wireCounter{} }

func (w *wireCounter) LogSentMessage(int64) {}
func (w *wireCounter) LogRecvMessage(int64) {}

func (w *wireCounter) LogSentMessageStream(n int64, p protocol.ID, _ peer.ID) {
	w.sent.Add(n)
	c, ok := w.byPro.Load(p)
	if !ok {
		c, _ = w.byPro.LoadOrStore(p, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(n)
}

func (w *wireCounter) LogRecvMessageStream(int64, protocol.ID, peer.ID) {}

// The rest of metrics.Reporter: the bench reads Sent and ByProtocol instead.
func (w *wireCounter) GetBandwidthForPeer(peer.ID) metrics.Stats         { return metrics.Stats{} }
func (w *wireCounter) GetBandwidthForProtocol(protocol.ID) metrics.Stats { return metrics.Stats{} }
func (w *wireCounter) GetBandwidthTotals() metrics.Stats {
	return metrics.Stats{TotalOut: w.sent.Load()}
}
func (w *wireCounter) GetBandwidthByPeer() map[peer.ID]metrics.Stats { return nil }
func (w *wireCounter) GetBandwidthByProtocol() map[protocol.ID]metrics.Stats {
	return nil
}
func (w *wireCounter) Reset()             {}
func (w *wireCounter) TrimIdle(time.Time) {}

// Sent is the bytes written so far, all protocols.
func (w *wireCounter) Sent() int64 { return w.sent.Load() }

// ByProtocol is the bytes written so far by protocol, named without the
// network's prefix ("bid/1", "kad/1.0.0", "/meshsub/1.2.0"); "" is
// protocol negotiation, written before a stream has one.
func (w *wireCounter) ByProtocol() map[string]int64 {
	out := map[string]int64{}
	w.byPro.Range(func(k, v any) bool {
		out[protocolName(k.(protocol.ID))] += v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// protocolName drops the network's part of our protocols' IDs
// ("/dms/<network>/bid/1" is "bid/1"), so that a report names the same
// protocol the same way in every run; others keep their ID.
func protocolName(p protocol.ID) string {
	rest, ok := strings.CutPrefix(string(p), "/dms/")
	if !ok {
		return string(p)
	}
	if _, name, ok := strings.Cut(rest, "/"); ok {
		return name
	}
	return string(p)
}
