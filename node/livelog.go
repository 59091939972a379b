package node

import (
	"context"
	"sync"

	"github.com/dms-project/dms/orchestrator"
)

// liveLog is a running job's output as the requester receives it: followers
// (dms job logs -f) replay it from the start and then wait for more. It is
// bounded like the result the output ends up in.
type liveLog struct {
	mu      sync.Mutex
	events  []orchestrator.Event
	bytes   int
	changed chan struct{} // closed and replaced on every event
	done    bool
	// alloc and seq are the allocation and the next event number that the
	// log holds output up to: a provider replays every event to a watch
	// that follows the allocation again, and what is here already is not
	// added twice.
	alloc string
	seq   int
}

func newLiveLog() *liveLog { return &liveLog{changed: make(chan struct{})} }

func (l *liveLog) add(e orchestrator.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done || l.bytes+len(e.Data) > 2*orchestrator.MaxResultOutput {
		return
	}
	if e.AllocationID != "" {
		if e.AllocationID == l.alloc && e.Seq < l.seq {
			return // replayed
		}
		l.alloc, l.seq = e.AllocationID, e.Seq+1
	}
	l.bytes += len(e.Data)
	l.events = append(l.events, e)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *liveLog) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.done = true
		close(l.changed)
	}
}

func (l *liveLog) follow(ctx context.Context) <-chan orchestrator.Event {
	ch := make(chan orchestrator.Event, 16)
	go func() {
		defer close(ch)
		next := 0
		for {
			l.mu.Lock()
			pending, changed, done := l.events[next:], l.changed, l.done
			l.mu.Unlock()
			for _, e := range pending {
				select {
				case ch <- e:
				case <-ctx.Done():
					return
				}
				next++
			}
			if done && len(pending) == 0 {
				return
			}
			if len(pending) > 0 {
				continue // look again: more may have come meanwhile
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
