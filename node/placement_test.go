package node_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// Labels given to a running node take effect at once: a job constrained
// to them runs, one they miss is declined naming the constraint, and the
// job's record keeps its placement.
func TestLabelsOfARunningNodePlaceJobs(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{
		Nodes: 1, Wasm: sharedWasm,
		Offer:     capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: 2 * capability.GiB, Disk: capability.GiB},
		Configure: func(_ int, c *node.Config) { c.Orchestrator.Requester.BiddingWindow = time.Second },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := ln.Nodes[0]
	labels := orchestrator.Labels{"region": "eu-west", "tier": "gold"}
	res, err := n.Onboard(ctx, onboarding.Request{Labels: &labels, Benchmark: false}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Labels.String() != "region=eu-west,tier=gold" || n.Preferences().Labels.String() != "region=eu-west,tier=gold" {
		t.Fatalf("onboarded labels %s, bidding with %s", res.Labels, n.Preferences().Labels)
	}
	constrained := func(cs ...string) orchestrator.Submission {
		sub := helloJob("placed")
		sub.Job.ID = orchestrator.NewJobID()
		for _, s := range cs {
			c, err := orchestrator.ParseConstraint(s)
			if err != nil {
				t.Fatal(err)
			}
			sub.Job.Constraints = append(sub.Job.Constraints, c)
		}
		return sub
	}

	rec, err := n.SubmitJob(ctx, constrained("region in (eu-west,eu-north)", "tier=gold"), nil)
	if err != nil || rec.State != node.JobCompleted {
		t.Fatalf("a job the labels meet: %+v, %v", rec, err)
	}
	if len(rec.Constraints) != 2 || rec.Constraints[0].String() != "region in (eu-west,eu-north)" {
		t.Errorf("the record keeps constraints %v", rec.Constraints)
	}

	sub := constrained("region=us-east")
	rec, err = n.SubmitJob(ctx, sub, nil)
	if !errors.Is(err, orchestrator.ErrNoBids) || rec.State != node.JobFailed || !strings.Contains(rec.Error, "constraints region=us-east") {
		t.Fatalf("a job the labels miss: %+v, %v; want it failed with no bids, naming the constraint", rec, err)
	}
	poll.Until(t, time.Minute, "the decline to be recorded", func() bool { return n.DeclinedBid(sub.Job.ID) != "" })
	if why := n.DeclinedBid(sub.Job.ID); why != "constraint region=us-east not met (region=eu-west)" {
		t.Errorf("the provider declined %q, want the constraint named", why)
	}
}
