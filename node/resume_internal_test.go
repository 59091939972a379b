package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/orchestrator"
)

func testPeer(t *testing.T) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestResumePlan(t *testing.T) {
	t.Parallel()
	running := JobRecord{ID: "job-1", State: JobRunning, Provider: testPeer(t), AllocationID: "alloc-1"}
	noAlloc := running
	noAlloc.AllocationID = ""
	bidding := JobRecord{ID: "job-2", State: JobBidding}
	replicated := running
	replicated.Replication = &orchestrator.Replication{Replicas: 3}
	for _, c := range []struct {
		name string
		rec  JobRecord
		kept bool
		want resumeStep
	}{
		{"running with its allocation: followed again", running, false, resumeFollow},
		{"running with its allocation, kept too: still followed, not run twice", running, true, resumeFollow},
		{"bidding, kept: submitted again", bidding, true, resumeSubmit},
		{"bidding, not kept: gives up", bidding, false, resumeGiveUp},
		{"running, allocation not recorded, kept: submitted again", noAlloc, true, resumeSubmit},
		{"running, allocation not recorded, not kept: gives up", noAlloc, false, resumeGiveUp},
		{"replicated, kept: submitted again whole, not one replica followed", replicated, true, resumeSubmit},
		{"replicated, not kept: gives up", replicated, false, resumeGiveUp},
	} {
		got, why := resumePlan(c.rec, c.kept)
		if got != c.want {
			t.Errorf("%s: step %d, want %d", c.name, got, c.want)
		}
		if (got == resumeGiveUp) != (why != "") {
			t.Errorf("%s: reason %q for step %d", c.name, why, got)
		}
	}
	if _, why := resumePlan(bidding, false); why != "the requesting node stopped while the job was bidding, and its submission was not kept to submit it again after the restart: submit it anew" {
		t.Errorf("reason %q", why)
	}
}

func TestToForget(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, c := range []struct {
		name  string
		ended []time.Time
		keep  int
		want  int
	}{
		{"within the count", []time.Time{ago(time.Hour), ago(time.Minute)}, 2, 0},
		{"over the count, old", []time.Time{ago(time.Hour), ago(30 * time.Minute), ago(time.Minute)}, 1, 2},
		{"over the count, but recent: kept for its requester", []time.Time{ago(time.Hour), ago(5 * time.Minute), ago(time.Minute)}, 1, 1},
		{"all recent", []time.Time{ago(3 * time.Minute), ago(2 * time.Minute), ago(time.Minute)}, 1, 0},
		{"exactly the keeping time: forgotten", []time.Time{ago(10 * time.Minute), ago(time.Minute)}, 1, 1},
		{"recent, but over four times the count", []time.Time{ago(6 * time.Minute), ago(5 * time.Minute), ago(4 * time.Minute), ago(3 * time.Minute), ago(2 * time.Minute), ago(time.Minute)}, 1, 2},
	} {
		if got := toForget(c.ended, c.keep, 10*time.Minute, now); got != c.want {
			t.Errorf("%s: forget %d, want %d", c.name, got, c.want)
		}
	}
}

func TestFailureReasonNamesTheDuration(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("%w: stopped after 5s", executor.ErrTimeout)
	if got := failureReason(err, 5*time.Second); got != "stopped at its duration (5s)" {
		t.Errorf("timeout: %q", got)
	}
	if got := failureReason(errors.New("trap: unreachable"), 5*time.Second); got != "trap: unreachable" {
		t.Errorf("other failure: %q", got)
	}
}

// A provider replays an allocation's events from the first to a requester
// that follows it again: the steps are recorded once, the output again in
// full (the live log of a restarted node starts empty).
func TestReplayedStepsAreRecordedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	j, err := newJobs(ctx, MemoryDatastore(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.start(ctx, &JobRecord{ID: "job-replayed", State: JobBidding}, func() {}); err != nil {
		t.Fatal(err)
	}
	step := func(seq int, kind orchestrator.EventKind) orchestrator.Progress {
		return orchestrator.Progress{Kind: orchestrator.ProgressEvent, JobID: "job-replayed", AllocationID: "alloc-1",
			Event: &orchestrator.Event{Seq: seq, AllocationID: "alloc-1", Kind: kind, State: orchestrator.StateRunning, Data: []byte("out")}}
	}
	j.update(orchestrator.Progress{Kind: orchestrator.ProgressAccepted, JobID: "job-replayed", Provider: testPeer(t), AllocationID: "alloc-1"})
	for range 2 { // followed, then followed again from the first event
		j.update(step(0, orchestrator.EventState))
		j.update(step(1, orchestrator.EventStdout))
	}
	j.update(step(2, orchestrator.EventState))
	j.mu.Lock()
	live := len(j.live["job-replayed"].events)
	j.mu.Unlock()
	if live != 1 {
		t.Fatalf("the live log holds %d output events, want the one, once", live)
	}
	rec, _ := j.get("job-replayed")
	var states []int
	for _, p := range rec.Progress {
		if p.Kind == orchestrator.ProgressEvent {
			states = append(states, p.Event.Seq)
		}
	}
	if len(states) != 2 || states[0] != 0 || states[1] != 2 {
		t.Fatalf("state steps recorded %v, want [0 2]", states)
	}
	// The winner was written at once, for a restart to follow it.
	j2, err := newJobs(ctx, j.store, j.log)
	if err != nil {
		t.Fatal(err)
	}
	saved, _ := j2.get("job-replayed")
	if saved.State != JobRunning || saved.AllocationID != "alloc-1" {
		t.Fatalf("after a restart the job book says %s on %q", saved.State, saved.AllocationID)
	}
	if got := j2.unfinished(); len(got) != 1 || got[0].ID != "job-replayed" {
		t.Fatalf("unfinished after a restart: %+v", got)
	}
}

// An interrupted job keeps its state; waiters are let go.
func TestInterruptKeepsTheJobsState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	j, err := newJobs(ctx, MemoryDatastore(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.start(ctx, &JobRecord{ID: "job-interrupted", State: JobBidding}, func() {}); err != nil {
		t.Fatal(err)
	}
	j.update(orchestrator.Progress{Kind: orchestrator.ProgressAccepted, JobID: "job-interrupted", Provider: testPeer(t), AllocationID: "alloc-1"})
	rec := j.interrupt(ctx, "job-interrupted", "this node stopped")
	if rec == nil || rec.State != JobRunning || rec.Error != "" || rec.Progress[len(rec.Progress)-1].Kind != ProgressInterrupted {
		t.Fatalf("interrupted: %+v", rec)
	}
	waited, err := j.wait(ctx, "job-interrupted") // must not block
	if err != nil || waited.State != JobRunning {
		t.Fatalf("wait: %s %v", waited.State, err)
	}
}

func TestKeptSubmissionRoundTrip(t *testing.T) {
	t.Parallel()
	n := &Node{cfg: Config{Home: t.TempDir()}, log: slog.New(slog.DiscardHandler)}
	price := 0.5
	sub := orchestrator.Submission{
		Job:      orchestrator.JobSpec{ID: "job-kept-0001", Executor: orchestrator.ExecutorWasm, Module: []byte("\x00asm module"), Args: []string{"a"}, Env: map[string]string{"K": "v"}, Stdin: []byte("in")},
		MaxPrice: &price, Inputs: []byte("tar bytes"), QueueTimeout: 90 * time.Second, RetryOnFailure: 2,
	}
	if err := n.keepSubmission(sub); err != nil {
		t.Fatal(err)
	}
	got, err := n.keptSubmission(sub.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Job.Module) != string(sub.Job.Module) || string(got.Inputs) != string(sub.Inputs) || *got.MaxPrice != price ||
		got.Job.Args[0] != "a" || got.Job.Env["K"] != "v" || string(got.Job.Stdin) != "in" ||
		got.QueueTimeout != sub.QueueTimeout || got.RetryOnFailure != sub.RetryOnFailure {
		t.Fatalf("kept %+v, read back %+v", sub, got)
	}
	// A spec naming another job is refused rather than run as this one.
	if err := os.WriteFile(filepath.Join(n.submissionsDir(), sub.Job.ID, keptSpecFile), []byte(`{"job":{"id":"job-other-0001"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.keptSubmission(sub.Job.ID); err == nil {
		t.Fatal("a kept spec naming another job was taken")
	}
	n.dropSubmission(sub.Job.ID)
	if _, err := n.keptSubmission(sub.Job.ID); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after dropping: %v", err)
	}
	if err := n.keepSubmission(orchestrator.Submission{Job: orchestrator.JobSpec{ID: "../escape"}}); err == nil {
		t.Fatal("a job ID naming a path outside the submissions was kept")
	}
}
