package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/orchestrator"
)

// outputChunk bounds one output event so it stays well under the
// allocation stream's frame limit.
const outputChunk = 64 << 10

// maxEvents bounds an allocation's event log: the output in it is already
// capped by the executor, this catches a job writing one byte at a time.
const maxEvents = 4096

// AllocationInfo is what the node reports about an allocation.
type AllocationInfo struct {
	ID           string                `json:"id"`
	JobID        string                `json:"job_id"`
	Requester    peer.ID               `json:"requester"`
	Executor     string                `json:"executor"`
	Capability   capability.Capability `json:"capability"`
	State        orchestrator.State    `json:"state"`
	Created      time.Time             `json:"created"`
	Started      time.Time             `json:"started,omitzero"`
	Ended        time.Time             `json:"ended,omitzero"`
	Result       *orchestrator.Result  `json:"result,omitempty"`
	Stats        Statistics            `json:"stats"`
	LastMessages []string              `json:"messages,omitempty"`
}

// Message is something routed to an allocation (RouteToAllocation).
type Message struct {
	// Kind is MessageCancel for now; more kinds come with long-running
	// services.
	Kind string  `json:"kind"`
	From peer.ID `json:"from,omitempty"`
	// Reason says why, for the allocation's result (a cancel by the
	// requester, a forced offboarding).
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time"`
}

// MessageCancel stops the allocation; its result says cancelled.
const MessageCancel = "cancel"

// allocation is one job running on this node: an actor whose run goroutine
// drives the executor under a supervisor, with an event log that watchers
// replay and follow. Its state is behind mu; the run goroutine is the only
// writer of the life-cycle fields.
type allocation struct {
	mu       sync.Mutex
	info     AllocationInfo
	events   []orchestrator.Event
	dropped  int
	changed  chan struct{} // closed and replaced on every new event
	done     chan struct{}
	inbox    chan Message
	spec     orchestrator.JobSpec
	finished bool
	// followers counts the requester's live watches (allocation streams
	// whose keepalives still come); unfollowedSince is when the last one
	// ended, or the allocation's creation while none has begun.
	followers       int
	unfollowedSince time.Time
}

func newAllocation(id string, inv *orchestrator.Invocation, requester peer.ID, now time.Time) *allocation {
	a := &allocation{
		info: AllocationInfo{
			ID: id, JobID: inv.Job.ID, Requester: requester, Executor: inv.Job.Executor,
			Capability: inv.Job.Requirements, State: orchestrator.StatePending, Created: now,
		},
		unfollowedSince: now,
		changed:         make(chan struct{}),
		done:            make(chan struct{}),
		inbox:           make(chan Message, 8),
		spec:            inv.Job,
	}
	a.emitLocked(orchestrator.Event{Kind: orchestrator.EventState, State: orchestrator.StatePending, Time: now})
	return a
}

// emitLocked appends an event and wakes the watchers. mu must be held.
func (a *allocation) emitLocked(e orchestrator.Event) {
	if len(a.events) >= maxEvents && e.Kind != orchestrator.EventResult && e.Kind != orchestrator.EventState {
		a.dropped++
		return
	}
	e.Seq = len(a.events)
	e.AllocationID = a.info.ID
	a.events = append(a.events, e)
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *allocation) emit(e orchestrator.Event) {
	a.mu.Lock()
	a.emitLocked(e)
	a.mu.Unlock()
}

func (a *allocation) setState(s orchestrator.State, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	a.info.State = s
	if s == orchestrator.StateRunning && a.info.Started.IsZero() {
		a.info.Started = now
	}
	if msg != "" {
		a.info.LastMessages = append(a.info.LastMessages, msg)
		if len(a.info.LastMessages) > 8 {
			a.info.LastMessages = a.info.LastMessages[1:]
		}
	}
	a.emitLocked(orchestrator.Event{Kind: orchestrator.EventState, State: s, Time: now, Message: msg})
}

// Info returns a copy of the allocation's record.
func (a *allocation) Info() AllocationInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	info := a.info
	info.LastMessages = append([]string(nil), a.info.LastMessages...)
	return info
}

// followed counts the allocation as watched by its requester for as long
// as ctx lives.
func (a *allocation) followed(ctx context.Context) {
	a.mu.Lock()
	a.followers++
	a.mu.Unlock()
	context.AfterFunc(ctx, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.followers--; a.followers == 0 {
			a.unfollowedSince = time.Now()
		}
	})
}

// unfollowedFor is how long nobody has watched the allocation (0 while
// someone does).
func (a *allocation) unfollowedFor(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.followers > 0 {
		return 0
	}
	return now.Sub(a.unfollowedSince)
}

// watch sends every event from the first to ch until the result, then
// closes ch. It stops early when ctx ends.
func (a *allocation) watch(ctx context.Context) <-chan orchestrator.Event {
	ch := make(chan orchestrator.Event, 16)
	go func() {
		defer close(ch)
		next := 0
		for {
			a.mu.Lock()
			pending := a.events[next:]
			changed := a.changed
			a.mu.Unlock()
			for _, e := range pending {
				select {
				case ch <- e:
				case <-ctx.Done():
					return
				}
				next++
				if e.Kind == orchestrator.EventResult {
					return
				}
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// output forwards executor output as events, cut into chunks, each with
// its offset in its stream.
type output struct {
	a                    *allocation
	mu                   sync.Mutex
	stdoutOff, stderrOff int64
}

func (o *output) Stdout(p []byte) { o.send(orchestrator.EventStdout, &o.stdoutOff, p) }
func (o *output) Stderr(p []byte) { o.send(orchestrator.EventStderr, &o.stderrOff, p) }

func (o *output) send(kind orchestrator.EventKind, off *int64, p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(p) > 0 {
		n := min(len(p), outputChunk)
		o.a.emit(orchestrator.Event{Kind: kind, Time: time.Now(), Data: p[:n], Offset: *off})
		*off += int64(n)
		p = p[n:]
	}
}

var _ executor.Output = (*output)(nil)

// work is what an allocation runs, in three steps: stage fetches and lays
// out its files and says which executor runs which spec; collect packs what
// the job left in /outputs into the result; cleanup removes its files.
//
// The allocation's receipt starts as what the invocation says (receipt)
// and is completed by run with how it went; seal adds the files and signs
// it (nil, or no bytes: none).
type work struct {
	stage   func(ctx context.Context) (executor.Executor, executor.Spec, error)
	collect func(res *orchestrator.Result)
	cleanup func()
	receipt orchestrator.Receipt
	seal    func(r *orchestrator.Receipt) []byte
}

// run drives the allocation to its end under the supervisor. finish is
// called exactly once with the result, before watchers see it, so that the
// node can release the lock first.
//
// An allocation that nobody follows for abandonAfter is cancelled: its
// requester is gone (killed, cut off, or it moved on), and the job would
// run for nobody.
func (a *allocation) run(ctx context.Context, w work, sup Supervisor, abandonAfter time.Duration, finish func(*orchestrator.Result, Statistics)) {
	defer close(a.done)
	if w.cleanup != nil {
		defer w.cleanup()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cancelReason atomic.Pointer[string]
	check := time.NewTicker(max(abandonAfter/4, 10*time.Millisecond))
	go func() {
		defer check.Stop()
		for {
			select {
			case m := <-a.inbox:
				if m.Kind == MessageCancel {
					cancelReason.Store(&m.Reason)
					cancel()
				}
			case now := <-check.C:
				if d := a.unfollowedFor(now); d >= abandonAfter {
					why := fmt.Sprintf("abandoned: its requester stopped following it %v ago", d.Round(100*time.Millisecond))
					cancelReason.Store(&why)
					cancel()
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		res   executor.Result
		err   error
		stats Statistics
		spec  executor.Spec
	)
	ex, spec, err := w.stage(ctx)
	if err == nil {
		a.setState(orchestrator.StateRunning, "")
		out := &output{a: a}
		res, err, stats = sup.Run(ctx, func(ctx context.Context) (executor.Result, error) {
			return ex.Run(ctx, spec, out)
		}, func(n int, err error) {
			a.setState(orchestrator.StateRunning, fmt.Sprintf("restart %d after: %v", n, err))
		})
	} else if ctx.Err() != nil {
		err = fmt.Errorf("%w: while its files were fetched", executor.ErrCancelled)
	} else {
		res.ExitCode = -1
		err = fmt.Errorf("preparing the job's files: %w", err)
	}
	result := &orchestrator.Result{
		State: orchestrator.StateCompleted, ExitCode: res.ExitCode, Duration: seconds.Duration(res.Duration),
		StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
		OutputLimit: spec.MaxOutput, Reason: res.Reason, Restarts: stats.Restarts,
	}
	switch {
	case errors.Is(err, executor.ErrCancelled):
		result.State = orchestrator.StateCancelled
		if r := cancelReason.Load(); r != nil && *r != "" {
			result.Reason = *r
		}
	case err != nil:
		result.State = orchestrator.StateFailed
		result.Reason = failureReason(err, a.spec.Duration.Std())
	}
	if w.collect != nil && result.State != orchestrator.StateCancelled {
		w.collect(result)
	}
	ended := time.Now()
	if w.seal != nil {
		r := a.receipt(w.receipt, result, ended)
		result.Receipt = w.seal(&r)
	}
	finish(result, stats)
	a.mu.Lock()
	a.info.State = result.State
	a.info.Ended = ended
	a.info.Result = result
	a.info.Stats = stats
	a.finished = true
	a.emitLocked(orchestrator.Event{Kind: orchestrator.EventState, State: result.State, Time: a.info.Ended, Message: result.Reason})
	a.emitLocked(orchestrator.Event{Kind: orchestrator.EventResult, Time: a.info.Ended, Result: result})
	a.mu.Unlock()
}

// receipt completes base with how the allocation went. Its stdout and
// stderr are hashed as the event log holds them, which is what every watch
// replays to the requester.
func (a *allocation) receipt(base orchestrator.Receipt, res *orchestrator.Result, ended time.Time) orchestrator.Receipt {
	a.mu.Lock()
	defer a.mu.Unlock()
	stdout, stderr := sha256.New(), sha256.New()
	for _, e := range a.events {
		switch e.Kind {
		case orchestrator.EventStdout:
			stdout.Write(e.Data)
			base.StdoutSize += int64(len(e.Data))
		case orchestrator.EventStderr:
			stderr.Write(e.Data)
			base.StderrSize += int64(len(e.Data))
		}
	}
	base.AllocationID = a.info.ID
	base.StdoutSHA256, base.StderrSHA256 = hex.EncodeToString(stdout.Sum(nil)), hex.EncodeToString(stderr.Sum(nil))
	base.State, base.ExitCode = res.State, res.ExitCode
	base.Started, base.Ended = a.info.Started, ended
	base.Duration, base.Restarts = res.Duration, res.Restarts
	if res.Outputs != nil {
		base.OutputsSHA256 = res.Outputs.Archive.SHA256
	}
	return base
}

func (a *allocation) id() string { return a.info.ID } // set once, at creation

func (a *allocation) isFinished() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.finished
}

// route delivers a message to the allocation, or says why it cannot.
func (a *allocation) route(m Message) error {
	a.mu.Lock()
	finished := a.finished
	a.mu.Unlock()
	if finished {
		return fmt.Errorf("allocation %s has already ended", a.info.ID)
	}
	select {
	case a.inbox <- m:
		return nil
	default:
		return fmt.Errorf("allocation %s is busy: inbox full", a.info.ID)
	}
}

// failureReason says why a run that did not end by itself failed. A job
// stopped at the duration it asked for says so, naming it: its exit code
// (-1) says nothing.
func failureReason(err error, duration time.Duration) string {
	if errors.Is(err, executor.ErrTimeout) {
		return fmt.Sprintf("stopped at its duration (%s)", capability.FormatDuration(duration))
	}
	return err.Error()
}
