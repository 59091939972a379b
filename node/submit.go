package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/orchestrator"
)

// SubmitJob runs a job on the mesh and waits for its result. progress, if
// not nil, sees every step as it happens and must not block. The job is
// recorded from the start, so `dms job status` sees it while it runs and
// after the node restarts.
func (n *Node) SubmitJob(ctx context.Context, sub orchestrator.Submission, progress func(orchestrator.Progress)) (JobRecord, error) {
	if sub.Job.ID == "" {
		sub.Job.ID = orchestrator.NewJobID()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The node closing ends the wait, not the job: concludeJob leaves it
	// interrupted, to be taken up at the next start.
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()
	rec := &JobRecord{
		ID: sub.Job.ID, Submitted: time.Now(), State: JobBidding, Requirements: sub.Job.Requirements,
		Executor: sub.Job.Executor, Image: sub.Job.Image, Duration: sub.Job.Duration, Args: sub.Job.Args,
		Constraints: sub.Job.Constraints, Prefer: sub.Job.Prefer,
	}
	if sub.Replication.Replicas > 1 {
		r := sub.Replication
		rec.Replication = &r
	}
	if len(sub.Inputs) > 0 {
		files, err := archive.List(sub.Inputs)
		if err != nil {
			return JobRecord{}, fmt.Errorf("inputs: %w", err)
		}
		rec.Inputs = files
	}
	if err := n.jobs.start(ctx, rec, cancel); err != nil {
		return JobRecord{}, err
	}
	if err := n.keepSubmission(sub); err != nil {
		// The job runs all the same; only a restart could not submit it again.
		n.log.Warn("submission not kept for a restart", "job", rec.ID, "err", err)
	}
	n.metrics.jobsSubmitted.Inc()
	n.log.Info("job submitted", "job", rec.ID, "executor", rec.Executor, "requirements", rec.Requirements.String(), "duration", rec.Duration)
	res, err := n.orch.Submit(ctx, sub, n.jobProgress(rec.Submitted, progress))
	return n.concludeJob(ctx, sub.Job.ID, res, err)
}

// StartJob submits a job in the background and returns its ID at once
// (`dms job submit --detach`).
func (n *Node) StartJob(sub orchestrator.Submission) (string, error) {
	if sub.Job.ID == "" {
		sub.Job.ID = orchestrator.NewJobID()
	}
	if n.ctx.Err() != nil {
		return "", ErrStopping
	}
	started := make(chan error, 1)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		once := false
		_, err := n.SubmitJob(n.ctx, sub, func(p orchestrator.Progress) {
			if !once {
				once = true
				started <- nil
			}
		})
		if !once {
			started <- err
		}
	}()
	if err := <-started; err != nil {
		return "", err
	}
	return sub.Job.ID, nil
}

// Job returns a job this node submitted, by its full ID.
func (n *Node) Job(id string) (JobRecord, error) {
	rec, ok := n.jobs.get(id)
	if !ok {
		return JobRecord{}, &jobError{msg: fmt.Sprintf("no job %s on this node", id), err: ErrNotFound}
	}
	return rec, nil
}

// FindJob returns a job this node submitted, by its full ID or a unique
// prefix of it (MinJobIDPrefix characters or more). It fails wrapping
// ErrNotFound or ErrAmbiguous.
func (n *Node) FindJob(idOrPrefix string) (JobRecord, error) { return n.jobs.find(idOrPrefix) }

// WaitJob waits until the job has ended, or ctx has, and returns its record
// as it then stands.
func (n *Node) WaitJob(ctx context.Context, id string) (JobRecord, error) {
	return n.jobs.wait(ctx, id)
}

// Jobs lists the jobs this node submitted, oldest first, without output
// or receipts.
func (n *Node) Jobs() []JobRecord { return n.jobs.list() }

// CancelJob stops a job this node submitted (named as FindJob takes it): a
// running allocation is asked to stop (its result then says cancelled); a
// job still bidding is dropped. It waits, up to ctx, for the job to end and
// returns its record: ended, or as it stands when ctx ran out.
func (n *Node) CancelJob(ctx context.Context, idOrPrefix string) (JobRecord, error) {
	rec, err := n.jobs.find(idOrPrefix)
	if err != nil {
		return rec, err
	}
	if rec.Final() {
		return rec, fmt.Errorf("job %s has already ended (%s): nothing to cancel", rec.ID, rec.State)
	}
	asked := false
	// A replicated job runs on several providers: ending the submission
	// stops every replica (the requester asks each provider to), where
	// cancelling one allocation would leave the others running and the
	// replicas disagreeing.
	if rec.State == JobRunning && rec.AllocationID != "" && rec.Replication == nil {
		asked = n.orch.Cancel(ctx, rec.Provider, rec.AllocationID) == nil
	}
	if !asked {
		n.jobs.cancel(rec.ID)
	}
	return n.jobs.wait(ctx, rec.ID)
}

// fetchOutputs gets a job's outputs from its provider and keeps them in
// OutputsDir/<job ID>. A failure is recorded with them, not returned: the
// job itself ran.
func (n *Node) fetchOutputs(ctx context.Context, jobID string, o *orchestrator.Outputs) *JobOutputs {
	out := &JobOutputs{Dir: filepath.Join(n.cfg.OutputsDir, jobID)}
	rec, _ := n.jobs.get(jobID)
	data, err := n.orch.Fetch(ctx, rec.Provider, o.Archive, orchestrator.MaxOutputSize)
	if err == nil {
		if err = os.RemoveAll(out.Dir); err == nil {
			out.Files, err = archive.Unpack(data, out.Dir, orchestrator.MaxOutputSize)
		}
	}
	if err != nil {
		out.Error = err.Error()
		n.log.Warn("job outputs not fetched", "job", jobID, "provider", rec.Provider, "err", err)
	}
	return out
}

// FollowJob streams a running job's output (stdout and stderr events, and
// a state event where it started over elsewhere) from its start until it
// ends, or ctx does. For a job that has ended the channel is closed at
// once: its output is in its record.
func (n *Node) FollowJob(ctx context.Context, id string) <-chan orchestrator.Event {
	return n.jobs.follow(ctx, id)
}

// checkOutputs checks the output files fetched against the receipt's
// list of them (the archive's hash was checked on arrival and by the
// fetch; this names the file that differs). Outputs that could not be
// fetched are not checked: their error is recorded with them.
func checkOutputs(res *orchestrator.Result, outs *JobOutputs) error {
	if outs == nil || outs.Error != "" || len(res.Receipt) == 0 {
		return nil
	}
	r, err := orchestrator.OpenReceipt(res.Receipt)
	if err != nil {
		return fmt.Errorf("%w: %v", orchestrator.ErrReceipt, err)
	}
	if r.FilesOmitted {
		return nil
	}
	if ms := orchestrator.CompareFiles("output", "fetched", r.Outputs, outs.Files); len(ms) > 0 {
		return &orchestrator.MismatchError{Mismatches: ms}
	}
	return nil
}

// checkKeptSpec checks the receipt of a job followed again after this node
// restarted against the submission it kept: the requester that invoked
// the job is gone, and with it what Reattach could check the spec by.
func checkKeptSpec(res *orchestrator.Result, sub orchestrator.Submission) error {
	r, err := orchestrator.OpenReceipt(res.Receipt)
	if err != nil {
		return fmt.Errorf("%w: %v", orchestrator.ErrReceipt, err)
	}
	if want := orchestrator.SubmittedSpecHash(sub.Job, sub.Inputs); r.SpecSHA256 != want {
		return &orchestrator.MismatchError{Mismatches: []orchestrator.Mismatch{{Field: "spec", Receipt: r.SpecSHA256, Found: want + " expected"}}}
	}
	return nil
}
