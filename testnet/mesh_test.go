package testnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dms-project/dms/api"
)

// fakeMesh is a network whose polls follow a script: node i gets its
// topic peers at poll topicAt[i] and hears the first probe at poll
// heardAt[i] after it went out (never, if negative).
type fakeMesh struct {
	mu      sync.Mutex
	topicAt []int
	heardAt []int
	downAt  []int // node i does not answer polls before this one
	// fromProbe: node i misses the probes before this one (1 is the first)
	fromProbe []int
	polls     int
	probes    int
	probeAt   int // the poll the first probe went out after
	exit      error
}

func (f *fakeMesh) names() []string {
	out := make([]string, len(f.topicAt))
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i)
	}
	return out
}

func (f *fakeMesh) statuses(context.Context) []meshStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	out := make([]meshStatus, len(f.topicAt))
	for i := range out {
		if f.downAt != nil && f.polls < f.downAt[i] {
			out[i].err = errors.New("not answering")
			continue
		}
		out[i].peers = 5
		if f.polls >= f.topicAt[i] {
			out[i].topicPeers = 3
		}
		out[i].requestsSeen = 7 // what it heard before
		if f.probes > 0 && f.heardAt[i] >= 0 && f.polls >= f.probeAt+f.heardAt[i] {
			out[i].requestsSeen++
		}
		if f.fromProbe != nil && f.fromProbe[i] > 0 && f.probes >= f.fromProbe[i] {
			out[i].requestsSeen++
		}
	}
	return out
}

func (f *fakeMesh) probe(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.probes == 0 {
		f.probeAt = f.polls
	}
	f.probes++
	return nil
}

func (f *fakeMesh) exited() error { return f.exit }

func TestWaitForMeshWaitsForTopicPeersThenAProbe(t *testing.T) {
	f := &fakeMesh{topicAt: []int{1, 3, 5, 2}, heardAt: []int{0, 1, 4, 2}, downAt: []int{0, 0, 0, 3}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitForMesh(ctx, f, time.Millisecond, time.Minute); err != nil {
		t.Fatal(err)
	}
	if f.probes == 0 || f.probeAt < 5 || f.polls < f.probeAt+4 {
		t.Fatalf("returned after %d polls, %d probes (the first after poll %d): want topic peers everywhere (poll 5) before a probe, and the probe heard by n2 (4 polls later)", f.polls, f.probes, f.probeAt)
	}
}

// TestWaitForMeshProbesAgain: a node that a first probe missed (sent before
// the meshes formed) is reached by one of a later round.
func TestWaitForMeshProbesAgain(t *testing.T) {
	f := &fakeMesh{topicAt: []int{1, 1, 1}, heardAt: []int{0, 1, -1}, fromProbe: []int{0, 0, 3}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitForMesh(ctx, f, time.Millisecond, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if f.probes < 3 {
		t.Fatalf("returned after %d probes; n2 hears only the third", f.probes)
	}
}

func TestWaitForMeshNamesWhoFallsShort(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("--timeout 1s passed"))
	f := &fakeMesh{topicAt: []int{1, 1 << 30, 1}, heardAt: []int{0, 0, 0}}
	err := waitForMesh(ctx, f, time.Millisecond, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "--timeout 1s passed: n1 has 0 topic peers (5 connections), wants 2") {
		t.Fatalf("a node without topic peers: %v", err)
	}
	f = &fakeMesh{topicAt: []int{1, 1, 1}, heardAt: []int{0, 1, -1}}
	err = waitForMesh(ctx, f, time.Millisecond, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "waiting for a probe from n0 to reach every node: --timeout 1s passed: 1 of 2 have not heard one (n2: 3 topic peers, 5 connections)") {
		t.Fatalf("a node that hears no probe: %v", err)
	}
	exit := errors.New("n1 exited (exit status 1)")
	f = &fakeMesh{topicAt: []int{1, 1 << 30, 1}, heardAt: []int{0, 0, 0}, exit: exit}
	if err := waitForMesh(context.Background(), f, time.Millisecond, time.Minute); !errors.Is(err, exit) {
		t.Fatalf("a node that exited: %v", err)
	}
}

func TestWaitForMeshOfOneNodeSendsNoProbe(t *testing.T) {
	f := &fakeMesh{topicAt: []int{1 << 30}, heardAt: []int{-1}}
	if err := waitForMesh(context.Background(), f, time.Millisecond, time.Minute); err != nil || f.probes != 0 {
		t.Fatalf("one node: %v after %d probes; it wants no topic peers and hears nobody", err, f.probes)
	}
}

// serve starts a one-node network of its own and serves its control API
// on a fresh home, as dms run would.
func serve(t *testing.T) Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := StartLocal(ctx, LocalConfig{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dir := t.TempDir()
	srv := api.NewServer(ln.Nodes[0], dir, slog.New(slog.DiscardHandler))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	return Process{Home: dir, PeerID: ln.Nodes[0].ID().String()}
}

// TestWaitForMeshNamesWhoIsMissing: when the nodes of a test network do
// not meet, the error names those that fall short.
func TestWaitForMeshNamesWhoIsMissing(t *testing.T) {
	// Two networks: they never meet.
	a, b := serve(t), serve(t)
	a.Name, b.Name = "node-0", "node-1"
	rec := &Record{Nodes: []Process{a, b}}
	ctx, cancel := context.WithTimeoutCause(context.Background(), 300*time.Millisecond, errors.New("--timeout 300ms passed"))
	defer cancel()
	err := waitForProcesses(ctx, rec, nil)
	if err == nil || !strings.Contains(err.Error(), "--timeout 300ms passed: node-0 has 0 topic peers (0 connections), wants 1; node-1 has 0 topic peers (0 connections), wants 1") {
		t.Fatalf("waitForProcesses: %v", err)
	}
}
