package bench

import (
	"context"
	"testing"
	"time"
)

// TestSmoke runs a small bench end to end. It fails only if the bench
// itself fails (a node does not start, a job does not complete), never on
// timing: speed belongs in the report, not in assertions.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Nodes: 10, Jobs: 6, Concurrency: 2, FloorSamples: 5, Progress: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 6 || rep.Failed != 0 {
		t.Fatalf("completed %d, failed %d (%s)", rep.Completed, rep.Failed, rep.FirstError)
	}
	if rep.Floor.N+rep.FloorIncomplete != 5 || rep.SubmitToDone.N != 6 || rep.Join <= 0 || rep.HeapPerNode == 0 {
		t.Fatalf("report is missing figures: %+v", rep)
	}
	t.Logf("%+v", rep)
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(d)
	if p.P50.Std() != 50*time.Millisecond || p.P95.Std() != 95*time.Millisecond || p.P99.Std() != 99*time.Millisecond || p.N != 100 {
		t.Fatalf("percentiles %+v", p)
	}
	if (percentiles(nil) != Percentiles{}) {
		t.Fatal("empty input should give zero percentiles")
	}
}
