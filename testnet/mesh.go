package testnet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dms-project/dms/api"
)

// pollEvery is how often readiness and peers are polled while waiting.
const pollEvery = 100 * time.Millisecond

// waitForMesh waits until the network delivers: every node has topic
// peers (a few in a small network, one in a large one, as StartLocal
// waits), then a probe published by node-0 reaches every node (each counts
// it in its status's requests_seen). A real mesh is not a full graph, so
// this, not every node seeing every other, is what "up" means. On timeout
// it names the nodes that fall short.
func waitForMesh(ctx context.Context, rec *Record, procs []*child) error {
	clients := newClients(rec.Nodes)
	defer clients.close()
	k := min(len(rec.Nodes)-1, 3)
	if len(rec.Nodes) > 20 {
		k = 1
	}
	exited := func() error {
		for _, p := range procs {
			select {
			case <-p.exited:
				return p.exitError()
			default:
			}
		}
		return nil
	}
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	var short []string
	for {
		statuses := clients.statuses(ctx)
		short = short[:0]
		for i, st := range statuses {
			switch {
			case st.err != nil:
				short = append(short, fmt.Sprintf("%s: %v", rec.Nodes[i].Name, st.err))
			case st.TopicPeers < k:
				short = append(short, fmt.Sprintf("%s has %d topic peers (%d connections), wants %d", rec.Nodes[i].Name, st.TopicPeers, st.Peers, k))
			}
		}
		if len(short) == 0 {
			break
		}
		if err := exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the nodes to find topic peers: %w: %s; see the node.log in each home", context.Cause(ctx), summarise(short))
		case <-t.C:
		}
	}
	if len(rec.Nodes) < 2 {
		return nil
	}
	// A probe per round: gossipsub grafts its meshes on heartbeats, so a
	// first one may miss a node that a later one reaches. A node that has
	// heard any probe since the first one went out has been reached: on a
	// machine this loaded (hundreds of nodes on a few cores) one probe may
	// take longer than a round to reach them all.
	base := clients.statuses(ctx)
	heard := make([]bool, len(rec.Nodes))
	heard[0] = true
	for {
		cl, err := clients.get(ctx, 0)
		if err == nil {
			callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = cl.Probe(callCtx, api.ProbeRequest{})
			cancel()
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("probe from %s: %w", rec.Nodes[0].Name, err)
		}
		round := time.Now().Add(3 * time.Second)
		for {
			for i, st := range clients.statuses(ctx) {
				switch {
				case heard[i] || st.err != nil:
				case base[i].err != nil:
					base[i] = st // a first answer is its baseline
				case st.RequestsSeen > base[i].RequestsSeen:
					heard[i] = true
				}
			}
			short = short[:0]
			for i, h := range heard {
				if !h {
					short = append(short, rec.Nodes[i].Name)
				}
			}
			if len(short) == 0 {
				return nil
			}
			if err := exited(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for a probe from %s to reach every node: %w: %d of %d have not heard one (%s); see the node.log in each home",
					rec.Nodes[0].Name, context.Cause(ctx), len(short), len(rec.Nodes)-1, summarise(short))
			case <-t.C:
			}
			if time.Now().After(round) {
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
