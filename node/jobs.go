package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/orchestrator"
)

// JobState is where a job stands, as its requester sees it. (An
// allocation's state on its provider is an orchestrator.State.)
type JobState string

// Job states.
const (
	JobBidding   JobState = "bidding"
	JobRunning   JobState = "running"
	JobCompleted JobState = "completed"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
	// JobQueued: no provider took the job yet (or an earlier job of this
	// node waits for the same capacity); it asks again until its queue
	// timeout.
	JobQueued JobState = "queued"
)

// Steps the node adds to a job's progress: its requesting node stopped
// while the job was unfinished, and followed it again once started.
const (
	ProgressInterrupted orchestrator.ProgressKind = "interrupted"
	ProgressResumed     orchestrator.ProgressKind = "resumed"
)

// Final reports whether a job in state s has ended.
func (s JobState) Final() bool {
	return s == JobCompleted || s == JobFailed || s == JobCancelled
}

// MinJobIDPrefix is the shortest prefix of a job ID that FindJob resolves:
// `dms job list` shows 12 characters, and fewer than 4 would match by
// accident.
const MinJobIDPrefix = 4

// ErrAmbiguous: a job ID prefix matches more than one job.
var ErrAmbiguous = errors.New("ambiguous job ID")

// maxJobProgress bounds the progress kept per job; output is in the result.
const maxJobProgress = 256

// JobRecord is what a requester remembers of a job it submitted.
type JobRecord struct {
	ID           string                  `json:"id"`
	Submitted    time.Time               `json:"submitted"`
	Ended        time.Time               `json:"ended,omitzero"`
	State        JobState                `json:"state"`
	Requirements capability.Capability   `json:"requirements"`
	Executor     string                  `json:"executor"`
	Duration     seconds.Duration        `json:"duration"`
	Args         []string                `json:"args,omitempty"`
	Provider     peer.ID                 `json:"provider,omitempty"`
	AllocationID string                  `json:"allocation_id,omitempty"`
	Bids         []orchestrator.Bid      `json:"bids,omitempty"`
	Progress     []orchestrator.Progress `json:"progress,omitempty"`
	Result       *orchestrator.Result    `json:"result,omitempty"`
	Error        string                  `json:"error,omitempty"`
	// NoMatch says why no provider bid, when that is how the job failed.
	NoMatch *orchestrator.NoMatch `json:"no_match,omitempty"`
	// Image is a docker job's container image.
	Image string `json:"image,omitempty"`
	// Inputs are the files the job was given, at their paths in the job.
	Inputs []archive.File `json:"inputs,omitempty"`
	// Outputs are the files the job left in /outputs, as fetched from its
	// provider and kept under the node's outputs directory.
	Outputs *JobOutputs `json:"outputs,omitempty"`
	// Constraints and Prefer are the job's placement (dms job submit
	// --constraint, --prefer).
	Constraints []orchestrator.Constraint `json:"constraints,omitempty"`
	Prefer      []orchestrator.Constraint `json:"prefer,omitempty"`
	// QueuedSince is when the job last started waiting for a provider,
	// and QueueReason why (the last no-bid error); kept once it runs, to
	// say how long it waited.
	QueuedSince time.Time `json:"queued_since,omitzero"`
	QueueReason string    `json:"queue_reason,omitempty"`
	// Replication is what a replicated job asked for (dms job submit
	// --replicas), and Replicas its runs as compared: Provider is then the
	// one whose result and outputs were delivered.
	Replication *orchestrator.Replication `json:"replication,omitempty"`
	Replicas    []orchestrator.Replica    `json:"replicas,omitempty"`
	// Receipt is the provider's signed receipt (orchestrator.Receipt) as
	// it came with the result, the envelope's exact bytes: verified on
	// arrival, or kept as the evidence of a job failed for it.
	Receipt []byte `json:"receipt,omitempty"`
}

// JobOutputs are a job's output files as the requester keeps them.
type JobOutputs struct {
	Dir   string         `json:"dir"`
	Files []archive.File `json:"files"`
	// Error says why they could not be fetched (the job itself may have
	// completed).
	Error string `json:"error,omitempty"`
}

// Final reports whether the job has ended.
func (j JobRecord) Final() bool { return j.State.Final() }

// jobs is the requester's job book: in memory while running, written to
// the datastore when a job starts and when it ends so nothing is lost.
type jobs struct {
	store ds.Datastore
	log   *slog.Logger

	mu      sync.Mutex
	byID    map[string]*JobRecord
	cancels map[string]context.CancelFunc
	// ended is closed when the job ends: waiters wait on it, not a timer.
	ended map[string]chan struct{}
	// live holds a running job's output as it arrives, for followers.
	live map[string]*liveLog
}

// JobsPrefix is where the job book is kept in the datastore (dms doctor
// reads it in a home no node runs on).
const JobsPrefix = "/jobs"

var jobsPrefix = ds.NewKey(JobsPrefix)

func newJobs(ctx context.Context, store ds.Datastore, log *slog.Logger) (*jobs, error) {
	j := &jobs{store: store, log: log, byID: map[string]*JobRecord{}, cancels: map[string]context.CancelFunc{}, ended: map[string]chan struct{}{}, live: map[string]*liveLog{}}
	res, err := store.Query(ctx, query.Query{Prefix: jobsPrefix.String()})
	if err != nil {
		return nil, fmt.Errorf("load jobs: %w", err)
	}
	defer res.Close()
	for e := range res.Next() {
		if e.Error != nil {
			return nil, fmt.Errorf("load jobs: %w", e.Error)
		}
		var rec JobRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			return nil, fmt.Errorf("load job %s: %w", e.Key, err)
		}
		j.byID[rec.ID] = &rec
		if !rec.Final() {
			// The node stopped while the job was unfinished; the node
			// follows it again (resume.go), and waiters wait for that.
			j.ended[rec.ID] = make(chan struct{})
			j.live[rec.ID] = newLiveLog()
		}
	}
	return j, nil
}

// unfinished lists the jobs that have not ended, oldest first: at start,
// those the node stopped in the middle of.
func (j *jobs) unfinished() []JobRecord {
	var out []JobRecord
	for _, r := range j.list() {
		if rec, ok := j.get(r.ID); ok && !rec.Final() {
			out = append(out, rec)
		}
	}
	return out
}

// resumed records that the node follows a job again after a restart, and
// how to cancel it now.
func (j *jobs) resumed(ctx context.Context, id, how string, cancel context.CancelFunc) {
	j.mu.Lock()
	rec, ok := j.byID[id]
	if !ok {
		j.mu.Unlock()
		return
	}
	j.cancels[id] = cancel
	rec.Error = ""
	if len(rec.Progress) < maxJobProgress {
		rec.Progress = append(rec.Progress, orchestrator.Progress{Kind: ProgressResumed, JobID: id, Time: time.Now(), Provider: rec.Provider, AllocationID: rec.AllocationID, Message: how})
	}
	cp := *rec
	j.mu.Unlock()
	if err := j.save(ctx, &cp); err != nil {
		j.log.Error("job not written to disk", "job", id, "err", err)
	}
}

// interrupt records that the node stopped while the job was unfinished.
// The job keeps its state: it is not over (a running allocation goes on at
// its provider), and the node follows it again when it starts. Whoever
// waits on or follows it here is let go.
func (j *jobs) interrupt(ctx context.Context, id, why string) *JobRecord {
	j.mu.Lock()
	rec, ok := j.byID[id]
	if !ok {
		j.mu.Unlock()
		return nil
	}
	if len(rec.Progress) < maxJobProgress {
		rec.Progress = append(rec.Progress, orchestrator.Progress{Kind: ProgressInterrupted, JobID: id, Time: time.Now(), Provider: rec.Provider, AllocationID: rec.AllocationID, Message: why})
	}
	return j.letGoLocked(ctx, rec, "interrupted job not written to disk")
}

// letGoLocked ends what this run keeps for a job it no longer follows (its
// cancel, its waiters, its live output), unlocks, and writes the record,
// saying so with failed if that cannot be done.
func (j *jobs) letGoLocked(ctx context.Context, rec *JobRecord, failed string) *JobRecord {
	id := rec.ID
	delete(j.cancels, id)
	if ch, ok := j.ended[id]; ok {
		close(ch)
		delete(j.ended, id)
	}
	if l := j.live[id]; l != nil {
		l.end()
		delete(j.live, id)
	}
	cp := *rec
	j.mu.Unlock()
	if err := j.save(ctx, &cp); err != nil {
		j.log.Error(failed, "job", id, "err", err)
	}
	return &cp
}

// lastAttempt is the number of the job's latest attempt, by its progress.
func lastAttempt(rec JobRecord) int {
	n := 0
	for _, p := range rec.Progress {
		n = max(n, p.Attempt)
	}
	return n
}

// replayed reports whether rec already holds the step p of an allocation
// it follows again: a provider replays an allocation's events from the
// first to a requester that follows it anew.
func replayed(rec *JobRecord, p orchestrator.Progress) bool {
	if p.Kind != orchestrator.ProgressEvent || p.Event == nil {
		return false
	}
	for _, q := range rec.Progress {
		if q.Kind == orchestrator.ProgressEvent && q.Event != nil && q.AllocationID == p.AllocationID && q.Event.Seq == p.Event.Seq {
			return true
		}
	}
	return false
}

func (j *jobs) save(ctx context.Context, rec *JobRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := j.store.Put(ctx, jobsPrefix.ChildString(rec.ID), b); err != nil {
		return fmt.Errorf("save job %s: %w", rec.ID, err)
	}
	return nil
}

// start records a new job as bidding.
func (j *jobs) start(ctx context.Context, rec *JobRecord, cancel context.CancelFunc) error {
	j.mu.Lock()
	if _, dup := j.byID[rec.ID]; dup {
		j.mu.Unlock()
		return fmt.Errorf("job %s already exists", rec.ID)
	}
	j.byID[rec.ID] = rec
	j.cancels[rec.ID] = cancel
	j.ended[rec.ID] = make(chan struct{})
	j.live[rec.ID] = newLiveLog()
	cp := *rec
	j.mu.Unlock()
	return j.save(ctx, &cp)
}

// update applies one progress step to a job. The winner is written to
// disk at once: a node that restarts follows its allocation again.
func (j *jobs) update(p orchestrator.Progress) {
	j.mu.Lock()
	rec, ok := j.byID[p.JobID]
	if !ok {
		j.mu.Unlock()
		return
	}
	j.applyLocked(rec, p)
	if p.Kind != orchestrator.ProgressAccepted {
		j.mu.Unlock()
		return
	}
	cp := *rec
	j.mu.Unlock()
	if err := j.save(context.Background(), &cp); err != nil {
		j.log.Error("job's allocation not written to disk: a restart of this node will not follow it", "job", p.JobID, "err", err)
	}
}

func (j *jobs) applyLocked(rec *JobRecord, p orchestrator.Progress) {
	switch p.Kind {
	case orchestrator.ProgressBid:
		if p.Bid != nil {
			rec.Bids = append(rec.Bids, *p.Bid)
		}
	case orchestrator.ProgressAccepted:
		rec.State, rec.Provider, rec.AllocationID = JobRunning, p.Provider, p.AllocationID
	case orchestrator.ProgressQueued:
		if rec.State == JobQueued {
			// A new reason while it waits: a long wait must not fill the
			// steps kept, so the record keeps the latest.
			rec.QueueReason = p.Message
			return
		}
		rec.State, rec.QueuedSince, rec.QueueReason = JobQueued, p.Time, p.Message
	case orchestrator.ProgressReplicas:
		rec.Replicas = p.Replicas
		if p.Provider != "" {
			rec.Provider, rec.AllocationID = p.Provider, p.AllocationID
		}
	case orchestrator.ProgressRetry:
		rec.State, rec.Bids = JobBidding, nil
		if l := j.live[p.JobID]; l != nil {
			l.add(orchestrator.Event{Kind: orchestrator.EventState, State: orchestrator.StatePending, Time: p.Time,
				Message: "the job is submitted again (" + p.Message + "); its output starts over"})
		}
	case orchestrator.ProgressEvent:
		if e := p.Event; e != nil && (e.Kind == orchestrator.EventStdout || e.Kind == orchestrator.EventStderr) {
			if l := j.live[p.JobID]; l != nil {
				l.add(*e)
			}
		}
	}
	// Output is kept once, in the result; progress keeps the steps.
	if p.Kind != orchestrator.ProgressEvent || (p.Event != nil && p.Event.Kind == orchestrator.EventState && !replayed(rec, p)) {
		if len(rec.Progress) < maxJobProgress {
			rec.Progress = append(rec.Progress, p)
		}
	}
}

// finish records a job's end and writes it.
func (j *jobs) finish(ctx context.Context, id string, res *orchestrator.Result, err error) *JobRecord {
	j.mu.Lock()
	rec, ok := j.byID[id]
	if !ok {
		j.mu.Unlock()
		return nil
	}
	rec.Ended = time.Now()
	switch {
	case err != nil && (errors.Is(err, context.Canceled)):
		rec.State, rec.Error = JobCancelled, "cancelled by the requester"
	case err != nil:
		rec.State, rec.Error, rec.NoMatch = JobFailed, err.Error(), orchestrator.NoMatchOf(err)
	case res.State == orchestrator.StateCompleted:
		rec.State = JobCompleted
	case res.State == orchestrator.StateCancelled:
		rec.State = JobCancelled
	default:
		rec.State = JobFailed
		rec.Error = res.Reason
	}
	if res != nil && len(res.Receipt) > 0 {
		// One copy, in the record's own field.
		cp := *res
		rec.Receipt, cp.Receipt = res.Receipt, nil
		res = &cp
	}
	rec.Result = res
	// The result is still in memory for this run; if it cannot be written,
	// say that it will not survive a restart rather than drop that silently.
	return j.letGoLocked(ctx, rec, "job result not written to disk")
}

func (j *jobs) get(id string) (JobRecord, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	rec, ok := j.byID[id]
	if !ok {
		return JobRecord{}, false
	}
	return *rec, true
}

func (j *jobs) list() []JobRecord {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]JobRecord, 0, len(j.byID))
	for _, r := range j.byID {
		c := *r
		c.Progress, c.Receipt = nil, nil
		if c.Result != nil {
			res := *c.Result
			res.Stdout, res.Stderr = nil, nil
			c.Result = &res
		}
		out = append(out, c)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Submitted.Before(out[b].Submitted) })
	return out
}

func (j *jobs) cancel(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	c, ok := j.cancels[id]
	if ok {
		c()
	}
	return ok
}

// find resolves a full job ID or a unique prefix of at least
// MinJobIDPrefix characters.
func (j *jobs) find(id string) (JobRecord, error) {
	id = strings.TrimSpace(id)
	if rec, ok := j.get(id); ok {
		return rec, nil
	}
	if len(id) < MinJobIDPrefix {
		return JobRecord{}, &jobError{msg: fmt.Sprintf("no job %s on this node", id), err: ErrNotFound}
	}
	j.mu.Lock()
	var match []string
	for full := range j.byID {
		if strings.HasPrefix(full, id) {
			match = append(match, full)
		}
	}
	j.mu.Unlock()
	sort.Strings(match)
	switch len(match) {
	case 0:
		return JobRecord{}, &jobError{msg: fmt.Sprintf("no job %s on this node", id), err: ErrNotFound}
	case 1:
		if rec, ok := j.get(match[0]); ok {
			return rec, nil
		}
		return JobRecord{}, &jobError{msg: fmt.Sprintf("no job %s on this node", id), err: ErrNotFound}
	}
	return JobRecord{}, &jobError{
		msg: fmt.Sprintf("job ID %s is ambiguous: %d jobs start with it (%s, ...); give more of it", id, len(match), strings.Join(match[:2], ", ")),
		err: ErrAmbiguous,
	}
}

// wait returns the job's record once it has ended, or its record as it
// stands when ctx ends first.
func (j *jobs) wait(ctx context.Context, id string) (JobRecord, error) {
	j.mu.Lock()
	ch, running := j.ended[id]
	j.mu.Unlock()
	if running {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
	rec, ok := j.get(id)
	if !ok {
		return JobRecord{}, &jobError{msg: fmt.Sprintf("no job %s on this node", id), err: ErrNotFound}
	}
	return rec, nil
}

// jobError is a message with the sentinel callers branch on beneath it.
type jobError struct {
	msg string
	err error
}

func (e *jobError) Error() string { return e.msg }
func (e *jobError) Unwrap() error { return e.err }

// follow streams a running job's output from its start until it ends; for
// a job that has ended it returns a closed channel (its output is in its
// record).
func (j *jobs) follow(ctx context.Context, id string) <-chan orchestrator.Event {
	j.mu.Lock()
	l := j.live[id]
	j.mu.Unlock()
	if l == nil {
		ch := make(chan orchestrator.Event)
		close(ch)
		return ch
	}
	return l.follow(ctx)
}

// setOutputs records where a job's outputs were kept.
func (j *jobs) setOutputs(ctx context.Context, id string, o *JobOutputs) {
	j.mu.Lock()
	rec, ok := j.byID[id]
	if !ok {
		j.mu.Unlock()
		return
	}
	rec.Outputs = o
	cp := *rec
	j.mu.Unlock()
	if err := j.save(ctx, &cp); err != nil {
		j.log.Error("job outputs not written to disk", "job", id, "err", err)
	}
}
