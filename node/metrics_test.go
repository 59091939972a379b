package node_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

// metricValue is the value of the first sample of name whose labels
// include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("no metric %s %v", name, want)
	return 0
}

// The requester counts the job and its latency, the winner its bid and the
// allocation's run time; capacity gauges read the ledger; with a registry
// of its own a node also reports libp2p's and gossipsub's metrics.
func TestMetricsFollowAJob(t *testing.T) {
	t.Parallel()
	reg := node.NewRegistry()
	nodes := newNetwork(t, 3, 1000, func(i int, c *node.Config) {
		if i == 1 {
			c.Metrics = reg
		}
	})
	var provider *node.Node
	rec, err := nodes[1].SubmitJob(context.Background(), helloJob("metrics"), func(p orchestrator.Progress) {
		if p.Kind == orchestrator.ProgressAccepted {
			provider = byID(nodes, p)
		}
	})
	if err != nil || rec.State != node.JobCompleted || provider == nil {
		t.Fatalf("job %+v, %v", rec, err)
	}
	req := nodes[1].Metrics()
	for name, want := range map[string]float64{"dms_jobs_submitted_total": 1, "dms_job_submit_to_running_seconds": 1} {
		if got := metricValue(t, req, name, nil); got != want {
			t.Errorf("requester %s = %v, want %v", name, got, want)
		}
	}
	if got := metricValue(t, req, "dms_jobs_ended_total", map[string]string{"state": "completed"}); got != 1 {
		t.Errorf("requester jobs completed = %v, want 1", got)
	}
	if got := metricValue(t, req, "dms_bids_received_total", nil); got < 1 {
		t.Errorf("requester bids received = %v, want at least 1", got)
	}
	if got := metricValue(t, req, "dms_gossipsub_messages_validated_total", nil); got < 1 {
		t.Errorf("requester gossipsub messages validated = %v, want at least 1 (its own request)", got)
	}
	metricValue(t, req, "libp2p_rcmgr_streams", nil) // libp2p's own are there
	p := provider.Metrics()
	if got := metricValue(t, p, "dms_bids_won_total", nil); got != 1 {
		t.Errorf("provider bids won = %v, want 1", got)
	}
	if got := metricValue(t, p, "dms_allocation_run_seconds", map[string]string{"state": "completed"}); got != 1 {
		t.Errorf("provider allocations observed = %v, want 1", got)
	}
	if got := metricValue(t, p, "dms_capacity", map[string]string{"dimension": "cpu", "account": "registered"}); got != 1 {
		t.Errorf("provider registered cpu = %v, want 1 core", got)
	}
}
