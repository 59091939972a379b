package testnet

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

func TestLocalNetworkRunsAJobFromANonBootstrapNode(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ln, err := StartLocal(ctx, LocalConfig{Nodes: 5, Requesters: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln.Nodes[1].Onboarded() || !ln.Nodes[0].Onboarded() {
		t.Fatalf("node 1 is the requester and offers nothing; the others offer")
	}
	sub := orchestrator.Submission{Job: orchestrator.JobSpec{
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: 128 * capability.MiB},
		Duration:     seconds.Duration(30 * time.Second), Executor: orchestrator.ExecutorWasm, Module: examples.HelloWasm, Args: []string{"localnet"},
	}}
	rec, err := ln.Nodes[1].SubmitJob(ctx, sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != node.JobCompleted || !strings.Contains(string(rec.Result.Stdout), "Hello from dms, localnet!") {
		t.Fatalf("job %s: %q", rec.State, rec.Result.Stdout)
	}
	if rec.Provider == ln.Nodes[1].ID() {
		t.Fatal("the requester ran its own job")
	}
}
