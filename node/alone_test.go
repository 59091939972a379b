package node_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// A node alone on its network, onboarded, takes its own job: gossip has
// nobody to carry the request, so the node bids for it itself, and the
// invocation and the allocation stream go to its own peer ID.
func TestLoneOnboardedNodeRunsItsOwnJob(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{
		Nodes: 1, Wasm: sharedWasm,
		Offer: capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: 2 * capability.GiB, Disk: capability.GiB},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := ln.Nodes[0]
	if n.Diagnostics().TopicPeers() != 0 {
		t.Fatalf("%d topic peers, want a lone node", n.Diagnostics().TopicPeers())
	}
	rec, err := n.SubmitJob(ctx, helloJob("alone"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != node.JobCompleted || rec.Provider != n.ID() || !strings.Contains(string(rec.Result.Stdout), "Hello from dms, alone!") {
		t.Fatalf("job %+v, want completed on the node itself", rec)
	}
	if len(n.LockedCapabilities()) != 0 {
		t.Fatalf("locks left after the job: %+v", n.LockedCapabilities())
	}
}

// A lone node that offers nothing cannot run a job: the error says it is
// alone and how to join a network.
func TestLoneRequesterSaysHowToJoin(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{Nodes: 1, Requesters: []int{0}, Wasm: sharedWasm,
		Configure: func(_ int, c *node.Config) { c.Orchestrator.Requester.BiddingWindow = 300 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rec, err := ln.Nodes[0].SubmitJob(ctx, helloJob(), nil)
	if !errors.Is(err, orchestrator.ErrNoBids) || rec.State != node.JobFailed {
		t.Fatalf("err=%v state=%s, want ErrNoBids", err, rec.State)
	}
	for _, want := range []string{"alone on network", "--bootstrap", "--swarm-key", "onboard"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
