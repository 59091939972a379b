package node

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/resources"
)

var (
	machineOnce sync.Once
	machine     resources.Machine
	sharedWasm  *executor.Wasm
)

func TestMain(m *testing.M) {
	// One sandbox for every in-process node: hello.wasm is compiled once
	// per test binary instead of once per node, as the demo does.
	w, err := executor.NewWasm()
	if err != nil {
		panic(err)
	}
	sharedWasm = w
	code := m.Run()
	w.Close(context.Background())
	os.Exit(code)
}

// testMachine measures the machine once for all in-process nodes.
func testMachine(t *testing.T) *resources.Machine {
	machineOnce.Do(func() {
		m, err := resources.Measure(context.Background(), t.TempDir(), resources.WithGPUDetector(func(context.Context) ([]capability.GPU, error) { return nil, nil }))
		if err != nil {
			t.Fatal(err)
		}
		machine = m
	})
	m := machine
	return &m
}

func newTestNode(t *testing.T, bootstrap *Node, offer *capability.Capability) *Node {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig(t.TempDir())
	cfg.Datastore = MemoryDatastore()
	cfg.Key = key
	cfg.Machine = testMachine(t)
	cfg.Wasm = sharedWasm
	cfg.P2P = append(cfg.P2P, p2p.WithNetwork("node-test"))
	if bootstrap != nil {
		cfg.P2P = append(cfg.P2P, p2p.WithBootstrap(bootstrap.Host().AddrInfo()))
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if offer != nil {
		if err := n.SetRegisteredCapability(*offer); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func offer(milli uint64) *capability.Capability {
	return &capability.Capability{CPU: capability.CPU{MilliCores: milli}, Memory: 2 * capability.GiB, Disk: capability.GiB}
}

// newNetwork starts one bootstrap node and n-1 others, each offering cpu
// millicores (the second node offers nothing: it is the usual requester),
// and waits for the bid-request topic to connect them.
func newNetwork(t *testing.T, n int, cpu uint64) []*Node {
	t.Helper()
	nodes := []*Node{newTestNode(t, nil, offer(cpu))}
	for i := 1; i < n; i++ {
		o := offer(cpu)
		if i == 1 {
			o = nil
		}
		nodes = append(nodes, newTestNode(t, nodes[0], o))
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, nd := range nodes {
		for len(nd.Orchestrator().Topic().ListPeers()) < min(n-1, 2) {
			if time.Now().After(deadline) {
				t.Fatalf("node has %d topic peers after 20s", len(nd.Orchestrator().Topic().ListPeers()))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

func helloJob(args ...string) orchestrator.Submission {
	return orchestrator.Submission{Job: orchestrator.JobSpec{
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: 128 * capability.MiB},
		Duration:     30 * time.Second, Executor: orchestrator.ExecutorWasm, Module: examples.HelloWasm, Args: args,
	}}
}

func TestWasmJobRunsOnAnotherNodeAndOutputComesBack(t *testing.T) {
	nodes := newNetwork(t, 4, 2000)
	var accepted orchestrator.Progress
	rec, err := nodes[1].SubmitJob(context.Background(), helloJob("mesh"), func(p orchestrator.Progress) {
		if p.Kind == orchestrator.ProgressAccepted {
			accepted = p
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != JobCompleted || rec.Result.ExitCode != 0 {
		t.Fatalf("job %+v", rec)
	}
	if out := string(rec.Result.Stdout); !strings.Contains(out, "Hello from dms, mesh!") || !strings.Contains(out, "primes below 100000: 9592") {
		t.Fatalf("stdout %q", out)
	}
	if accepted.Provider == nodes[1].ID() || accepted.Provider == "" {
		t.Fatalf("job ran on %q, want another node", accepted.Provider)
	}
	// The provider has the allocation, ended, with its lock released.
	var provider *Node
	for _, n := range nodes {
		if n.ID() == accepted.Provider {
			provider = n
		}
	}
	info, ok := provider.Allocation(accepted.AllocationID)
	if !ok || info.State != orchestrator.StateCompleted || info.Stats.Starts != 1 {
		t.Fatalf("provider's allocation %+v (found %v)", info, ok)
	}
	if len(provider.LockedCapabilities()) != 0 {
		t.Fatalf("locks left after the job: %+v", provider.LockedCapabilities())
	}
	// The requester's job book has it too.
	got, err := nodes[1].Job(rec.ID)
	if err != nil || got.State != JobCompleted || len(got.Bids) == 0 {
		t.Fatalf("job book: %+v, %v", got, err)
	}
}

func TestJobThatFitsNowhereFailsWithReason(t *testing.T) {
	nodes := newNetwork(t, 3, 1000)
	sub := helloJob()
	sub.Job.Requirements.CPU.MilliCores = 32000
	nodes[1].cfg.Orchestrator.Requester.BiddingWindow = 300 * time.Millisecond
	rec, err := nodes[1].SubmitJob(context.Background(), sub, nil)
	if !errors.Is(err, orchestrator.ErrNoBids) || rec.State != JobFailed || !strings.Contains(rec.Error, "cpu=32") {
		t.Fatalf("err=%v rec=%+v, want ErrNoBids naming cpu=32", err, rec)
	}
}

func TestWasmLimitsAreEnforcedAndReported(t *testing.T) {
	nodes := newNetwork(t, 3, 2000)
	mem := helloJob("-n", "600000000") // a 600 MB sieve in a 64 MiB box
	mem.Job.Requirements.Memory = 64 * capability.MiB
	rec, err := nodes[1].SubmitJob(context.Background(), mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != JobFailed || !strings.Contains(rec.Result.Reason, "memory") {
		t.Fatalf("memory hog: state %s reason %q", rec.State, rec.Result.Reason)
	}
	slow := helloJob("-n", "100000000")
	slow.Job.Requirements.Memory = 512 * capability.MiB
	slow.Job.Duration = 50 * time.Millisecond
	rec, err = nodes[1].SubmitJob(context.Background(), slow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != JobFailed || !strings.Contains(rec.Result.Reason, "time") {
		t.Fatalf("slow job: state %s reason %q", rec.State, rec.Result.Reason)
	}
}

func TestConcurrentJobsNeverOvercommit(t *testing.T) {
	nodes := newNetwork(t, 4, 1000) // three providers of one core each
	stop := make(chan struct{})
	var violations []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // watch every provider's ledger while the jobs run
		defer wg.Done()
		for {
			for _, n := range nodes {
				s := n.Ledger().Snapshot()
				used, err := s.Held.Add(s.Locked)
				if err == nil && !used.Fits(s.Registered) {
					mu.Lock()
					violations = append(violations, used.String()+" > "+s.Registered.String())
					mu.Unlock()
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	const jobs = 12 // 12 half-core jobs on 3 cores
	results := make(chan error, jobs)
	for i := range jobs {
		go func() {
			_, err := nodes[1+i%3].SubmitJob(context.Background(), helloJob("-n", "2000000"), nil)
			results <- err
		}()
	}
	completed := 0
	for range jobs {
		err := <-results
		switch {
		case err == nil:
			completed++
		case errors.Is(err, orchestrator.ErrNoBids) || errors.Is(err, orchestrator.ErrAllRefused):
			// Acceptable under contention: refused, never over-committed.
		default:
			t.Errorf("job failed: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	if len(violations) > 0 {
		t.Fatalf("over-committed %d times, first: %s", len(violations), violations[0])
	}
	if completed == 0 {
		t.Fatal("no job completed")
	}
	for _, n := range nodes {
		if l := n.LockedCapabilities(); len(l) != 0 {
			t.Fatalf("locks left: %+v", l)
		}
	}
}

func TestLocksLeftByACrashAreReleasedOnRestart(t *testing.T) {
	key, _, _ := crypto.GenerateEd25519Key(nil)
	store := MemoryDatastore()
	ledger, err := resources.NewLedger(store)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Register(*offer(2000)); err != nil {
		t.Fatal(err)
	}
	meta := []byte(`{"id":"alloc-crashed","job_id":"job-before-crash","state":"running"}`)
	if err := ledger.Lock("alloc-crashed", capability.Capability{CPU: capability.CPU{MilliCores: 500}}, meta); err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig(t.TempDir())
	cfg.Datastore, cfg.Key, cfg.Machine = store, key, testMachine(t)
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if l := n.LockedCapabilities(); len(l) != 0 {
		t.Fatalf("lock survived the restart unhandled: %+v", l)
	}
	info, ok := n.Allocation("alloc-crashed")
	if !ok || info.State != orchestrator.StateFailed || info.JobID != "job-before-crash" {
		t.Fatalf("interrupted allocation reported as %+v (found %v)", info, ok)
	}
	if got := n.AvailableCapability().CPU.MilliCores; got != 2000 {
		t.Fatalf("available cpu %d after restart, want all 2000 back", got)
	}
}

func TestCancelReachesAllocation(t *testing.T) {
	nodes := newNetwork(t, 3, 2000)
	job := helloJob("-n", "300000000")
	job.Job.Requirements.Memory = 1 << 30
	done := make(chan JobRecord, 1)
	running := make(chan orchestrator.Progress, 1)
	go func() {
		rec, _ := nodes[1].SubmitJob(context.Background(), job, func(p orchestrator.Progress) {
			if p.Kind == orchestrator.ProgressAccepted {
				running <- p
			}
		})
		done <- rec
	}()
	p := <-running
	if err := nodes[1].CancelJob(context.Background(), p.JobID); err != nil {
		t.Fatal(err)
	}
	select {
	case rec := <-done:
		if rec.State != JobCancelled {
			t.Fatalf("state %s (%s), want cancelled", rec.State, rec.Error)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("cancelled job did not end")
	}
}
