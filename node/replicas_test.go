package node_test

import (
	"context"
	"testing"

	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

// A job replicated on two providers completes when both return the same
// files: their outputs are compared by content, not by archive (which
// holds file times), and the record names both replicas and takes its
// outputs from the one delivered.
func TestReplicatedJobComparesOutputsAndKeepsEachReplica(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 3, 1000, nil)
	in := inputs(t, map[string]string{"inputs/a.txt": "alpha\n"})
	sub := filesJob(orchestrator.ExecutorWasm, in)
	sub.Replication = orchestrator.Replication{Replicas: 2}
	rec, err := nodes[1].SubmitJob(context.Background(), sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != node.JobCompleted || rec.Replication == nil || len(rec.Replicas) != 2 {
		t.Fatalf("job %s, replication %+v, replicas %+v", rec.State, rec.Replication, rec.Replicas)
	}
	a, b := rec.Replicas[0], rec.Replicas[1]
	if a.Provider == b.Provider || !a.Agrees || !b.Agrees || a.OutputsSHA256 == "" || a.OutputsSHA256 != b.OutputsSHA256 || a.OutputFiles != 2 {
		t.Fatalf("replicas %+v", rec.Replicas)
	}
	if rec.Provider != a.Provider && rec.Provider != b.Provider {
		t.Fatalf("the record names provider %s, not a replica's", rec.Provider)
	}
	checkOutputs(t, rec, map[string]string{"a.txt.upper": "ALPHA\n", "summary.txt": "file a.txt: 6 bytes\n1 files, 6 bytes\n"})
}
