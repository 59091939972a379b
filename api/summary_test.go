package api_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

// A node from before the summary view answers GET /v1/jobs?view=summary
// with whole records: they decode into summaries equal to the ones a newer
// node makes, so dms job list shows the same table against either.
func TestWholeRecordsDecodeAsSummaries(t *testing.T) {
	t.Parallel()
	prov, err := peer.Decode("12D3KooWSaXvqA3pis13QsTwSyadQkHpAayyq8QRjDPBYuX9yXE2")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	recs := []node.JobRecord{
		{ID: "a1", Submitted: at, Ended: at.Add(time.Second), State: node.JobCompleted, Provider: prov,
			Bids:   []orchestrator.Bid{{JobID: "a1", Provider: prov, Requester: prov, Offered: capability.Capability{Memory: capability.GiB}}},
			Result: &orchestrator.Result{State: orchestrator.StateCompleted, ExitCode: 3, Reason: "exit status 3", Stdout: []byte("out")}},
		{ID: "b2", Submitted: at, State: node.JobQueued, QueuedSince: at, QueueReason: "no provider fits", Error: "e"},
	}
	b, err := json.Marshal(api.JobListResponse{Jobs: recs})
	if err != nil {
		t.Fatal(err)
	}
	var got api.JobSummaryListResponse
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if want := api.Summarise(r); !reflect.DeepEqual(got.Jobs[i], want) {
			t.Errorf("job %s: decoded %+v, want %+v", r.ID, got.Jobs[i], want)
		}
	}
	if got.Jobs[0].Provider != prov.String() || got.Jobs[0].Result.ExitCode != 3 {
		t.Errorf("the provider or exit code was lost: %+v", got.Jobs[0])
	}
}
