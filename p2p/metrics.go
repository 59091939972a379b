package p2p

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// go-libp2p reports its own metrics (swarm, identify, relay, hole
// punching, AutoNAT, the resource manager) to a Prometheus registerer;
// gossipsub v0.19 has none of its own, only a tracer. gossipMetrics is that
// tracer, counting what an operator asks of a gossip mesh: messages in,
// delivered, rejected and duplicated, meshes grafted and pruned, RPCs
// dropped for a full queue.
type gossipMetrics struct {
	validated, delivered, duplicate, undeliverable, throttled prometheus.Counter
	rejected                                                  *prometheus.CounterVec
	graft, prune                                              prometheus.Counter
	sentRPC, recvRPC, droppedRPC                              prometheus.Counter
	mesh                                                      prometheus.Gauge
}

var _ pubsub.RawTracer = (*gossipMetrics)(nil)

func newGossipMetrics(reg prometheus.Registerer) (*gossipMetrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dms", Subsystem: "gossipsub", Name: name, Help: help})
	}
	m := &gossipMetrics{
		validated:     c("messages_validated_total", "Gossip messages that entered validation (first sight of each)."),
		delivered:     c("messages_delivered_total", "Gossip messages that passed validation and were delivered."),
		duplicate:     c("messages_duplicate_total", "Gossip messages dropped as already seen."),
		undeliverable: c("messages_undeliverable_total", "Gossip messages dropped because our reader was too slow."),
		throttled:     c("peers_throttled_total", "Times the peer gater throttled a peer."),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dms", Subsystem: "gossipsub", Name: "messages_rejected_total",
			Help: "Gossip messages rejected or ignored, by gossipsub's reason."}, []string{"reason"}),
		graft:      c("graft_total", "Peers grafted onto a topic mesh."),
		prune:      c("prune_total", "Peers pruned from a topic mesh."),
		sentRPC:    c("rpc_sent_total", "RPCs queued to peers."),
		recvRPC:    c("rpc_received_total", "RPCs received from peers."),
		droppedRPC: c("rpc_dropped_total", "Outbound RPCs dropped because a peer's queue was full."),
		mesh: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dms", Subsystem: "gossipsub", Name: "mesh_peers",
			Help: "Peers in our topic meshes (grafts less prunes)."}),
	}
	for _, col := range []prometheus.Collector{m.validated, m.delivered, m.duplicate, m.undeliverable, m.throttled, m.rejected,
		m.graft, m.prune, m.sentRPC, m.recvRPC, m.droppedRPC, m.mesh} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *gossipMetrics) AddPeer(peer.ID, protocol.ID)             {}
func (m *gossipMetrics) RemovePeer(peer.ID)                       {}
func (m *gossipMetrics) OnNewOutboundStream(peer.ID, protocol.ID) {}
func (m *gossipMetrics) OnClosedOutboundStream(peer.ID)           {}
func (m *gossipMetrics) Join(string)                              {}
func (m *gossipMetrics) Leave(string)                             {}
func (m *gossipMetrics) Graft(peer.ID, string)                    { m.graft.Inc(); m.mesh.Inc() }
func (m *gossipMetrics) Prune(peer.ID, string)                    { m.prune.Inc(); m.mesh.Dec() }
func (m *gossipMetrics) ValidateMessage(*pubsub.Message)          { m.validated.Inc() }
func (m *gossipMetrics) DeliverMessage(*pubsub.Message)           { m.delivered.Inc() }
func (m *gossipMetrics) RejectMessage(_ *pubsub.Message, why string) {
	m.rejected.WithLabelValues(why).Inc()
}
func (m *gossipMetrics) DuplicateMessage(*pubsub.Message)                     { m.duplicate.Inc() }
func (m *gossipMetrics) ThrottlePeer(peer.ID)                                 { m.throttled.Inc() }
func (m *gossipMetrics) RecvRPC(*pubsub.RPC)                                  { m.recvRPC.Inc() }
func (m *gossipMetrics) SendRPC(*pubsub.RPC, peer.ID)                         { m.sentRPC.Inc() }
func (m *gossipMetrics) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (m *gossipMetrics) DropRPC(*pubsub.RPC, peer.ID)                         { m.droppedRPC.Inc() }
func (m *gossipMetrics) UndeliverableMessage(*pubsub.Message)                 { m.undeliverable.Inc() }
