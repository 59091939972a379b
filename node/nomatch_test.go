package node

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/dms-project/dms/orchestrator"
)

// A job that found no bid keeps the requester's summary of why, for `dms
// job status` and its --json, and across a restart.
func TestJobWithNoBidKeepsWhyNothingMatched(t *testing.T) {
	ctx := context.Background()
	store := dssync.MutexWrap(ds.NewMapDatastore())
	j, err := newJobs(ctx, store, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := j.start(ctx, &JobRecord{ID: "job-nomatch-1", State: JobBidding}, func() {}); err != nil {
		t.Fatal(err)
	}
	why := orchestrator.NoMatch{Heard: 2, Peers: 2, Reasons: []orchestrator.ReasonCount{{Code: orchestrator.ReasonBusy, Text: "has 0 cores free now", Count: 2}}}
	err = fmt.Errorf("job job-nomatch-1: %w", &orchestrator.NoMatchError{NoMatch: why, Detail: "no provider bid"})
	rec := j.finish(ctx, "job-nomatch-1", nil, err)
	if rec == nil || rec.State != JobFailed || rec.NoMatch == nil || rec.NoMatch.String() != "2 providers heard it: 2 have 0 cores free now" {
		t.Fatalf("record %+v", rec)
	}
	again, err := newJobs(ctx, store, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	got, ok := again.get("job-nomatch-1")
	if !ok || got.NoMatch == nil || got.NoMatch.Heard != 2 || len(got.NoMatch.Reasons) != 1 {
		t.Fatalf("after a restart: %+v", got)
	}
}
