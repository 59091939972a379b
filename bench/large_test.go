package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestTwoHundredNodesRunFiftyJobs: a 200-node network in one process runs
// 50 jobs from five submitters on different nodes, and every one
// completes; a job's bid request reaches a few nodes near it, not the
// mesh. It needs a few GiB of memory and minutes of two cores, more than
// the race detector leaves the suite: .ci/run runs it on its own, without
// the race detector, with DMS_TEST_LARGE=1.
func TestTwoHundredNodesRunFiftyJobs(t *testing.T) {
	if os.Getenv("DMS_TEST_LARGE") == "" {
		t.Skip("a 200-node network in one process: set DMS_TEST_LARGE=1 to run it (.ci/run does, without the race detector)")
	}
	const nodes, jobs = 200, 50
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Nodes: nodes, Jobs: jobs, Concurrency: 5, FloorSamples: 3, Progress: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != jobs || rep.Failed != 0 {
		t.Fatalf("%d nodes: %d of %d jobs completed, %d failed (first error: %s)", nodes, rep.Completed, jobs, rep.Failed, rep.FirstError)
	}
	t.Logf("nodes reached per job: mean %.1f, min %d, max %d; %.1f jobs/s; CPU per job over the mesh %v", rep.Reach.Mean, rep.Reach.Min, rep.Reach.Max, rep.JobsPerSecond, rep.CPUPerJob)
	// Most jobs are asked of the handful nearest them; a few may widen
	// to everyone when bids are slow on a busy machine.
	if rep.Reach.Min > 40 || rep.Reach.Mean > nodes/2 {
		t.Fatalf("nodes reached per job: mean %.1f, min %d of %d: bid requests still reach the mesh, not the providers near the job", rep.Reach.Mean, rep.Reach.Min, nodes-1)
	}
}
