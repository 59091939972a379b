package node

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/dms-project/dms/orchestrator"
)

// A job queued for long, its reason changing round after round, keeps its
// latest reason and when it started waiting, and still records the steps
// that follow.
func TestQueuedJobKeepsItsLatestReasonWithoutFillingItsSteps(t *testing.T) {
	ctx := context.Background()
	j, err := newJobs(ctx, dssync.MutexWrap(ds.NewMapDatastore()), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.start(ctx, &JobRecord{ID: "q1", Submitted: time.Now(), State: JobBidding}, func() {}); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	for i := range 2 * maxJobProgress {
		j.update(orchestrator.Progress{Kind: orchestrator.ProgressQueued, JobID: "q1", Time: since.Add(time.Duration(i) * time.Second), Message: fmt.Sprintf("reason %d", i)})
	}
	rec, _ := j.get("q1")
	if rec.State != JobQueued || !rec.QueuedSince.Equal(since) || rec.QueueReason != fmt.Sprintf("reason %d", 2*maxJobProgress-1) {
		t.Fatalf("state %s since %v reason %q: want queued since the first report, with the last reason", rec.State, rec.QueuedSince, rec.QueueReason)
	}
	j.update(orchestrator.Progress{Kind: orchestrator.ProgressAccepted, JobID: "q1", Time: time.Now(), Provider: "p", AllocationID: "a1"})
	rec, _ = j.get("q1")
	if rec.State != JobRunning || len(rec.Progress) != 2 || rec.Progress[1].Kind != orchestrator.ProgressAccepted {
		t.Fatalf("state %s, %d steps: want running with the queued step and the accepted one", rec.State, len(rec.Progress))
	}
}
