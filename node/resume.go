package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/orchestrator"
)

// A job outlives its requester's process: the job book is on disk, the
// winner is written as soon as it is known, and the submission itself (the
// spec, its module and inputs) is kept beside the home until the job ends.
// A node that stops leaves its unfinished jobs as they stand (interrupt),
// and when it starts it follows each again (resumeJobs): a running one by
// watching its allocation anew (the provider replays it from the first
// event, and keeps an ended one's result and outputs for KeepResults), one
// that was still looking for a provider by submitting it again.

// reattachWithin is how long a restarted node keeps trying to reach the
// provider of a job it followed: long enough for the mesh to form again,
// short enough that a provider that is gone does not leave the job hanging
// (it is then submitted again, or fails saying so).
const reattachWithin = 2 * time.Minute

// resumeStep is what a restarted node does with an unfinished job.
type resumeStep int

const (
	resumeFollow resumeStep = iota + 1 // watch its allocation again
	resumeSubmit                       // submit it again from what was kept
	resumeGiveUp                       // neither can be done: it fails, saying why
)

// resumePlan decides how to take up a job the node stopped in the middle
// of. kept says whether its submission was kept on disk.
func resumePlan(rec JobRecord, kept bool) (resumeStep, string) {
	switch {
	case rec.State == JobRunning && rec.Provider != "" && rec.AllocationID != "" && rec.Replication == nil:
		return resumeFollow, ""
	case kept:
		return resumeSubmit, ""
	}
	return resumeGiveUp, fmt.Sprintf("the requesting node stopped while the job was %s, and its submission was not kept "+
		"to submit it again after the restart: submit it anew", rec.State)
}

// resumeJobs takes up, each in its own goroutine, the jobs the node
// stopped in the middle of, and removes submissions kept for jobs that
// have ended.
func (n *Node) resumeJobs() {
	unfinished := n.jobs.unfinished()
	keep := map[string]bool{}
	for _, rec := range unfinished {
		keep[rec.ID] = true
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.resumeJob(rec)
		}()
	}
	ents, _ := os.ReadDir(n.submissionsDir())
	for _, e := range ents {
		if !keep[e.Name()] {
			_ = os.RemoveAll(filepath.Join(n.submissionsDir(), e.Name()))
		}
	}
}

// resumeJob takes up one job and runs it to its end (or to the node's
// stopping again).
func (n *Node) resumeJob(rec JobRecord) {
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	sub, keptErr := n.keptSubmission(rec.ID)
	if keptErr != nil && !errors.Is(keptErr, os.ErrNotExist) {
		n.log.Warn("kept submission unreadable", "job", rec.ID, "err", keptErr)
	}
	kept := keptErr == nil
	step, why := resumePlan(rec, kept)
	progress := n.jobProgress(rec.Submitted, nil)
	again := func() (*orchestrator.Result, error) {
		last, _ := n.jobs.get(rec.ID)
		sub.FirstAttempt = lastAttempt(last) + 1
		return n.orch.Submit(ctx, sub, progress)
	}
	var (
		res *orchestrator.Result
		err error
	)
	switch step {
	case resumeFollow:
		n.log.Info("following a job again after a restart", "job", rec.ID, "provider", rec.Provider, "allocation", rec.AllocationID)
		n.jobs.resumed(ctx, rec.ID, fmt.Sprintf("this node started again: following allocation %s again", rec.AllocationID), cancel)
		res, err = n.orch.Reattach(ctx, rec.ID, rec.Provider, rec.AllocationID, lastAttempt(rec), reattachWithin, progress)
		if err == nil && kept {
			err = checkKeptSpec(res, sub)
		}
		switch {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, orchestrator.ErrProviderLost) && kept:
			// Lost as it would have been while we followed it: elsewhere.
			n.jobs.update(orchestrator.Progress{Kind: orchestrator.ProgressRetry, JobID: rec.ID, Attempt: lastAttempt(rec) + 1, Time: time.Now(), Message: err.Error()})
			res, err = again()
		default:
			err = fmt.Errorf("following the job again after this node restarted: %w", err)
		}
	case resumeSubmit:
		n.log.Info("submitting a job again after a restart", "job", rec.ID, "was", rec.State)
		n.jobs.resumed(ctx, rec.ID, fmt.Sprintf("this node started again: submitting the job again (it was %s)", rec.State), cancel)
		res, err = again()
	default:
		n.log.Warn("an unfinished job cannot be taken up after a restart", "job", rec.ID, "reason", why)
		err = errors.New(why)
	}
	_, _ = n.concludeJob(ctx, rec.ID, res, err)
}

// jobProgress is the progress callback of a job: it records each step and
// passes it on to progress (nil: nobody).
func (n *Node) jobProgress(submitted time.Time, progress func(orchestrator.Progress)) func(orchestrator.Progress) {
	return func(p orchestrator.Progress) {
		if p.Kind == orchestrator.ProgressAccepted {
			n.metrics.jobRunning(submitted, p.Time)
		}
		n.jobs.update(p)
		if progress != nil {
			progress(p)
		}
	}
}

// concludeJob ends a job with what its submission came to: its outputs are
// fetched and its record written as ended. A node that stops meanwhile
// ends nothing: the job is interrupted, and followed again at the next
// start (its provider keeps its result and outputs for a while).
func (n *Node) concludeJob(ctx context.Context, id string, res *orchestrator.Result, err error) (JobRecord, error) {
	var outs *JobOutputs
	if err == nil && res.Outputs != nil {
		outs = n.fetchOutputs(ctx, id, res.Outputs)
		err = checkOutputs(res, outs)
	}
	if n.ctx.Err() != nil && (err != nil || (outs != nil && outs.Error != "")) {
		rec := n.jobs.interrupt(context.Background(), id, "this node stopped: the job is taken up again when it starts")
		if rec == nil {
			return JobRecord{}, fmt.Errorf("job %s vanished from the job book", id)
		}
		n.log.Info("job interrupted by the node stopping: it is taken up again at the next start", "job", id, "state", rec.State, "provider", rec.Provider)
		return *rec, fmt.Errorf("job %s: %w: it is taken up again when the node starts", id, ErrStopping)
	}
	if outs != nil {
		n.jobs.setOutputs(context.Background(), id, outs)
	}
	final := n.jobs.finish(context.Background(), id, res, err)
	if final == nil {
		return JobRecord{}, fmt.Errorf("job %s vanished from the job book", id)
	}
	n.dropSubmission(id)
	n.metrics.jobEnded(final.State)
	attrs := []any{"job", final.ID, "state", final.State, "provider", final.Provider, "took", final.Ended.Sub(final.Submitted).Round(time.Millisecond).String()}
	if final.Result != nil {
		attrs = append(attrs, "exit", final.Result.ExitCode)
	}
	if final.Error != "" {
		attrs = append(attrs, "err", final.Error)
	}
	if final.State == JobCompleted {
		n.log.Info("job ended", attrs...)
	} else {
		n.log.Warn("job ended", attrs...)
	}
	return *final, err
}

// A kept submission is a directory named for its job: the spec without its
// module (job.json), the module and the inputs' archive as they were.
const (
	keptSpecFile   = "job.json"
	keptModuleFile = "module"
	keptInputsFile = "inputs.tar"
	// maxKeptSpec bounds job.json: a spec is small once its module is out
	// (args, environment and stdin within the invocation's limit).
	maxKeptSpec = orchestrator.MaxInvokeSize
)

type keptSpec struct {
	Job            orchestrator.JobSpec `json:"job"`
	MaxPrice       *float64             `json:"max_price,omitempty"`
	QueueTimeout   seconds.Duration     `json:"queue_timeout,omitempty"`
	RetryOnFailure int                  `json:"retry_on_failure,omitempty"`
	// Replication: a replicated job is submitted again whole, its
	// replicas compared anew (following one allocation would deliver
	// a result nobody compared).
	Replication orchestrator.Replication `json:"replication,omitzero"`
}

func (n *Node) submissionsDir() string { return filepath.Join(n.cfg.Home, "submissions") }

// keepSubmission writes sub beside the home until its job ends, so that a
// restart can submit it again. It is written whole or not at all.
func (n *Node) keepSubmission(sub orchestrator.Submission) (err error) {
	id := sub.Job.ID
	if id == "" || strings.ContainsAny(id, `/\.`) {
		return fmt.Errorf("job ID %q cannot name a directory", id)
	}
	dir := filepath.Join(n.submissionsDir(), id)
	tmp, err := os.MkdirTemp(n.submissionsDirMade(), id+".partial-")
	if err != nil {
		return fmt.Errorf("keep submission: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	spec := sub.Job
	spec.Module = nil
	b, err := json.Marshal(keptSpec{Job: spec, MaxPrice: sub.MaxPrice, QueueTimeout: seconds.Duration(sub.QueueTimeout), RetryOnFailure: sub.RetryOnFailure, Replication: sub.Replication})
	if err != nil {
		return err
	}
	files := map[string][]byte{keptSpecFile: b, keptModuleFile: sub.Job.Module, keptInputsFile: sub.Inputs}
	for name, data := range files {
		if len(data) == 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o600); err != nil {
			return fmt.Errorf("keep submission: %w", err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("keep submission: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("keep submission: %w", err)
	}
	return nil
}

// submissionsDirMade is submissionsDir, made if it is missing.
func (n *Node) submissionsDirMade() string {
	_ = os.MkdirAll(n.submissionsDir(), 0o700)
	return n.submissionsDir()
}

// keptSubmission reads back what keepSubmission wrote; os.ErrNotExist when
// nothing was kept.
func (n *Node) keptSubmission(id string) (orchestrator.Submission, error) {
	dir := filepath.Join(n.submissionsDir(), id)
	b, err := readBounded(filepath.Join(dir, keptSpecFile), maxKeptSpec)
	if err != nil {
		return orchestrator.Submission{}, err
	}
	var ks keptSpec
	if err := json.Unmarshal(b, &ks); err != nil {
		return orchestrator.Submission{}, fmt.Errorf("kept submission %s: %w", id, err)
	}
	if ks.Job.ID != id {
		return orchestrator.Submission{}, fmt.Errorf("kept submission %s names job %q", id, ks.Job.ID)
	}
	sub := orchestrator.Submission{Job: ks.Job, MaxPrice: ks.MaxPrice, QueueTimeout: ks.QueueTimeout.Std(), RetryOnFailure: ks.RetryOnFailure, Replication: ks.Replication}
	if sub.Job.Module, err = readBounded(filepath.Join(dir, keptModuleFile), orchestrator.MaxModuleSize); err != nil && !errors.Is(err, os.ErrNotExist) {
		return orchestrator.Submission{}, err
	}
	if sub.Inputs, err = readBounded(filepath.Join(dir, keptInputsFile), orchestrator.MaxInputSize); err != nil && !errors.Is(err, os.ErrNotExist) {
		return orchestrator.Submission{}, err
	}
	return sub, nil
}

// dropSubmission forgets a kept submission: its job has ended.
func (n *Node) dropSubmission(id string) {
	if id == "" || strings.ContainsAny(id, `/\.`) {
		return
	}
	if err := os.RemoveAll(filepath.Join(n.submissionsDir(), id)); err != nil {
		n.log.Warn("remove kept submission", "job", id, "err", err)
	}
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes", path, limit)
	}
	return b, nil
}
