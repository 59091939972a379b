// Package api is the local control API of a running node (dms run): the
// request and response types, the server that routes them over a
// *node.Node on a unix socket in the node's home (mode 0600 inside a 0700
// directory, so only the home's owner reaches it), and a typed client that
// the command line, the test networks and the bench use.
//
// Reads are GETs; calls that change something are POSTs with a JSON body.
// Long calls (a job submission, onboarding with its first benchmark) stream
// one JSON object per line: events, then the result or the error.
package api

import (
	"encoding/json"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/internal/text"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

// Paths of the control API.
const (
	PathID          = "/v1/id"          // GET
	PathPeers       = "/v1/peers"       // GET
	PathProviders   = "/v1/providers"   // GET
	PathStatus      = "/v1/status"      // GET
	PathCapability  = "/v1/capability"  // GET, ?reserve=LIST
	PathOnboard     = "/v1/onboard"     // POST, streamed
	PathOffboard    = "/v1/offboard"    // POST
	PathBenchmark   = "/v1/benchmark"   // POST, streamed
	PathJobs        = "/v1/jobs"        // GET the list; POST submits, streamed
	PathAllocations = "/v1/allocations" // GET
	PathMetrics     = "/v1/metrics"     // GET, Prometheus text format
	PathHealth      = "/healthz"        // GET, for supervisors
	// PathProbe publishes a bid request nobody takes (test networks check
	// with it that gossip reaches every node: each counts it in its
	// status's requests_seen).
	PathProbe = "/v1/probe" // POST
	// A job's own paths: /v1/jobs/{id} (GET), /v1/jobs/{id}/logs (GET;
	// ?follow=true streams a running job's output), /v1/jobs/{id}/bids
	// (GET), /v1/jobs/{id}/outputs (GET, a tar archive),
	// /v1/jobs/{id}/cancel (POST).
)

// maxBody bounds a request or a reply: a job with its module (16 MiB at
// most) and its inputs (64 MiB at most), base64 in JSON, is the largest
// thing sent.
const maxBody = 128 << 20

// CancelWait bounds how long a cancel call waits for the job to end, so
// that `dms job cancel` can say "cancelled" rather than "asked to cancel".
const CancelWait = 10 * time.Second

// IDResponse says who a running node is and where it can be reached.
type IDResponse struct {
	PeerID  string   `json:"peer_id"`
	Network string   `json:"network"`
	Addrs   []string `json:"addrs"` // full, each ending in /p2p/<peer id>
	Home    string   `json:"home"`
	PID     int      `json:"pid"`
}

// PeersResponse lists the peers a node holds connections to.
type PeersResponse struct {
	Topic string          `json:"topic"` // the bid-request topic
	Peers []node.PeerInfo `json:"peers"`
}

// ProvidersResponse is what the node, as a requester, has seen each
// provider do: the avoided first, then the most trusted.
type ProvidersResponse struct {
	Providers []orchestrator.ProviderStanding `json:"providers"`
}

// StatusResponse is node.Status and where the node lives.
type StatusResponse struct {
	node.Status
	Home string `json:"home"`
	PID  int    `json:"pid"`
}

// CapabilityRequest asks for the node's accounts.
type CapabilityRequest struct {
	Reserve *resources.Reserve `json:"reserve,omitempty"` // nil: the node's configured reserve
}

// CapabilityResponse is the node's accounts.
type CapabilityResponse = onboarding.Accounts

// OnboardRequest is an offer, new or changed.
type OnboardRequest = onboarding.Request

// OnboardResponse is what was recorded.
type OnboardResponse = onboarding.Result

// OffboardRequest withdraws the offer; Force goes on despite allocations
// (a running node stops them first).
type OffboardRequest struct {
	Force bool `json:"force"`
}

// OffboardResponse says what offboarding did or what stood in its way.
type OffboardResponse struct {
	Home   string                    `json:"home"`
	Report onboarding.OffboardReport `json:"report"`
}

// BenchmarkRequest runs the benchmark for Duration (0: the default).
type BenchmarkRequest struct {
	Duration seconds.Duration `json:"duration,omitempty"`
}

// BenchmarkResponse is the stored result.
type BenchmarkResponse struct {
	Home       string                `json:"home"`
	Benchmark  resources.Benchmark   `json:"benchmark"`
	Registered capability.Capability `json:"registered"` // now carrying the score
}

// SubmitJobRequest is a job for the node to put to the mesh.
type SubmitJobRequest struct {
	Job      orchestrator.JobSpec `json:"job"`
	MaxPrice *float64             `json:"max_price,omitempty"`
	// Inputs is a tar archive of the job's input files (archive.Pack), at
	// their paths in the job.
	Inputs []byte `json:"inputs,omitempty"`
	// Detach returns the job's record as soon as the bid request is out;
	// the job goes on in the node and outlives the call.
	Detach bool `json:"detach,omitempty"`
	// QueueTimeout is how long the job waits for a provider when none
	// bids (0: it fails at once); dms job submit sends
	// orchestrator.DefaultQueueTimeout unless told otherwise.
	QueueTimeout seconds.Duration `json:"queue_timeout,omitempty"`
	// RetryOnFailure is how many times a job that ran and failed is run
	// again.
	RetryOnFailure int `json:"retry_on_failure,omitempty"`
	// Replication runs the job on several providers and delivers its
	// result only when they agree (dms job submit --replicas).
	Replication orchestrator.Replication `json:"replication,omitzero"`
}

// JobListResponse is the node's job book, oldest first, without output.
type JobListResponse struct {
	Jobs []node.JobRecord `json:"jobs"`
}

// ViewSummary, as GET PathJobs?view=summary, asks for JobSummaries instead
// of whole records. A node that predates it sends whole records, which
// decode into JobSummaryListResponse all the same (the keys are theirs).
const ViewSummary = "summary"

// JobSummaryListResponse is the job book as a table of it shows it.
type JobSummaryListResponse struct {
	Jobs []JobSummary `json:"jobs"`
}

// JobSummary is what dms job list shows of a job: a node.JobRecord
// without bids, progress, replicas, receipt or output, under the same JSON
// keys. A whole record carries every bid the job drew, so a list of them
// grows with the mesh; a summary does not, and is quick to decode for a
// command that pays for every field at each start. The provider stays
// the peer ID's text: a table needs no parsed peer.ID.
type JobSummary struct {
	ID          string         `json:"id"`
	Submitted   time.Time      `json:"submitted"`
	Ended       time.Time      `json:"ended,omitzero"`
	State       node.JobState  `json:"state"`
	Provider    string         `json:"provider,omitempty"`
	Result      *ResultSummary `json:"result,omitempty"`
	Error       string         `json:"error,omitempty"`
	QueuedSince time.Time      `json:"queued_since,omitzero"`
	QueueReason string         `json:"queue_reason,omitempty"`
}

// ResultSummary is what a JobSummary keeps of orchestrator.Result.
type ResultSummary struct {
	ExitCode int    `json:"exit_code"`
	Reason   string `json:"reason,omitempty"`
}

// Summarise cuts a job record down to its summary.
func Summarise(j node.JobRecord) JobSummary {
	s := JobSummary{ID: j.ID, Submitted: j.Submitted, Ended: j.Ended, State: j.State, Error: j.Error,
		QueuedSince: j.QueuedSince, QueueReason: j.QueueReason}
	if j.Provider != "" {
		s.Provider = j.Provider.String()
	}
	if j.Result != nil {
		s.Result = &ResultSummary{ExitCode: j.Result.ExitCode, Reason: j.Result.Reason}
	}
	return s
}

// JobLogsResponse is a job's output, as the provider sent it back.
type JobLogsResponse struct {
	ID              string        `json:"id"`
	State           node.JobState `json:"state"`
	Error           string        `json:"error,omitempty"`
	Stdout          text.Bytes    `json:"stdout,omitempty"`
	Stderr          text.Bytes    `json:"stderr,omitempty"`
	StdoutTruncated bool          `json:"stdout_truncated,omitempty"`
	StderrTruncated bool          `json:"stderr_truncated,omitempty"`
	// HasResult is false while the job runs and when it never ran (no
	// bids): then there is no output at all, not an empty one.
	HasResult bool `json:"has_result"`
}

// JobBidsResponse is what this node knows of the bids for a job: those it
// received as the job's requester (the last bidding round) and those it
// placed as a provider.
type JobBidsResponse struct {
	JobID     string             `json:"job_id"`
	Requester bool               `json:"requester"` // this node submitted the job
	Received  []orchestrator.Bid `json:"received,omitempty"`
	Winner    peer.ID            `json:"winner,omitempty"`
	Placed    []orchestrator.Bid `json:"placed,omitempty"`
	// Declined says why this node, as a provider, did not bid.
	Declined string `json:"declined,omitempty"`
}

// ProbeRequest names the probe's job ID ("" picks one).
type ProbeRequest struct {
	JobID string `json:"job_id,omitempty"`
}

// ProbeResponse says which job ID the probe was published under.
type ProbeResponse struct {
	JobID string `json:"job_id"`
}

// AllocationsResponse lists the allocations this node runs or ran.
type AllocationsResponse struct {
	Allocations []node.AllocationInfo `json:"allocations"`
}

// streamLine is one line of a streamed reply: an event, or the end with a
// result or an error.
type streamLine struct {
	Event  json.RawMessage `json:"event,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *wireError      `json:"error,omitempty"`
}
