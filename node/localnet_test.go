package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/orchestrator"
)

func TestLocalNetworkRunsAJobFromANonBootstrapNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := StartLocalNetwork(ctx, LocalNetworkConfig{Nodes: 5, Requesters: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sub := helloJob("localnet")
	sub.Job.Module = examples.HelloWasm
	rec, err := ln.Nodes[1].SubmitJob(ctx, sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != JobCompleted || !strings.Contains(string(rec.Result.Stdout), "Hello from dms, localnet!") {
		t.Fatalf("job %s: %q", rec.State, rec.Result.Stdout)
	}
	if rec.Provider == ln.Nodes[1].ID() {
		t.Fatal("the requester ran its own job")
	}
	_ = orchestrator.ExecutorWasm
}
