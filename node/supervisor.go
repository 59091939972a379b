package node

import (
	"context"
	"errors"
	"time"

	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/internal/seconds"
)

// SupervisorStrategy says when a failed allocation is started again.
type SupervisorStrategy struct {
	// MaxRestarts within Window; past that the allocation stops and reports.
	MaxRestarts int
	Window      time.Duration
	// Backoff is the pause before a restart, doubled after each.
	Backoff time.Duration
}

// DefaultSupervisorStrategy restarts twice within a minute.
func DefaultSupervisorStrategy() SupervisorStrategy {
	return SupervisorStrategy{MaxRestarts: 2, Window: time.Minute, Backoff: 100 * time.Millisecond}
}

// Statistics are what a supervisor saw of one allocation.
type Statistics struct {
	Starts     int              `json:"starts"`
	Restarts   int              `json:"restarts"`
	Failures   int              `json:"failures"`
	RunTime    seconds.Duration `json:"run_time"`
	PeakMemory uint64           `json:"peak_memory"`
}

// Supervisor runs a job under a strategy. A run fails when the executor
// broke (a trap, an internal error); a job that exits non-zero, or is stopped
// by its own limits or a cancel, ran as asked and is not restarted, since
// running it again would end the same way.
type Supervisor struct {
	Strategy SupervisorStrategy
}

// retryable reports whether a failed run may succeed when started again.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	for _, final := range []error{executor.ErrTimeout, executor.ErrMemoryLimit, executor.ErrCancelled,
		executor.ErrInvalidModule, executor.ErrInvalidSpec, executor.ErrNotAllowed, executor.ErrClosed} {
		if errors.Is(err, final) {
			return false
		}
	}
	return true
}

// Run calls run until it succeeds, fails for good, or the strategy's budget
// is spent. onRestart is told before each restart.
func (s Supervisor) Run(ctx context.Context, run func(context.Context) (executor.Result, error), onRestart func(n int, err error)) (executor.Result, error, Statistics) {
	var stats Statistics
	var restarts []time.Time
	backoff := s.Strategy.Backoff
	for {
		stats.Starts++
		res, err := run(ctx)
		stats.RunTime += seconds.Duration(res.Duration)
		stats.PeakMemory = max(stats.PeakMemory, res.PeakMemoryBytes)
		if err == nil {
			return res, nil, stats
		}
		stats.Failures++
		if !retryable(err) || ctx.Err() != nil {
			return res, err, stats
		}
		now := time.Now()
		kept := restarts[:0]
		for _, t := range restarts {
			if now.Sub(t) < s.Strategy.Window {
				kept = append(kept, t)
			}
		}
		restarts = kept
		if len(restarts) >= s.Strategy.MaxRestarts {
			return res, err, stats
		}
		restarts = append(restarts, now)
		stats.Restarts++
		if onRestart != nil {
			onRestart(stats.Restarts, err)
		}
		if backoff > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return res, err, stats
			}
			backoff *= 2
		}
	}
}
