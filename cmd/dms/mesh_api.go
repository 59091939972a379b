package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/node"
)

// Control API paths of the mesh calls.
const (
	pathID     = "/v1/id"
	pathPeers  = "/v1/peers"
	pathStatus = "/v1/status"
)

// IDResponse says who a running node is and where it can be reached.
type IDResponse struct {
	PeerID  string   `json:"peer_id"`
	Network string   `json:"network"`
	Addrs   []string `json:"addrs"` // full, each ending in /p2p/<peer id>
	Home    string   `json:"home"`
	PID     int      `json:"pid"`
}

// PeersResponse lists the peers a node holds connections to.
type PeersResponse struct {
	Topic string     `json:"topic"` // the bid-request topic
	Peers []PeerInfo `json:"peers"`
}

// PeerInfo is one connected peer.
type PeerInfo struct {
	ID string `json:"id"`
	// Addrs are the remote ends of our connections to it.
	Addrs []string `json:"addrs"`
	// Direction says who dialled the oldest connection: "inbound" (the
	// peer), "outbound" (we) or "unknown".
	Direction string `json:"direction"`
	// OnTopic is set when the peer has joined the bid-request topic, so it
	// hears our jobs and we hear its.
	OnTopic bool `json:"on_topic"`
	// Latency is libp2p's moving average of ping times; 0 if none yet.
	Latency time.Duration `json:"latency,omitempty"`
}

// StatusResponse is node.Status and where the node lives.
type StatusResponse struct {
	node.Status
	Home string `json:"home"`
	PID  int    `json:"pid"`
}

// registerMeshAPI serves a running node's identity, peers and status, and
// the controller calls (onboard, offboard, capability, benchmark) on its
// ledger through ctl.
func registerMeshAPI(s *controlServer, n *node.Node, home string, ctl controller) {
	handle(s, "POST "+pathID, func(context.Context, struct{}) (IDResponse, error) {
		r := IDResponse{PeerID: n.ID().String(), Network: n.Host().Network(), Home: home, PID: os.Getpid()}
		for _, a := range n.Addrs() {
			r.Addrs = append(r.Addrs, a.String())
		}
		return r, nil
	})
	handle(s, "POST "+pathPeers, func(context.Context, struct{}) (PeersResponse, error) {
		return peersOf(n), nil
	})
	handle(s, "POST "+pathStatus, func(context.Context, struct{}) (StatusResponse, error) {
		return StatusResponse{Status: n.Status(), Home: home, PID: os.Getpid()}, nil
	})
	registerControllerAPI(s, ctl)
}

func peersOf(n *node.Node) PeersResponse {
	topic := n.Orchestrator().Topic()
	onTopic := map[peer.ID]bool{}
	for _, p := range topic.ListPeers() {
		onTopic[p] = true
	}
	lh := n.Host().Libp2p()
	r := PeersResponse{Topic: topic.Name(), Peers: []PeerInfo{}}
	for _, p := range n.Host().Peers() {
		info := PeerInfo{ID: p.String(), OnTopic: onTopic[p], Latency: lh.Peerstore().LatencyEWMA(p)}
		conns := lh.Network().ConnsToPeer(p)
		slices.SortFunc(conns, func(a, b network.Conn) int { return a.Stat().Opened.Compare(b.Stat().Opened) })
		for i, c := range conns {
			info.Addrs = append(info.Addrs, c.RemoteMultiaddr().String())
			if i == 0 {
				info.Direction = strings.ToLower(c.Stat().Direction.String())
			}
		}
		slices.Sort(info.Addrs)
		info.Addrs = slices.Compact(info.Addrs)
		r.Peers = append(r.Peers, info)
	}
	slices.SortFunc(r.Peers, func(a, b PeerInfo) int { return strings.Compare(a.ID, b.ID) })
	return r
}
