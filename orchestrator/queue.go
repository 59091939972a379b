package orchestrator

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dms-project/dms/capability"
)

// Queueing: a job that finds no provider waits for one, asking again with
// backoff, up to its queue timeout; and the jobs of one requester that
// compete for the same capacity start in the order they were submitted.

const (
	// DefaultQueueTimeout is how long `dms job submit` lets a job wait
	// for a provider by default: long enough to outlast the jobs of a
	// busy network (a few minutes each) rather than fail at once, short
	// enough that a job nobody can ever run does not hang an attached
	// submit for long.
	DefaultQueueTimeout = 10 * time.Minute
	// MaxQueueTimeout bounds the wait: a queued job asks again every few
	// seconds, and its bid requests count attempts (at most 1000).
	MaxQueueTimeout = 24 * time.Hour
	// MaxRetryOnFailure bounds how often a job that ran and failed is run
	// again.
	MaxRetryOnFailure = 100
	// maxAttempt is the largest attempt a bid request may carry
	// (BidRequest.Validate).
	maxAttempt = 1000
)

// Validate checks what a submission asks of the requester beyond its job.
func (s Submission) Validate() error {
	var errs []error
	if s.QueueTimeout < 0 || s.QueueTimeout > MaxQueueTimeout {
		errs = append(errs, invalid("queue timeout %v: want 0 (do not wait for a provider) to %v", s.QueueTimeout, MaxQueueTimeout))
	}
	if s.RetryOnFailure < 0 || s.RetryOnFailure > MaxRetryOnFailure {
		errs = append(errs, invalid("retry on failure %d: want 0 to %d", s.RetryOnFailure, MaxRetryOnFailure))
	}
	if err := s.Replication.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// backoff is how long to wait before asking again after n fruitless tries
// (0: the first): base doubling up to ceiling, with jitter that spreads it
// over its upper half, so that the jobs of many requesters that found the
// network full at once do not all ask again at the same instant. rnd is
// uniform in [0, 1).
func backoff(n int, base, ceiling time.Duration, rnd float64) time.Duration {
	if base <= 0 || ceiling <= 0 {
		return 0
	}
	d := ceiling
	if n < 30 && base<<n < ceiling && base<<n > 0 {
		d = base << n
	}
	return d/2 + time.Duration(rnd*float64(d-d/2))
}

// lineJob is a job of this requester waiting for capacity, as the line
// orders it.
type lineJob struct {
	ID  string
	Seq uint64 // submission order
	// What it competes for.
	Requirements capability.Capability
	Executor     string
	Image        string
	// Placement is the job's constraints, canonical: a job held back by a
	// constraint nobody meets must not hold back one without it.
	Placement string
	// Why is why it waits (the last no-bid error), for the jobs behind it.
	Why string
}

// blocks reports whether an earlier waiting job keeps a later one from
// bidding ahead of it. It does when the later one competes for the same
// capacity and needs at least as much: whatever capacity frees up that
// would do for the later job would do for the earlier one, which came
// first. A later job that needs less, or something the earlier one does
// not (another executor or image), may go: it may fit where the earlier
// one cannot, and holding it back would gain the earlier one nothing.
func blocks(earlier, later lineJob) bool {
	return earlier.Seq < later.Seq && earlier.Executor == later.Executor && earlier.Image == later.Image &&
		earlier.Placement == later.Placement && earlier.Requirements.Fits(later.Requirements)
}

// firstBlocker returns the earliest waiting job that keeps j from bidding.
func firstBlocker(waiting []lineJob, j lineJob) (lineJob, bool) {
	var found lineJob
	ok := false
	for _, w := range waiting {
		if blocks(w, j) && (!ok || w.Seq < found.Seq) {
			found, ok = w, true
		}
	}
	return found, ok
}

// line holds this requester's jobs that wait for capacity: from their
// submission until bidding brings them bids, and again while a retry
// waits. It owns the submission order.
type line struct {
	mu      sync.Mutex
	seq     uint64
	waiting map[string]lineJob
	changed chan struct{} // closed and replaced on every change
}

func newLine() *line {
	return &line{waiting: map[string]lineJob{}, changed: make(chan struct{})}
}

// join puts a job at the end of the line and returns its place.
func (l *line) join(job JobSpec) lineJob {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	j := lineJob{ID: job.ID, Seq: l.seq, Requirements: job.Requirements, Executor: job.Executor, Image: job.Image, Placement: describeConstraints(job.Constraints)}
	l.waiting[j.ID] = j
	l.changedLocked()
	return j
}

// rejoin puts a job back in its old place, for a retry.
func (l *line) rejoin(j lineJob) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waiting[j.ID] = j
	l.changedLocked()
}

// leave takes a job out of the line: it has its bids, or has ended.
func (l *line) leave(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.waiting[id]; ok {
		delete(l.waiting, id)
		l.changedLocked()
	}
}

// setWhy records why a job waits for capacity (it found none), for those
// behind it to say.
func (l *line) setWhy(id, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if j, ok := l.waiting[id]; ok && j.Why != why {
		j.Why = why
		l.waiting[id] = j
		l.changedLocked()
	}
}

// blocker returns the job that keeps j from bidding, if any, and a channel
// closed when the line next changes.
func (l *line) blocker(j lineJob) (lineJob, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	waiting := make([]lineJob, 0, len(l.waiting))
	for _, w := range l.waiting {
		waiting = append(waiting, w)
	}
	b, ok := firstBlocker(waiting, j)
	return b, ok, l.changed
}

func (l *line) changedLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// queuedFor is the error of a job whose queue timeout passed.
func queuedFor(d time.Duration, why error) error {
	return fmt.Errorf("queued for %v and no provider took it: %w", d, why)
}
