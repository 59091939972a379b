package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dms-project/dms/executor"
)

func TestSupervisorRestartsUpToLimit(t *testing.T) {
	t.Parallel()
	s := Supervisor{Strategy: SupervisorStrategy{MaxRestarts: 2, Window: time.Minute}}
	calls, told := 0, 0
	_, err, stats := s.Run(context.Background(), func(context.Context) (executor.Result, error) {
		calls++
		return executor.Result{Duration: time.Millisecond}, errors.New("trap: unreachable")
	}, func(int, error) { told++ })
	if err == nil || calls != 3 || told != 2 {
		t.Fatalf("err=%v calls=%d told=%d, want an error after 3 calls and 2 restarts", err, calls, told)
	}
	if stats.Starts != 3 || stats.Restarts != 2 || stats.Failures != 3 || stats.RunTime.Std() != 3*time.Millisecond {
		t.Fatalf("stats %+v", stats)
	}
}

func TestSupervisorSucceedsAfterRestart(t *testing.T) {
	t.Parallel()
	s := Supervisor{Strategy: DefaultSupervisorStrategy()}
	s.Strategy.Backoff = 0
	calls := 0
	res, err, stats := s.Run(context.Background(), func(context.Context) (executor.Result, error) {
		calls++
		if calls == 1 {
			return executor.Result{}, errors.New("flaky")
		}
		return executor.Result{ExitCode: 0, PeakMemoryBytes: 42}, nil
	}, nil)
	if err != nil || res.PeakMemoryBytes != 42 || stats.Restarts != 1 || stats.PeakMemory != 42 {
		t.Fatalf("res=%+v err=%v stats=%+v", res, err, stats)
	}
}

func TestSupervisorDoesNotRestartFinalErrors(t *testing.T) {
	t.Parallel()
	for _, final := range []error{executor.ErrTimeout, executor.ErrMemoryLimit, executor.ErrCancelled, executor.ErrInvalidModule} {
		s := Supervisor{Strategy: DefaultSupervisorStrategy()}
		calls := 0
		_, err, _ := s.Run(context.Background(), func(context.Context) (executor.Result, error) {
			calls++
			return executor.Result{}, fmt.Errorf("run: %w", final)
		}, nil)
		if !errors.Is(err, final) || calls != 1 {
			t.Errorf("%v: err=%v calls=%d, want one call", final, err, calls)
		}
	}
}
