package node

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/orchestrator"
)

// Diagnostics reaches into a running node's bidding protocol for the test
// network, the bench and tests: what they need to see that gossip reaches
// every node and to time it, which a user of the node never does. It is a
// view of the node, valid as long as the node is.
type Diagnostics struct{ n *Node }

// Diagnostics returns the node's diagnostics.
func (n *Node) Diagnostics() Diagnostics { return Diagnostics{n} }

// Probe publishes a bid request that no provider takes, under jobID (""
// picks one): every node that hears it counts it in Stats().RequestsSeen.
// Test networks use it to see that gossip reaches every node; the bench, to
// time it.
func (d Diagnostics) Probe(ctx context.Context, jobID string) error {
	return d.n.orch.Probe(ctx, jobID)
}

// Stats are the bidding protocol's counters on this node.
func (d Diagnostics) Stats() orchestrator.Stats { return d.n.orch.Stats() }

// Topic is the name of the bid-request topic.
func (d Diagnostics) Topic() string { return d.n.orch.Topic().Name() }

// TopicPeers is how many peers share the bid-request topic with the node:
// those hear its jobs, and it theirs (Status reports it too).
func (d Diagnostics) TopicPeers() int { return d.n.topicPeers() }

func (n *Node) topicPeers() int { return len(n.orch.Topic().ListPeers()) }

// Penalty is the gossip penalty this node holds against p for floods it
// was blamed for: 0, or negative (see p2p.Host.Penalize).
func (d Diagnostics) Penalty(p peer.ID) float64 { return d.n.host.Penalty(p) }
