package testnet

// The readiness check that both test networks, in-process and processes,
// pass before they are handed to a caller.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dms-project/dms/api"
)

// pollEvery is how often the process network's readiness and peers are
// polled while waiting: each poll is a control call to every node.
const pollEvery = 100 * time.Millisecond

// probeRound is how long a probe from a process network's node-0 has to
// reach every node before the next one goes out: it goes out through a
// control call, and hundreds of nodes may share a few cores.
const probeRound = 3 * time.Second

// meshStatus is what the readiness check learns of one node in one poll.
type meshStatus struct {
	topicPeers   int   // peers on the bid-request topic
	peers        int   // connected peers, for the error that names a node short of topic peers
	requestsSeen int64 // bid requests heard, probes included
	err          error // the node did not answer
}

// meshNodes is a test network as its readiness check sees it: the
// in-process network (localMesh) and the process one (processMesh) both
// stand behind it, so that both mean the same by "up".
type meshNodes interface {
	// names are the nodes, as errors call them.
	names() []string
	// statuses polls every node; statuses(ctx)[i] is node i's.
	statuses(ctx context.Context) []meshStatus
	// probe publishes a probe (a bid request that no provider takes) from
	// node 0.
	probe(ctx context.Context) error
	// exited is an error naming a node that ended while we waited; nil
	// while all run.
	exited() error
}

// waitForMesh waits until the network delivers: every node has
// wantTopicPeers topic peers, then a probe published by node 0 reaches
// every node (each counts it in its requests seen). A real mesh is not a
// full graph, so this, not every node seeing every other, is what "up"
// means: peers on the topic are not yet a delivered message, as gossipsub
// grafts its meshes on heartbeats. It polls every `every`, sends a probe
// every round, until ctx ends, and then names the nodes that fall short.
//
// It asks for a probe rather than only counting topic peers because that is
// what holds on a loaded machine: a node counts as reached once it heard
// any probe since the first went out, so a slow delivery is not mistaken
// for a missing one, and a probe per round covers a first one that went
// out before the meshes formed.
func waitForMesh(ctx context.Context, m meshNodes, every, round time.Duration) error {
	names := m.names()
	k := wantTopicPeers(len(names))
	t := time.NewTicker(every)
	defer t.Stop()
	var short []string
	for {
		short = short[:0]
		for i, st := range m.statuses(ctx) {
			switch {
			case st.err != nil:
				short = append(short, fmt.Sprintf("%s: %v", names[i], st.err))
			case st.topicPeers < k:
				short = append(short, fmt.Sprintf("%s has %d topic peers (%d connections), wants %d", names[i], st.topicPeers, st.peers, k))
			}
		}
		if len(short) == 0 {
			break
		}
		if err := m.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the nodes to find topic peers: %w: %s", context.Cause(ctx), summarise(short))
		case <-t.C:
		}
	}
	if len(names) < 2 {
		return nil
	}
	base := m.statuses(ctx)
	heard := make([]bool, len(names))
	heard[0] = true
	for {
		if err := m.probe(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("probe from %s: %w", names[0], err)
		}
		next := time.Now().Add(round)
		for {
			sts := m.statuses(ctx)
			for i, st := range sts {
				switch {
				case heard[i] || st.err != nil:
				case base[i].err != nil:
					base[i] = st // a first answer is its baseline
				case st.requestsSeen > base[i].requestsSeen:
					heard[i] = true
				}
			}
			short = short[:0]
			for i, h := range heard {
				if !h {
					// What it had, so that an error tells a node cut
					// off from one that its peers stopped sending to.
					short = append(short, fmt.Sprintf("%s: %d topic peers, %d connections", names[i], sts[i].topicPeers, sts[i].peers))
				}
			}
			if len(short) == 0 {
				return nil
			}
			if err := m.exited(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for a probe from %s to reach every node: %w: %d of %d have not heard one (%s)",
					names[0], context.Cause(ctx), len(short), len(names)-1, summarise(short))
			case <-t.C:
			}
			if time.Now().After(next) {
				break
			}
		}
	}
}

// summarise joins the first few of a list.
func summarise(items []string) string {
	if len(items) > 8 {
		return strings.Join(items[:8], "; ") + fmt.Sprintf("; and %d more", len(items)-8)
	}
	return strings.Join(items, "; ")
}

// processMesh is a process network (Up, Add) as its readiness check sees
// it: the nodes answer over their control sockets.
type processMesh struct {
	nodes   []Process
	clients *clients
	procs   []*child // the nodes this call started, whose exit it watches
}

var _ meshNodes = (*processMesh)(nil)

// waitForProcesses is waitForMesh over the nodes of rec, procs among them
// being those just started.
func waitForProcesses(ctx context.Context, rec *Record, procs []*child) error {
	m := &processMesh{nodes: rec.Nodes, clients: newClients(rec.Nodes), procs: procs}
	defer m.clients.close()
	if err := waitForMesh(ctx, m, pollEvery, probeRound); err != nil {
		return fmt.Errorf("%w; see the node.log in each home", err)
	}
	return nil
}

func (m *processMesh) names() []string {
	out := make([]string, len(m.nodes))
	for i, n := range m.nodes {
		out[i] = n.Name
	}
	return out
}

func (m *processMesh) statuses(ctx context.Context) []meshStatus {
	sts := m.clients.statuses(ctx)
	out := make([]meshStatus, len(sts))
	for i, st := range sts {
		out[i] = meshStatus{topicPeers: st.TopicPeers, peers: st.Peers, requestsSeen: st.RequestsSeen, err: st.err}
	}
	return out
}

func (m *processMesh) probe(ctx context.Context) error {
	cl, err := m.clients.get(ctx, 0)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = cl.Probe(ctx, api.ProbeRequest{})
	return err
}

func (m *processMesh) exited() error {
	for _, p := range m.procs {
		select {
		case <-p.exited:
			return p.exitError()
		default:
		}
	}
	return nil
}
