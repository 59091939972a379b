package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/orchestrator"
)

// NewRegistry is a Prometheus registry with the Go runtime's and the
// process's collectors, for a node that is the only one in its process
// (dms run). Give it to Config.Metrics; in-process networks leave that nil
// and each node gets a bare registry of its own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// metrics are the node's own: counters it increments as jobs and
// allocations go, and gauges read from the ledger and the host at scrape
// time (so they cannot drift from the state they describe).
type metrics struct {
	jobsSubmitted   prometheus.Counter
	jobsEnded       *prometheus.CounterVec
	bidsWon         prometheus.Counter
	allocRunTime    *prometheus.HistogramVec
	submitToRunning prometheus.Histogram
	// What this node, as a provider, fetched from requesters and what it
	// took from its cache instead, by kind (module, inputs).
	blobFetchedBytes *prometheus.CounterVec
	blobCacheHits    *prometheus.CounterVec
	blobCacheBytes   *prometheus.CounterVec
}

// durationBuckets span a trivial job (milliseconds) to a long one (hours).
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400}

func (n *Node) registerMetrics(reg *prometheus.Registry) error {
	m := &metrics{
		jobsSubmitted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dms", Name: "jobs_submitted_total",
			Help: "Jobs this node submitted to the mesh, as their requester."}),
		jobsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dms", Name: "jobs_ended_total",
			Help: "Jobs this node submitted that ended, by final state (completed, failed, cancelled)."}, []string{"state"}),
		bidsWon: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dms", Name: "bids_won_total",
			Help: "Bids of this node that were invoked and accepted (allocations started)."}),
		allocRunTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "dms", Name: "allocation_run_seconds",
			Help: "Run time of the allocations this node ran for others, by final state.", Buckets: durationBuckets}, []string{"state"}),
		submitToRunning: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "dms", Name: "job_submit_to_running_seconds",
			Help: "At the requester, from submission to a provider accepting the job.", Buckets: durationBuckets}),
		blobFetchedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dms", Name: "blob_fetched_bytes_total",
			Help: "Bytes this node fetched from requesters to run their jobs, by kind (module: one over the inline limit; inputs)."}, []string{"kind"}),
		blobCacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dms", Name: "blob_cache_hits_total",
			Help: "Modules and inputs this node took from its cache instead of fetching them, by kind."}, []string{"kind"}),
		blobCacheBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dms", Name: "blob_cache_hit_bytes_total",
			Help: "Bytes this node took from its cache instead of fetching them, by kind."}, []string{"kind"}),
	}
	for _, s := range []string{string(JobCompleted), string(JobFailed), string(JobCancelled)} {
		m.jobsEnded.WithLabelValues(s) // every state shows, at 0 until it happens
	}
	for _, k := range []string{string(orchestrator.BlobModule), string(orchestrator.BlobInputs)} {
		m.blobFetchedBytes.WithLabelValues(k)
		m.blobCacheHits.WithLabelValues(k)
		m.blobCacheBytes.WithLabelValues(k)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "dms", Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dms", Name: name, Help: help}, f)
	}
	cols := []prometheus.Collector{m.jobsSubmitted, m.jobsEnded, m.bidsWon, m.allocRunTime, m.submitToRunning,
		m.blobFetchedBytes, m.blobCacheHits, m.blobCacheBytes,
		gauge("blob_cache_bytes", "Bytes of modules and inputs this node keeps in its cache.", func() float64 { return float64(n.blobs.store.Size()) }),
		counter("bids_placed_total", "Bids this node sent as a provider.", func() float64 { return float64(n.orch.Stats().BidsSent) }),
		counter("bids_received_total", "Bids that reached this node as a requester, taken or not.", func() float64 { return float64(n.orch.Stats().BidsReceived) }),
		counter("bid_requests_seen_total", "Bid requests this node heard as a provider.", func() float64 { return float64(n.orch.Stats().RequestsSeen) }),
		counter("requesters_throttled_total", "Times a requester came to hold far more of this provider's offer than it ran, and was refused bids for it (see docs/security.md, Standing).",
			func() float64 { return float64(n.orch.Stats().RequestersThrottled) }),
		counter("holds_displaced_total", "Unclaimed holds this provider dropped to make room for another requester's bid.",
			func() float64 { return float64(n.orch.Stats().HoldsDisplaced) }),
		gauge("peers", "Peers this node holds a connection to.", func() float64 { return float64(len(n.host.Peers())) }),
		gauge("topic_peers", "Peers sharing the bid-request topic with this node.", func() float64 { return float64(n.topicPeers()) }),
		gauge("onboarded", "1 when this node offers capacity to the mesh.", func() float64 {
			if n.Onboarded() {
				return 1
			}
			return 0
		}),
		gauge("allocations_running", "Allocations running on this node for others.", func() float64 {
			running := 0
			for _, a := range n.Allocations() {
				if !a.State.Final() {
					running++
				}
			}
			return float64(running)
		}),
		capacityCollector{n},
		counter("bid_request_signatures_verified_total", "Bid requests whose signature this node checked (those dropped for a rate are not).",
			func() float64 { return float64(n.orch.Stats().SignaturesVerified) }),
	}
	for _, r := range orchestrator.DropReasons() {
		cols = append(cols, prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "dms", Name: "bid_requests_dropped_total",
			Help: "Bid requests this node's topic validator dropped, by reason (peer_rate, relay_rate, requester_rate: over a rate, " +
				"before the signature was checked; stale: expired or replayed; invalid).",
			ConstLabels: prometheus.Labels{"reason": r.String()}},
			func() float64 { return float64(n.orch.Stats().RequestsDropped[r.String()]) }))
	}
	for _, c := range cols {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	n.metrics = m
	return nil
}

// capacityCollector reports the ledger per dimension and account from one
// consistent snapshot.
type capacityCollector struct{ n *Node }

var capacityDesc = prometheus.NewDesc("dms_capacity",
	"This node's capacity by dimension (cpu in cores, memory and disk in bytes, gpu in devices) and account "+
		"(registered: offered; held: for open bids; locked: by allocations; available: for new jobs).",
	[]string{"dimension", "account"}, nil)

var _ prometheus.Collector = capacityCollector{}

func (c capacityCollector) Describe(ch chan<- *prometheus.Desc) { ch <- capacityDesc }

func (c capacityCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.ledger.Snapshot()
	for account, v := range map[string]capability.Capability{"registered": s.Registered, "held": s.Held, "locked": s.Locked, "available": s.Available} {
		for dim, x := range map[string]float64{"cpu": v.CPU.Cores(), "memory": float64(v.Memory), "disk": float64(v.Disk), "gpu": float64(len(v.GPUs))} {
			ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, x, dim, account)
		}
	}
}

// Metrics is the registry the node reports to (Config.Metrics, or its own).
func (n *Node) Metrics() *prometheus.Registry { return n.registry }

func (m *metrics) jobEnded(state JobState) {
	if m != nil {
		m.jobsEnded.WithLabelValues(string(state)).Inc()
	}
}

func (m *metrics) jobRunning(submitted time.Time, at time.Time) {
	if m != nil {
		m.submitToRunning.Observe(at.Sub(submitted).Seconds())
	}
}

func (m *metrics) blobFetched(kind orchestrator.BlobKind, n int) {
	if m != nil {
		m.blobFetchedBytes.WithLabelValues(string(kind)).Add(float64(n))
	}
}

func (m *metrics) blobFromCache(kind orchestrator.BlobKind, n int) {
	if m != nil {
		m.blobCacheHits.WithLabelValues(string(kind)).Inc()
		m.blobCacheBytes.WithLabelValues(string(kind)).Add(float64(n))
	}
}
