package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

// acceptedJobs are the jobs the backend accepted to run.
func (f *fakeBackend) acceptedJobs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.accepted)
}

// recordingBackend keeps the invocations its provider accepted and, as a
// node does, fetches a module that came as a blob before it accepts.
type recordingBackend struct {
	*fakeBackend
	svc         *Service // set once the service is up
	mu          sync.Mutex
	invocations []*Invocation
	modules     [][]byte // fetched
}

func (r *recordingBackend) Accept(holdID string, inv *Invocation) (string, error) {
	if b := inv.Job.ModuleBlob; b != nil {
		m, err := r.svc.Fetch(context.Background(), inv.Bid.Requester, *b, MaxModuleSize)
		if err != nil {
			return "", err
		}
		r.mu.Lock()
		r.modules = append(r.modules, m)
		r.mu.Unlock()
	}
	id, err := r.fakeBackend.Accept(holdID, inv)
	if err == nil {
		r.mu.Lock()
		r.invocations = append(r.invocations, inv)
		r.mu.Unlock()
	}
	return id, err
}

func (r *recordingBackend) fetched() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.modules)
}

func (r *recordingBackend) lastInvocation() *Invocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.invocations) == 0 {
		return nil
	}
	return r.invocations[len(r.invocations)-1]
}

// fakeNode is one node of a fakeNet with its protocol service.
type fakeNode struct {
	host    *fakeHost
	svc     *Service
	backend *recordingBackend
}

// newFakeMesh starts n services over one in-memory network: no libp2p,
// nothing on the wire, every node hears every other at once.
func newFakeMesh(t *testing.T, n int, backends func(i int) *fakeBackend) []*fakeNode {
	t.Helper()
	return newFakeMeshWith(t, n, LocalConfig(), backends)
}

// newFakeMeshWith is newFakeMesh with every service configured by cfg.
func newFakeMeshWith(t *testing.T, n int, cfg Config, backends func(i int) *fakeBackend) []*fakeNode {
	t.Helper()
	fn := newFakeNet()
	t.Cleanup(fn.Close)
	nodes := make([]*fakeNode, n)
	for i := range n {
		key, id := testPeer(t)
		h := fn.host(id)
		b := &recordingBackend{fakeBackend: backends(i)}
		withKey(b, key)
		svc, err := NewService(h, key, b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		b.svc = svc
		nodes[i] = &fakeNode{host: h, svc: svc, backend: b}
	}
	return nodes
}

func TestJobRunsOverAnInMemoryNetwork(t *testing.T) {
	nodes := newFakeMesh(t, 3, func(i int) *fakeBackend {
		b := newFakeBackend(2000)
		b.onboarded = i != 0 // the requester offers nothing
		return b
	})
	var steps []ProgressKind
	res, err := nodes[0].svc.Submit(context.Background(), wasmJob("hello"), func(p Progress) { steps = append(steps, p.Kind) })
	if err != nil {
		t.Fatal(err)
	}
	if res.State != StateCompleted || string(res.Stdout) != "ran [hello]" {
		t.Fatalf("result %+v, stdout %q", res, res.Stdout)
	}
	for _, want := range []ProgressKind{ProgressPublished, ProgressBid, ProgressClosed, ProgressAccepted, ProgressEvent} {
		if !slices.Contains(steps, want) {
			t.Errorf("no %s step in %v", want, steps)
		}
	}
	ran := len(nodes[1].backend.acceptedJobs()) + len(nodes[2].backend.acceptedJobs())
	if ran != 1 || len(nodes[0].backend.acceptedJobs()) != 0 {
		t.Fatalf("the job ran %d times on providers and %d on the requester, want once on a provider", ran, len(nodes[0].backend.acceptedJobs()))
	}
	// The loser's hold is released.
	for _, n := range nodes {
		waitFor(t, "holds released", func() bool { return n.backend.heldCount() == 0 })
	}
}

// A module too large to travel inline is shared with the winner through
// the requester's blobs: a requester built by its Service has them.
func TestLargeModuleIsSharedWithTheWinner(t *testing.T) {
	nodes := newFakeMesh(t, 2, func(i int) *fakeBackend {
		b := newFakeBackend(2000)
		b.onboarded = i == 1
		return b
	})
	sub := wasmJob("big")
	sub.Job.Module = append([]byte("\x00asm"), make([]byte, MaxInlineModule)...)
	res, err := nodes[0].svc.Submit(context.Background(), sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != StateCompleted {
		t.Fatalf("result %+v", res)
	}
	inv := nodes[1].backend.lastInvocation()
	if inv == nil || inv.Job.ModuleBlob == nil || len(inv.Job.Module) != 0 {
		t.Fatalf("invocation %+v: want the module as a blob", inv)
	}
	if got := nodes[1].backend.fetched(); len(got) != 1 || !bytes.Equal(got[0], sub.Job.Module) {
		t.Fatalf("the winner fetched %d modules, want the one submitted", len(got))
	}
	// The requester stops sharing it once the job has ended.
	_, err = nodes[1].svc.Fetch(context.Background(), nodes[0].host.ID(), *inv.Job.ModuleBlob, MaxModuleSize)
	if !errors.Is(err, ErrNotShared) {
		t.Fatalf("fetch after the job: %v, want ErrNotShared", err)
	}
}

func TestNoProviderOverAnInMemoryNetworkFailsWithNoBids(t *testing.T) {
	nodes := newFakeMesh(t, 3, func(int) *fakeBackend { return newFakeBackend(1000) })
	nodes[0].svc.cfg.BiddingWindow /= 4
	sub := wasmJob()
	sub.Job.Requirements.CPU.MilliCores = 64000 // fits nowhere
	_, err := nodes[0].svc.Submit(context.Background(), sub, nil)
	if !errors.Is(err, ErrNoBids) || !strings.Contains(err.Error(), "cpu=64") {
		t.Fatalf("err = %v, want ErrNoBids naming cpu=64", err)
	}
	for i, n := range nodes {
		if held := n.backend.heldCount(); held != 0 {
			t.Fatalf("node %d holds %d bids for a job it cannot run", i, held)
		}
	}
}
