package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
)

func TestBackoffStartsSmallDoublesAndIsCapped(t *testing.T) {
	base, ceiling := 250*time.Millisecond, 2*time.Second
	for _, c := range []struct {
		n        int
		rnd      float64
		min, max time.Duration
	}{
		{0, 0, 125 * time.Millisecond, 125 * time.Millisecond},
		{0, 0.999, 125 * time.Millisecond, 250 * time.Millisecond},
		{1, 0.5, 250 * time.Millisecond, 500 * time.Millisecond},
		{2, 0.5, 500 * time.Millisecond, time.Second},
		{3, 0, time.Second, time.Second},
		{3, 0.999, time.Second, 2 * time.Second},
		{10, 0.999, time.Second, 2 * time.Second},
		{1000, 0.5, time.Second, 2 * time.Second}, // no overflow
	} {
		got := backoff(c.n, base, ceiling, c.rnd)
		if got < c.min || got > c.max {
			t.Errorf("backoff(%d, rnd %v) = %v, want %v to %v", c.n, c.rnd, got, c.min, c.max)
		}
	}
	if got := backoff(5, 0, time.Second, 0.5); got != 0 {
		t.Errorf("backoff with no base = %v, want 0", got)
	}
	// The jitter spreads two requesters that failed at once.
	if backoff(2, base, ceiling, 0.1) == backoff(2, base, ceiling, 0.9) {
		t.Error("backoff ignores its jitter")
	}
}

func lj(seq uint64, millicores uint64, image string) lineJob {
	return lineJob{ID: fmt.Sprintf("job-%d", seq), Seq: seq, Executor: ExecutorDocker, Image: image,
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: millicores}, Memory: 64 * capability.MiB}}
}

func TestFirstBlockerKeepsSubmissionOrderAmongCompetingJobs(t *testing.T) {
	for _, c := range []struct {
		name    string
		waiting []lineJob
		job     lineJob
		want    string // "" : may bid
	}{
		{"alone", nil, lj(1, 500, "a:1"), ""},
		{"same needs wait behind the earlier", []lineJob{lj(1, 500, "a:1")}, lj(2, 500, "a:1"), "job-1"},
		{"needing more waits too", []lineJob{lj(1, 500, "a:1")}, lj(2, 2000, "a:1"), "job-1"},
		{"needing less may go", []lineJob{lj(1, 2000, "a:1")}, lj(2, 500, "a:1"), ""},
		{"another image may go", []lineJob{lj(1, 500, "a:1")}, lj(2, 500, "b:1"), ""},
		{"other constraints may go", []lineJob{func() lineJob { j := lj(1, 500, "a:1"); j.Placement = "region=x"; return j }()}, lj(2, 500, "a:1"), ""},
		{"a later job never blocks an earlier", []lineJob{lj(3, 500, "a:1")}, lj(2, 500, "a:1"), ""},
		{"itself does not block", []lineJob{lj(2, 500, "a:1")}, lj(2, 500, "a:1"), ""},
		{"the earliest blocker is named", []lineJob{lj(4, 500, "a:1"), lj(1, 500, "a:1"), lj(3, 500, "a:1")}, lj(5, 500, "a:1"), "job-1"},
		{"a small head lets nothing larger pass", []lineJob{lj(1, 2000, "a:1"), lj(2, 250, "a:1")}, lj(3, 1000, "a:1"), "job-2"},
	} {
		got, ok := firstBlocker(c.waiting, c.job)
		switch {
		case c.want == "" && ok:
			t.Errorf("%s: blocked by %s, want free to bid", c.name, got.ID)
		case c.want != "" && (!ok || got.ID != c.want):
			t.Errorf("%s: blocker %q (%v), want %s", c.name, got.ID, ok, c.want)
		}
	}
	other := lj(2, 500, "")
	other.Executor = ExecutorWasm
	docker := lj(1, 500, "")
	if blocks(docker, other) {
		t.Error("a job for another executor is blocked")
	}
}

func TestLineWakesTheJobBehindWhenTheHeadLeaves(t *testing.T) {
	l := newLine()
	spec := func(id string) JobSpec {
		return JobSpec{ID: id, Executor: ExecutorWasm, Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}}}
	}
	head, next := l.join(spec("head")), l.join(spec("next"))
	l.setWhy("head", "no acceptable bids")
	b, blocked, changed := l.blocker(next)
	if !blocked || b.ID != "head" || b.Why != "no acceptable bids" {
		t.Fatalf("blocker of the second job: %+v %v, want head with its reason", b, blocked)
	}
	if _, blocked, _ := l.blocker(head); blocked {
		t.Fatal("the head is blocked")
	}
	l.leave("head")
	select {
	case <-changed:
	default:
		t.Fatal("leaving the line did not wake the jobs that wait")
	}
	if _, blocked, _ := l.blocker(next); blocked {
		t.Fatal("the second job is still blocked with the head gone")
	}
	l.rejoin(head) // a retry keeps its place
	if b, blocked, _ := l.blocker(next); !blocked || b.ID != "head" {
		t.Fatal("a rejoining job lost its place")
	}
}

func TestSubmissionValidateNamesWhatIsWrong(t *testing.T) {
	if err := (Submission{QueueTimeout: time.Minute, RetryOnFailure: 3}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sub  Submission
		want string
	}{
		{Submission{QueueTimeout: -time.Second}, "queue timeout"},
		{Submission{QueueTimeout: MaxQueueTimeout + time.Second}, "queue timeout"},
		{Submission{RetryOnFailure: -1}, "retry on failure"},
		{Submission{RetryOnFailure: MaxRetryOnFailure + 1}, "retry on failure"},
	} {
		if err := c.sub.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.sub, err, c.want)
		}
	}
}

// slotBackend runs its jobs until the test lets them end, so capacity is
// taken while they run and given back when they end.
type slotBackend struct {
	*fakeBackend
	exit int  // each job's exit code
	lose bool // end each allocation's stream with no result

	smu     sync.Mutex
	order   []string // job IDs in the order they were accepted
	running map[string]chan Event
	locks   map[string]capability.Capability
	invs    map[string]*Invocation // for the receipts
	auto    bool                   // end each job as soon as it starts
}

func newSlotBackend(cpu uint64) *slotBackend {
	return &slotBackend{fakeBackend: newFakeBackend(cpu), running: map[string]chan Event{}, locks: map[string]capability.Capability{}}
}

func (s *slotBackend) Accept(holdID string, inv *Invocation) (string, error) {
	s.fakeBackend.mu.Lock()
	h, ok := s.holds[holdID]
	if ok {
		delete(s.holds, holdID) // the hold becomes the allocation's lock
	}
	s.fakeBackend.mu.Unlock()
	if !ok {
		return "", errors.New("no such hold")
	}
	id := fmt.Sprintf("alloc-%s-%d", inv.Job.ID, time.Now().UnixNano())
	ch := make(chan Event, 4)
	ch <- Event{Kind: EventState, State: StateRunning, Time: time.Now()}
	s.smu.Lock()
	if s.invs == nil {
		s.invs = map[string]*Invocation{}
	}
	s.invs[id] = inv
	s.order = append(s.order, inv.Job.ID)
	s.running[id], s.locks[id] = ch, h.c
	auto := s.auto
	s.smu.Unlock()
	if auto || s.lose {
		s.end(id)
	}
	return id, nil
}

// end ends an allocation and gives its capacity back.
func (s *slotBackend) end(id string) {
	// One critical section moves the allocation from running to ended, so
	// that a watch in between never finds it in neither.
	s.smu.Lock()
	ch, c, inv := s.running[id], s.locks[id], s.invs[id]
	if ch == nil {
		s.smu.Unlock()
		return
	}
	delete(s.invs, id)
	delete(s.running, id)
	delete(s.locks, id)
	var ended []Event // what a later watch replays
	s.fakeBackend.mu.Lock()
	if !s.lose {
		res := &Result{State: StateCompleted, ExitCode: s.exit}
		res.Receipt = fakeReceipt(s.key, inv, id, nil, res)
		ended = append(ended, Event{Kind: EventResult, Result: res, Time: time.Now()})
	}
	s.allocs[id] = ended
	s.avail, _ = s.avail.Add(c)
	s.fakeBackend.mu.Unlock()
	s.smu.Unlock()
	for _, ev := range ended {
		ch <- ev
	}
	close(ch)
}

func (s *slotBackend) Watch(_ context.Context, id string, _ peer.ID) (<-chan Event, error) {
	s.smu.Lock()
	ch, ok := s.running[id]
	s.smu.Unlock()
	if ok {
		return ch, nil
	}
	return s.fakeBackend.Watch(context.Background(), id, "")
}

// endAll ends every allocation running now and returns how many.
func (s *slotBackend) endAll() int {
	s.smu.Lock()
	ids := make([]string, 0, len(s.running))
	for id := range s.running {
		ids = append(ids, id)
	}
	s.smu.Unlock()
	for _, id := range ids {
		s.end(id)
	}
	return len(ids)
}

func (s *slotBackend) accepted() []string {
	s.smu.Lock()
	defer s.smu.Unlock()
	return slices.Clone(s.order)
}

// slotMesh starts a requester that offers nothing and the given providers
// over one in-memory network.
func slotMesh(t *testing.T, providers ...*slotBackend) *Service {
	t.Helper()
	fn := newFakeNet()
	t.Cleanup(fn.Close)
	cfg := LocalConfig()
	var requester *Service
	backends := []Backend{&fakeBackend{holds: map[string]*fakeHold{}, allocs: map[string][]Event{}}}
	for _, p := range providers {
		backends = append(backends, p)
	}
	for i, b := range backends {
		key, id := testPeer(t)
		withKey(b, key)
		svc, err := NewService(fn.host(id), key, b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		if i == 0 {
			requester = svc
		}
	}
	return requester
}

// queueRecorder keeps each job's progress.
type queueRecorder struct {
	mu    sync.Mutex
	steps map[string][]Progress
}

func (q *queueRecorder) progress(p Progress) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.steps[p.JobID] = append(q.steps[p.JobID], p)
}

func (q *queueRecorder) of(id string, kind ProgressKind) []Progress {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Progress
	for _, p := range q.steps[id] {
		if p.Kind == kind {
			out = append(out, p)
		}
	}
	return out
}

func (q *queueRecorder) count(id string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.steps[id])
}

// Eight jobs against capacity for four: the four submitted first start
// first, the others wait queued (saying why) and start, in order, as
// capacity frees; all eight complete.
func TestEightJobsOnFourSlotsAllCompleteInSubmissionOrder(t *testing.T) {
	provider := newSlotBackend(2000)
	svc := slotMesh(t, provider)
	rec := &queueRecorder{steps: map[string][]Progress{}}
	type outcome struct {
		res *Result
		err error
	}
	var ids []string
	results := make(chan outcome, 8)
	for i := range 8 {
		sub := wasmJob(fmt.Sprint(i))
		sub.Job.ID = fmt.Sprintf("job-%d-%s", i, NewJobID()[:8])
		sub.QueueTimeout = 10 * time.Minute
		ids = append(ids, sub.Job.ID)
		go func() {
			res, err := svc.Submit(context.Background(), sub, rec.progress)
			results <- outcome{res, err}
		}()
		// Submitted one after the other: each is in line before the next.
		waitFor(t, "job "+sub.Job.ID+" to report its first step", func() bool { return rec.count(sub.Job.ID) > 0 })
	}
	waitFor(t, "four jobs to start", func() bool { return len(provider.accepted()) == 4 })
	for _, id := range ids[4:] {
		waitFor(t, "job "+id+" to be queued", func() bool { return len(rec.of(id, ProgressQueued)) > 0 })
	}
	if got := provider.accepted(); !slices.Equal(got, ids[:4]) {
		t.Fatalf("the jobs that started first: %v, want the first four submitted %v", got, ids[:4])
	}
	head := rec.of(ids[4], ProgressQueued)[0]
	if !strings.Contains(head.Message, ErrNoBids.Error()) || head.Time.IsZero() {
		t.Errorf("the first queued job says %q, want why (no acceptable bids)", head.Message)
	}
	behind := rec.of(ids[5], ProgressQueued)[0]
	if !strings.Contains(behind.Message, "waiting behind job "+ids[4][:12]) {
		t.Errorf("the second queued job says %q, want that it waits behind %s", behind.Message, ids[4])
	}
	provider.smu.Lock()
	running := len(provider.running)
	provider.smu.Unlock()
	if running != 4 {
		t.Fatalf("%d jobs running on capacity for four", running)
	}
	// Capacity frees as jobs end; the queued ones take it.
	done := 0
	waitFor(t, "all eight jobs to end", func() bool {
		provider.endAll()
		for {
			select {
			case o := <-results:
				if o.err != nil || o.res.State != StateCompleted {
					t.Fatalf("a job ended %+v, %v; want completed", o.res, o.err)
				}
				done++
				continue
			default:
			}
			break
		}
		return done == 8
	})
	if got := provider.accepted(); !slices.Equal(got, ids) {
		t.Fatalf("the jobs started in the order %v, want the order submitted %v", got, ids)
	}
}

func TestQueuedJobFailsAtItsQueueTimeoutWithTheReason(t *testing.T) {
	svc := slotMesh(t, newSlotBackend(1000))
	svc.cfg.BiddingWindow /= 4
	sub := wasmJob()
	sub.Job.Requirements.CPU.MilliCores = 64000 // fits nowhere
	sub.QueueTimeout = time.Second
	var queued []Progress
	_, err := svc.Submit(context.Background(), sub, func(p Progress) {
		if p.Kind == ProgressQueued {
			queued = append(queued, p)
		}
	})
	if !errors.Is(err, ErrNoBids) || !strings.Contains(err.Error(), "queued for 1s") || !strings.Contains(err.Error(), "cpu=64") {
		t.Fatalf("err = %v, want ErrNoBids saying it was queued for 1s and naming cpu=64", err)
	}
	if len(queued) == 0 {
		t.Fatal("the job never said it was queued")
	}
}

// A job that waits behind an earlier one that never gets a provider ends at
// its own queue timeout, saying what it waited behind.
func TestJobBehindAQueuedJobFailsAtItsQueueTimeoutNamingIt(t *testing.T) {
	svc := slotMesh(t, newSlotBackend(1000))
	svc.cfg.BiddingWindow /= 4
	head := wasmJob()
	head.Job.ID = "head-" + NewJobID()
	head.Job.Requirements.CPU.MilliCores = 32000
	head.QueueTimeout = 10 * time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	headDone := make(chan error, 1)
	queued := make(chan struct{})
	var once sync.Once
	go func() {
		_, err := svc.Submit(ctx, head, func(p Progress) {
			if p.Kind == ProgressQueued {
				once.Do(func() { close(queued) })
			}
		})
		headDone <- err
	}()
	<-queued
	next := wasmJob()
	next.Job.Requirements.CPU.MilliCores = 64000
	next.QueueTimeout = time.Second
	_, err := svc.Submit(context.Background(), next, nil)
	if !errors.Is(err, ErrNoBids) || !strings.Contains(err.Error(), "waiting behind job "+head.Job.ID[:12]) || !strings.Contains(err.Error(), "cpu=32") {
		t.Fatalf("err = %v, want ErrNoBids naming the job it waited behind and that job's reason", err)
	}
	cancel()
	if err := <-headDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("the head ended %v, want cancelled", err)
	}
}

func TestJobThatExitsNonZeroIsRetriedOnlyWhenAsked(t *testing.T) {
	provider := newSlotBackend(2000)
	provider.auto, provider.exit = true, 3
	svc := slotMesh(t, provider)

	res, err := svc.Submit(context.Background(), wasmJob("once"), nil)
	if err != nil || res.ExitCode != 3 {
		t.Fatalf("result %+v, %v; want exit code 3", res, err)
	}
	if n := len(provider.accepted()); n != 1 {
		t.Fatalf("a job that exited 3 ran %d times, want once: it is the job's failure", n)
	}

	sub := wasmJob("again")
	sub.RetryOnFailure = 2
	var retries []Progress
	res, err = svc.Submit(context.Background(), sub, func(p Progress) {
		if p.Kind == ProgressRetry {
			retries = append(retries, p)
		}
	})
	if err != nil || res.ExitCode != 3 {
		t.Fatalf("result %+v, %v; want exit code 3 after the retries", res, err)
	}
	if n := len(provider.accepted()) - 1; n != 3 || len(retries) != 2 {
		t.Fatalf("with --retry-on-failure 2 the job ran %d times with %d retries, want 3 runs", n, len(retries))
	}
	if !strings.Contains(retries[0].Message, "exit code 3") {
		t.Errorf("retry says %q, want the exit code", retries[0].Message)
	}
}

// A provider lost while running the job is not invoked in the next attempt,
// though it is the cheapest bidder: the job runs elsewhere.
func TestLostProviderIsNotInvokedInTheNextAttempt(t *testing.T) {
	lossy, good := newSlotBackend(2000), newSlotBackend(2000)
	lossy.lose = true
	good.auto = true
	good.price = capability.PriceInformation{PerCoreHour: 1}
	svc := slotMesh(t, lossy, good)
	var steps []ProgressKind
	res, err := svc.Submit(context.Background(), wasmJob("x"), func(p Progress) { steps = append(steps, p.Kind) })
	if err != nil || res.State != StateCompleted {
		t.Fatalf("result %+v, %v; want completed on the other provider", res, err)
	}
	if n := len(lossy.accepted()); n != 1 {
		t.Fatalf("the provider that lost the job was invoked %d times, want once", n)
	}
	if n := len(good.accepted()); n != 1 {
		t.Fatalf("the other provider ran the job %d times, want once", n)
	}
	if !slices.Contains(steps, ProgressRetry) {
		t.Fatalf("steps %v: no retry", steps)
	}
}

// A provider that only refused an invocation (its hold had lapsed) is left
// out while another bids, and asked again when it is the only one; one
// that lost the job is never asked again.
func TestAvoidingLeavesOutTheLostAlwaysAndTheRefusingWhenOthersBid(t *testing.T) {
	bid := func(p string) *SignedBid { return &SignedBid{Bid: Bid{Provider: peer.ID(p)}} }
	names := func(bs []*SignedBid) (out []string) {
		for _, b := range bs {
			out = append(out, string(b.Bid.Provider))
		}
		return out
	}
	cases := []struct {
		name       string
		bids       []string
		avoid      map[peer.ID]bool
		kept, drop string
	}{
		{"none avoided", []string{"a", "b"}, nil, "a b", ""},
		{"a refuser beside another", []string{"a", "b"}, map[peer.ID]bool{"a": false}, "b", "a"},
		{"a refuser alone is asked again", []string{"a"}, map[peer.ID]bool{"a": false}, "a", ""},
		{"a lost provider alone is not", []string{"a"}, map[peer.ID]bool{"a": true}, "", "a"},
		{"lost and refuser: the refuser", []string{"a", "b"}, map[peer.ID]bool{"a": true, "b": false}, "b", "a"},
	}
	for _, c := range cases {
		var bids []*SignedBid
		for _, p := range c.bids {
			bids = append(bids, bid(p))
		}
		kept, dropped := avoiding(bids, c.avoid)
		if got := strings.Join(names(kept), " "); got != c.kept {
			t.Errorf("%s: kept %q, want %q", c.name, got, c.kept)
		}
		if got := strings.Join(names(dropped), " "); got != c.drop {
			t.Errorf("%s: dropped %q, want %q", c.name, got, c.drop)
		}
	}
}
