package main

// The job endpoints of the control API: what `dms job ...` and
// `dms allocations` ask of the node running on a home. The node does the
// work; these handlers only resolve job IDs, shape replies and decide which
// failures are the caller's (an unknown job ID) and which are the node's.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

// Paths of the job endpoints. Every control call is a POST with a JSON body.
const (
	pathJobSubmit   = "/v1/jobs/submit"
	pathJobList     = "/v1/jobs/list"
	pathJobStatus   = "/v1/jobs/status"
	pathJobLogs     = "/v1/jobs/logs"
	pathJobCancel   = "/v1/jobs/cancel"
	pathJobBids     = "/v1/jobs/bids"
	pathAllocations = "/v1/allocations/list"
)

// minJobIDPrefix is the shortest prefix of a job ID that the endpoints
// resolve: `dms job list` shows 12 characters, and fewer than 4 would match
// by accident.
const minJobIDPrefix = 4

// cancelWait bounds how long a cancel call waits for the job to end, so
// that `dms job cancel` can say "cancelled" rather than "asked to cancel".
const cancelWait = 10 * time.Second

// SubmitJobRequest is a job for the node to put to the mesh.
type SubmitJobRequest struct {
	Job      orchestrator.JobSpec `json:"job"`
	MaxPrice *float64             `json:"max_price,omitempty"`
	// Detach returns the job's record as soon as the bid request is out;
	// the job goes on in the node and outlives the call.
	Detach bool `json:"detach,omitempty"`
}

// JobRequest names one job by its ID or a unique prefix of it.
type JobRequest struct {
	ID string `json:"id"`
}

// JobListResponse is the node's job book, oldest first, without output.
type JobListResponse struct {
	Jobs []node.JobRecord `json:"jobs"`
}

// JobLogsResponse is a job's output, as the provider sent it back.
type JobLogsResponse struct {
	ID              string `json:"id"`
	State           string `json:"state"`
	Error           string `json:"error,omitempty"`
	Stdout          []byte `json:"stdout,omitempty"`
	Stderr          []byte `json:"stderr,omitempty"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
	// HasResult is false while the job runs and when it never ran (no
	// bids): then there is no output at all, not an empty one.
	HasResult bool `json:"has_result"`
}

// JobBidsResponse is what this node knows of the bids for a job: those it
// received as the job's requester (the last bidding round) and those it
// placed as a provider. A provider forgets its bid once it is invoked or
// released, so Placed is mostly seen while bidding is open.
type JobBidsResponse struct {
	JobID     string             `json:"job_id"`
	Requester bool               `json:"requester"` // this node submitted the job
	Received  []orchestrator.Bid `json:"received,omitempty"`
	Winner    peer.ID            `json:"winner,omitempty"`
	Placed    []orchestrator.Bid `json:"placed,omitempty"`
}

// AllocationsResponse lists the allocations this node runs or ran.
type AllocationsResponse struct {
	Allocations []node.AllocationInfo `json:"allocations"`
}

// registerJobAPI adds the job endpoints to a running node's control server.
func registerJobAPI(s *controlServer, n *node.Node) {
	handleStream(s, "POST "+pathJobSubmit, func(ctx context.Context, req SubmitJobRequest, send func(orchestrator.Progress)) (*node.JobRecord, error) {
		return submitJob(ctx, n, req, send)
	})
	handle(s, "POST "+pathJobList, func(context.Context, struct{}) (JobListResponse, error) {
		return JobListResponse{Jobs: n.Jobs()}, nil
	})
	handle(s, "POST "+pathJobStatus, func(_ context.Context, req JobRequest) (node.JobRecord, error) {
		return findJob(n, req.ID)
	})
	handle(s, "POST "+pathJobLogs, func(_ context.Context, req JobRequest) (JobLogsResponse, error) {
		rec, err := findJob(n, req.ID)
		if err != nil {
			return JobLogsResponse{}, err
		}
		resp := JobLogsResponse{ID: rec.ID, State: rec.State, Error: rec.Error}
		if r := rec.Result; r != nil {
			resp.HasResult = true
			resp.Stdout, resp.Stderr = r.Stdout, r.Stderr
			resp.StdoutTruncated, resp.StderrTruncated = r.StdoutTruncated, r.StderrTruncated
		}
		return resp, nil
	})
	handle(s, "POST "+pathJobCancel, func(ctx context.Context, req JobRequest) (node.JobRecord, error) {
		return cancelJob(ctx, n, req.ID)
	})
	handle(s, "POST "+pathJobBids, func(_ context.Context, req JobRequest) (JobBidsResponse, error) {
		return jobBids(n, req.ID)
	})
	handle(s, "POST "+pathAllocations, func(context.Context, struct{}) (AllocationsResponse, error) {
		return AllocationsResponse{Allocations: n.Allocations()}, nil
	})
}

// submitJob runs a submission for the control API. Attached, the job is
// tied to the call: a caller that goes away (Ctrl-C on dms job submit)
// cancels it on its provider instead of leaving it to run unwatched.
// Output events are not forwarded: the output arrives whole, bounded, in the
// final record, and a progress line that a slow reader misses must never
// cost a piece of it.
func submitJob(ctx context.Context, n *node.Node, req SubmitJobRequest, send func(orchestrator.Progress)) (*node.JobRecord, error) {
	sub := orchestrator.Submission{Job: req.Job, MaxPrice: req.MaxPrice}
	if sub.Job.ID == "" {
		sub.Job.ID = orchestrator.NewJobID()
	}
	if req.Detach {
		id, err := n.StartJob(sub)
		if err != nil {
			return nil, err
		}
		rec, err := n.Job(id)
		if err != nil {
			return nil, err
		}
		return &rec, nil
	}
	jobCtx, stopJob := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJob()
	stop := context.AfterFunc(ctx, func() {
		cctx, cancel := context.WithTimeout(context.Background(), cancelWait)
		defer cancel()
		if err := n.CancelJob(cctx, sub.Job.ID); err != nil {
			stopJob() // not recorded yet, or the provider is unreachable
		}
	})
	defer stop()
	rec, err := n.SubmitJob(jobCtx, sub, func(p orchestrator.Progress) {
		if p.Kind == orchestrator.ProgressEvent && p.Event != nil {
			switch p.Event.Kind {
			case orchestrator.EventStdout, orchestrator.EventStderr:
				return
			}
		}
		send(p)
	})
	if rec.ID == "" { // refused before it was recorded (a duplicate ID)
		return nil, err
	}
	return &rec, err
}

// errUnknownJob is the error for a job ID this node has no record of. It
// is a usage error (exit 2): the ID is the caller's input, and scripts can
// tell "no such job" from "the node failed" (exit 1).
func errUnknownJob(id string) error {
	return &usageError{
		msg: fmt.Sprintf("no job %s on this node (dms job list shows the jobs submitted from it)", id),
		err: node.ErrNotFound,
	}
}

// findJob resolves a full job ID or a unique prefix of one.
func findJob(n *node.Node, id string) (node.JobRecord, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return node.JobRecord{}, usagef("a job ID is required (dms job list shows them)")
	}
	rec, err := n.Job(id)
	if err == nil {
		return rec, nil
	}
	if !errors.Is(err, node.ErrNotFound) {
		return node.JobRecord{}, err
	}
	full, err := matchJobID(n.Jobs(), id)
	if err != nil {
		return node.JobRecord{}, err
	}
	return n.Job(full)
}

// matchJobID finds the one job whose ID starts with prefix.
func matchJobID(jobs []node.JobRecord, prefix string) (string, error) {
	if len(prefix) < minJobIDPrefix {
		return "", errUnknownJob(prefix)
	}
	var match []string
	for _, j := range jobs {
		if strings.HasPrefix(j.ID, prefix) {
			match = append(match, j.ID)
		}
	}
	switch len(match) {
	case 0:
		return "", errUnknownJob(prefix)
	case 1:
		return match[0], nil
	}
	return "", usagef("job ID %s is ambiguous: %d jobs start with it (%s, ...); give more of it", prefix, len(match), strings.Join(match[:2], ", "))
}

// cancelJob asks the node to stop a job and waits, up to cancelWait, for
// it to end so the reply says how it ended.
func cancelJob(ctx context.Context, n *node.Node, id string) (node.JobRecord, error) {
	rec, err := findJob(n, id)
	if err != nil {
		return rec, err
	}
	if rec.Final() {
		return rec, fmt.Errorf("job %s has already ended (%s): nothing to cancel", rec.ID, rec.State)
	}
	if err := n.CancelJob(ctx, rec.ID); err != nil {
		return rec, err
	}
	ctx, cancel := context.WithTimeout(ctx, cancelWait)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if rec, err = n.Job(rec.ID); err != nil || rec.Final() {
			return rec, err
		}
		select {
		case <-ctx.Done():
			return rec, nil // asked; the record says where it stands
		case <-tick.C:
		}
	}
}

// jobBids gathers both sides' bids for a job. The job book resolves
// prefixes; a job this node only bid for must be named in full.
func jobBids(n *node.Node, id string) (JobBidsResponse, error) {
	id = strings.TrimSpace(id)
	resp := JobBidsResponse{JobID: id}
	rec, err := findJob(n, id)
	switch {
	case err == nil:
		resp.JobID, resp.Requester, resp.Received, resp.Winner = rec.ID, true, rec.Bids, rec.Provider
	case !errors.Is(err, node.ErrNotFound):
		return resp, err
	}
	resp.Placed = n.RegisteredBids(resp.JobID)
	if !resp.Requester && len(resp.Placed) == 0 {
		return resp, err // the unknown-job error
	}
	return resp, nil
}
