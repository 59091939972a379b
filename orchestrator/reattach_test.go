package orchestrator

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/p2p"
)

// flakyHost is a requester's host that cannot reach anyone while down, as
// a node that has just started cannot until the mesh has formed again.
type flakyHost struct {
	*fakeHost
	down  atomic.Bool
	opens atomic.Int32
}

func (h *flakyHost) OpenStream(ctx context.Context, p peer.ID, name string) (p2p.FramedStream, error) {
	h.opens.Add(1)
	if h.down.Load() {
		return nil, errors.New("no route to peer (the mesh is forming)")
	}
	return h.fakeHost.OpenStream(ctx, p, name)
}

// reattachMesh runs one job from node 0 on node 1 and returns the
// requester's flaky host, the allocation's ID and the job's.
func reattachMesh(t *testing.T) ([]*fakeNode, *flakyHost, string, string) {
	t.Helper()
	nodes := newFakeMesh(t, 2, func(i int) *fakeBackend {
		b := newFakeBackend(2000)
		b.onboarded = i == 1
		return b
	})
	flaky := &flakyHost{fakeHost: nodes[0].host}
	nodes[0].svc.Requester.host = flaky // before any of its goroutines runs
	var allocID string
	sub := wasmJob("once")
	sub.Job.ID = NewJobID()
	if _, err := nodes[0].svc.Submit(context.Background(), sub, func(p Progress) {
		if p.Kind == ProgressAccepted {
			allocID = p.AllocationID
		}
	}); err != nil {
		t.Fatal(err)
	}
	return nodes, flaky, allocID, sub.Job.ID
}

// A requester that restarted follows its allocation again: it keeps asking
// a provider it cannot reach yet, and once it can, gets the allocation's
// events from the first (its whole output) and its result.
func TestReattachFollowsTheAllocationAgainOnceItsProviderAnswers(t *testing.T) {
	nodes, flaky, allocID, jobID := reattachMesh(t)
	flaky.down.Store(true)
	before := flaky.opens.Load()
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	var replayed atomic.Int32
	go func() {
		res, err := nodes[0].svc.Reattach(context.Background(), jobID, nodes[1].host.ID(), allocID, 0, time.Hour, func(p Progress) {
			if p.Kind == ProgressEvent && p.Event.Kind == EventState && p.Event.State == StateRunning {
				replayed.Add(1)
			}
		})
		done <- outcome{res, err}
	}()
	waitFor(t, "the requester to try the provider twice", func() bool { return flaky.opens.Load() >= before+2 })
	flaky.down.Store(false)
	select {
	case o := <-done:
		if o.err != nil || o.res.State != StateCompleted || string(o.res.Stdout) != "ran [once]" {
			t.Fatalf("reattached: %+v %v", o.res, o.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the requester never followed the allocation again")
	}
	if replayed.Load() != 1 {
		t.Fatalf("the running state came %d times, want once, replayed from the first event", replayed.Load())
	}
}

// A provider that answers that it has no such allocation ends the
// reattaching at once, saying so; one never reached is given up on after
// the time allowed, as lost.
func TestReattachGivesUpClearly(t *testing.T) {
	nodes, flaky, _, _ := reattachMesh(t)
	ctx := context.Background()
	_, err := nodes[0].svc.Reattach(ctx, "job", nodes[1].host.ID(), "alloc-unknown", 0, time.Hour, nil)
	if err == nil || errors.Is(err, ErrProviderLost) || !strings.Contains(err.Error(), "alloc-unknown: not found") {
		t.Fatalf("unknown allocation: %v", err)
	}
	flaky.down.Store(true)
	_, err = nodes[0].svc.Reattach(ctx, "job", nodes[1].host.ID(), "alloc-x", 0, time.Millisecond, nil)
	if !errors.Is(err, ErrProviderLost) || !strings.Contains(err.Error(), "after this node restarted") {
		t.Fatalf("unreachable provider: %v", err)
	}
}
