package executor

import (
	"context"
	"sync"
)

// lifecycle is what every executor shares: once closed it takes no run, its
// close cancels the runs under way (through closeCtx) and waits for them.
type lifecycle struct {
	closeCtx    context.Context
	closeCancel context.CancelFunc

	closeMu sync.Mutex // guards closed
	closed  bool
	running sync.WaitGroup
}

func newLifecycle() lifecycle {
	ctx, cancel := context.WithCancel(context.Background())
	return lifecycle{closeCtx: ctx, closeCancel: cancel}
}

// enter admits a run, or says ErrClosed; every admitted run calls leave.
func (l *lifecycle) enter() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.running.Add(1)
	return nil
}

func (l *lifecycle) leave() { l.running.Done() }

// close shuts the executor to new runs, cancels those under way and waits
// for them until ctx ends. first is false when an earlier close did it all;
// err is ctx's when runs were still going.
func (l *lifecycle) close(ctx context.Context) (first bool, err error) {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return false, nil
	}
	l.closed = true
	l.closeMu.Unlock()
	l.closeCancel()
	done := make(chan struct{})
	go func() { l.running.Wait(); close(done) }()
	select {
	case <-done:
		return true, nil
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

func (l *lifecycle) isClosed() bool {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	return l.closed
}
