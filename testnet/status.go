package testnet

// Asking the node processes of a test network how they are, over their
// control sockets: `dms testnet status` and the readiness check.

import (
	"context"
	"sync"
	"time"

	"github.com/dms-project/dms/api"
)

// clients holds a control connection per node, dialled on first use.
type clients struct {
	nodes []Process
	mu    sync.Mutex
	cl    []*api.Client
}

func newClients(nodes []Process) *clients {
	return &clients{nodes: nodes, cl: make([]*api.Client, len(nodes))}
}

func (c *clients) get(ctx context.Context, i int) (*api.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cl[i] == nil {
		cl, err := api.Dial(ctx, c.nodes[i].Home)
		if err != nil {
			return nil, err
		}
		c.cl[i] = cl
	}
	return c.cl[i], nil
}

func (c *clients) drop(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cl[i] != nil {
		c.cl[i].Close()
		c.cl[i] = nil
	}
}

func (c *clients) close() {
	for i := range c.cl {
		c.drop(i)
	}
}

type nodeStatus struct {
	api.StatusResponse
	err error
}

// statuses asks every node for its status, a few at a time. Each call has
// its own short deadline rather than ctx's, so that the round that runs
// into ctx's end still reports who falls short, not a cancelled call.
func (c *clients) statuses(ctx context.Context) []nodeStatus {
	out := make([]nodeStatus, len(c.nodes))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			cl, err := c.get(callCtx, i)
			if err == nil {
				out[i].StatusResponse, err = cl.Status(callCtx)
				if err != nil {
					c.drop(i)
				}
			}
			out[i].err = err
		})
	}
	wg.Wait()
	return out
}

// NodeStatus is one line of `dms testnet status`. PID is the process
// running the node now; StartedPID, when set, is the one the test network
// started, which is gone (the node was restarted outside it).
type NodeStatus struct {
	Process
	StartedPID int    `json:"started_pid,omitempty"`
	Running    bool   `json:"running"`
	Peers      int    `json:"peers"`
	TopicPeers int    `json:"topic_peers"`
	Error      string `json:"error,omitempty"` // why the peers are unknown
}

// Status asks each node of rec for its peers, in parallel. A node is
// found by its home: the process the network started, else the one that
// holds the home's lock, else whichever answers on the home's control
// socket.
func Status(ctx context.Context, rec *Record) []NodeStatus {
	out := make([]NodeStatus, len(rec.Nodes))
	var wg sync.WaitGroup
	for i, n := range rec.Nodes {
		out[i] = NodeStatus{Process: n}
		wg.Go(func() {
			pid := Locate(n)
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			var r api.StatusResponse
			cl, dialErr := api.Dial(ctx, n.Home)
			err := dialErr
			if err == nil {
				r, err = cl.Status(ctx)
				cl.Close()
			}
			if pid == 0 && err == nil && r.PID > 0 && n.Container == "" {
				pid = r.PID // a system that cannot tell a lock's holder
			}
			if pid == 0 {
				return
			}
			out[i].Running = true
			if pid != n.PID {
				out[i].PID, out[i].StartedPID = pid, n.PID
			}
			switch {
			case dialErr != nil:
				out[i].Error = "not answering on its control socket"
			case err != nil:
				out[i].Error = err.Error()
			default:
				out[i].Peers, out[i].TopicPeers = r.Peers, r.TopicPeers
			}
		})
	}
	wg.Wait()
	return out
}
