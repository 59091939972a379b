package node

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	stop := context.AfterFunc(n.ctx, cancel) // the node closing ends the job too
	defer stop()
	rec := &JobRecord{
		ID: sub.Job.ID, Submitted: time.Now(), State: JobBidding, Requirements: sub.Job.Requirements,
		Executor: sub.Job.Executor, Duration: sub.Job.Duration, Args: sub.Job.Args,
	}
	if err := n.jobs.start(ctx, rec, cancel); err != nil {
		return JobRecord{}, err
	}
	res, err := n.orch.Submit(ctx, sub, func(p orchestrator.Progress) {
		n.jobs.update(p)
		if progress != nil {
			progress(p)
		}
	})
	final := n.jobs.finish(context.Background(), sub.Job.ID, res, err)
	if final == nil {
		return JobRecord{}, fmt.Errorf("job %s vanished from the job book", sub.Job.ID)
	}
	if err != nil {
		return *final, err
	}
	return *final, nil
}

// StartJob submits a job in the background and returns its ID at once
// (`dms job submit --detach`).
func (n *Node) StartJob(sub orchestrator.Submission) (string, error) {
	if sub.Job.ID == "" {
		sub.Job.ID = orchestrator.NewJobID()
	}
	if n.ctx.Err() != nil {
		return "", errors.New("node is shutting down")
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

// Job returns a job this node submitted.
func (n *Node) Job(id string) (JobRecord, error) {
	rec, ok := n.jobs.get(id)
	if !ok {
		return JobRecord{}, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	return rec, nil
}

// Jobs lists the jobs this node submitted, oldest first, without output.
func (n *Node) Jobs() []JobRecord { return n.jobs.list() }

// CancelJob stops a job this node submitted: a running allocation is asked
// to stop (its result then says cancelled); a job still bidding is dropped.
func (n *Node) CancelJob(ctx context.Context, id string) error {
	rec, ok := n.jobs.get(id)
	if !ok {
		return fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if rec.Final() {
		return fmt.Errorf("job %s has already ended (%s)", id, rec.State)
	}
	if rec.State == JobRunning && rec.AllocationID != "" {
		if err := n.orch.Cancel(ctx, rec.Provider, rec.AllocationID); err == nil {
			return nil
		}
	}
	n.jobs.cancel(id)
	return nil
}
