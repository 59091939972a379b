package bench

import (
	"context"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// The mesh's page has every node's series, labelled by node, and its
// counters move as a job goes through.
func TestMeshGatherer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{Nodes: 2, Requesters: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g := MeshGatherer(ln.Nodes)
	value := func(name, node string) (float64, bool) {
		fams, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if l.GetName() == "node" && l.GetValue() == node {
						return m.GetCounter().GetValue(), true
					}
				}
			}
		}
		return 0, false
	}
	for _, n := range []string{"0", "1"} {
		if v, ok := value("dms_jobs_submitted_total", n); !ok || v != 0 {
			t.Fatalf("node %s: dms_jobs_submitted_total %v (found %v), want 0 before any job", n, v, ok)
		}
	}
	_, err = ln.Nodes[1].SubmitJob(ctx, orchestrator.Submission{Job: orchestrator.JobSpec{
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 100}, Memory: 16 * capability.MiB},
		Duration:     seconds.Duration(time.Minute), Executor: orchestrator.ExecutorWasm, Module: examples.TinyWasm,
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := value("dms_jobs_submitted_total", "1"); v != 1 {
		t.Errorf("requester's dms_jobs_submitted_total = %v after one job, want 1", v)
	}
	if v, _ := value("dms_bids_won_total", "0"); v != 1 {
		t.Errorf("provider's dms_bids_won_total = %v after one job, want 1", v)
	}
}
