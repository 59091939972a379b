package node_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
	"github.com/dms-project/dms/testnet"
)

var sharedWasm *executor.Wasm

func TestMain(m *testing.M) {
	// One sandbox for every in-process network: hello.wasm is compiled
	// once per test binary instead of once per network.
	// Its mount roots cover every node's work directory (under the temp dir).
	w, err := executor.NewWasm(executor.WithMountRoots(os.TempDir()))
	if err != nil {
		panic(err)
	}
	sharedWasm = w
	code := m.Run()
	w.Close(context.Background())
	os.Exit(code)
}

// newNetwork starts n nodes, each offering cpu millicores, 2 GiB and 1 GiB
// of disk, except node 1, the usual requester, which offers nothing.
// configure, if set, adjusts node i's config.
func newNetwork(t *testing.T, n int, cpu uint64, configure func(i int, c *node.Config)) []*node.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{
		Nodes: n, Requesters: []int{1}, Wasm: sharedWasm, Configure: configure,
		Offer: capability.Capability{CPU: capability.CPU{MilliCores: cpu}, Memory: 2 * capability.GiB, Disk: capability.GiB},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Nodes
}

func helloJob(args ...string) orchestrator.Submission {
	return orchestrator.Submission{Job: orchestrator.JobSpec{
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: 128 * capability.MiB},
		Duration:     seconds.Duration(30 * time.Second), Executor: orchestrator.ExecutorWasm, Module: examples.HelloWasm, Args: args,
	}}
}

func byID(nodes []*node.Node, p orchestrator.Progress) *node.Node {
	for _, n := range nodes {
		if n.ID() == p.Provider {
			return n
		}
	}
	return nil
}

func TestWasmJobRunsOnAnotherNodeAndOutputComesBack(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 4, 1000, nil)
	var accepted orchestrator.Progress
	rec, err := nodes[1].SubmitJob(context.Background(), helloJob("mesh"), func(p orchestrator.Progress) {
		if p.Kind == orchestrator.ProgressAccepted {
			accepted = p
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != node.JobCompleted || rec.Result.ExitCode != 0 {
		t.Fatalf("job %+v", rec)
	}
	if out := string(rec.Result.Stdout); !strings.Contains(out, "Hello from dms, mesh!") || !strings.Contains(out, "primes below 100000: 9592") {
		t.Fatalf("stdout %q", out)
	}
	if accepted.Provider == nodes[1].ID() || accepted.Provider == "" {
		t.Fatalf("job ran on %q, want another node", accepted.Provider)
	}
	// The provider has the allocation, ended, with its lock released.
	provider := byID(nodes, accepted)
	info, ok := provider.Allocation(accepted.AllocationID)
	if !ok || info.State != orchestrator.StateCompleted || info.Stats.Starts != 1 {
		t.Fatalf("provider's allocation %+v (found %v)", info, ok)
	}
	if len(provider.LockedCapabilities()) != 0 {
		t.Fatalf("locks left after the job: %+v", provider.LockedCapabilities())
	}
	// The requester's job book has it too, also by a prefix of its ID.
	got, err := nodes[1].FindJob(rec.ID[:6])
	if err != nil || got.ID != rec.ID || got.State != node.JobCompleted || len(got.Bids) == 0 {
		t.Fatalf("job book: %+v, %v", got, err)
	}
	if _, err := nodes[1].FindJob("zzzzzz"); !errors.Is(err, node.ErrNotFound) {
		t.Fatalf("unknown job: %v, want ErrNotFound", err)
	}
}

func TestJobThatFitsNowhereFailsWithReason(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 3, 1000, func(i int, c *node.Config) {
		if i == 1 {
			c.Orchestrator.Requester.BiddingWindow = 300 * time.Millisecond
		}
	})
	sub := helloJob()
	sub.Job.Requirements.CPU.MilliCores = 32000
	rec, err := nodes[1].SubmitJob(context.Background(), sub, nil)
	if !errors.Is(err, orchestrator.ErrNoBids) || rec.State != node.JobFailed || !strings.Contains(rec.Error, "cpu=32") {
		t.Fatalf("err=%v rec=%+v, want ErrNoBids naming cpu=32", err, rec)
	}
}

func TestWasmLimitsAreEnforcedAndReported(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 3, 1000, nil)
	mem := helloJob("-n", "600000000") // a 600 MB sieve in a 64 MiB box
	mem.Job.Requirements.Memory = 64 * capability.MiB
	rec, err := nodes[1].SubmitJob(context.Background(), mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != node.JobFailed || !strings.Contains(rec.Result.Reason, "memory") {
		t.Fatalf("memory hog: state %s reason %q", rec.State, rec.Result.Reason)
	}
	slow := helloJob("-n", "100000000")
	slow.Job.Requirements.Memory = 512 * capability.MiB
	slow.Job.Duration = seconds.Duration(50 * time.Millisecond)
	rec, err = nodes[1].SubmitJob(context.Background(), slow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != node.JobFailed || rec.Result.Reason != "stopped at its duration (50ms)" {
		t.Fatalf("slow job: state %s reason %q", rec.State, rec.Result.Reason)
	}
}

func TestConcurrentJobsNeverOvercommit(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 4, 1000, nil) // three providers of one core each
	stop := make(chan struct{})
	var violations []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // watch every provider's ledger while the jobs run
		defer wg.Done()
		for {
			for _, n := range nodes {
				s := n.LedgerSnapshot()
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
	t.Parallel()
	key, _, _ := crypto.GenerateEd25519Key(nil)
	store := node.MemoryDatastore()
	ledger, err := resources.NewLedger(store)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Register(capability.Capability{CPU: capability.CPU{MilliCores: 2000}, Memory: capability.GiB, Disk: capability.GiB}); err != nil {
		t.Fatal(err)
	}
	meta := []byte(`{"id":"alloc-crashed","job_id":"job-before-crash","state":"running"}`)
	if err := ledger.Lock("alloc-crashed", capability.Capability{CPU: capability.CPU{MilliCores: 500}}, meta); err != nil {
		t.Fatal(err)
	}
	m, err := testnet.MeasureOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.LocalConfig(t.TempDir())
	cfg.Datastore, cfg.Key, cfg.Machine = store, key, &m
	n, err := node.New(context.Background(), cfg)
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

// longJob runs for many seconds unless stopped.
func longJob() orchestrator.Submission {
	job := helloJob("-n", "300000000")
	job.Job.Requirements.Memory = 1 << 30
	return job
}

// startLong submits longJob from nodes[1] and returns once it runs, with
// the step that said so and a channel that gets the job's end.
func startLong(t *testing.T, nodes []*node.Node) (orchestrator.Progress, chan node.JobRecord) {
	t.Helper()
	done := make(chan node.JobRecord, 1)
	running := make(chan orchestrator.Progress, 1)
	go func() {
		rec, _ := nodes[1].SubmitJob(context.Background(), longJob(), func(p orchestrator.Progress) {
			if p.Kind == orchestrator.ProgressAccepted {
				running <- p
			}
		})
		done <- rec
	}()
	select {
	case p := <-running:
		return p, done
	case rec := <-done:
		t.Fatalf("the long job ended before it ran: %s %s", rec.State, rec.Error)
	case <-time.After(30 * time.Second):
		t.Fatal("the long job did not start within 30s")
	}
	return orchestrator.Progress{}, nil
}

func TestCancelReachesAllocation(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 3, 1000, nil)
	p, done := startLong(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// CancelJob waits for the end; a prefix names the job.
	rec, err := nodes[1].CancelJob(ctx, p.JobID[:8])
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != node.JobCancelled {
		t.Fatalf("state %s (%s), want cancelled", rec.State, rec.Error)
	}
	if rec := <-done; rec.State != node.JobCancelled {
		t.Fatalf("submission ended %s, want cancelled", rec.State)
	}
	if _, err := nodes[1].CancelJob(ctx, p.JobID); err == nil || !strings.Contains(err.Error(), "already ended") {
		t.Fatalf("cancelling an ended job: %v", err)
	}
}

// The defect of issue 9: a forced offboarding released the locks of
// allocations that went on running, so a new offer showed their capacity
// as free. Now it stops them first, and only then releases their locks.
func TestForcedOffboardStopsAllocationsBeforeReleasingTheirLocks(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 3, 1000, nil)
	p, done := startLong(t, nodes)
	provider := byID(nodes, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got := provider.LockedCapabilities(); len(got) != 1 || got[0].ID != p.AllocationID {
		t.Fatalf("locks while the job runs: %+v, want %s's", got, p.AllocationID)
	}
	rep, err := provider.Offboard(ctx, false)
	if !errors.Is(err, onboarding.ErrActiveAllocations) || len(rep.Affected) != 1 {
		t.Fatalf("unforced offboarding with a job running: %v %+v, want refused naming it", err, rep)
	}
	if !provider.Onboarded() {
		t.Fatal("a refused offboarding withdrew the offer")
	}
	rep, err = provider.Offboard(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Stopped, []string{p.AllocationID}) || len(rep.Affected) != 1 || rep.Affected[0].ID != p.AllocationID {
		t.Fatalf("report %+v, want the allocation stopped and its lock released", rep)
	}
	// By the time Offboard returns, the allocation has ended: nothing runs
	// that the ledger no longer counts.
	info, _ := provider.Allocation(p.AllocationID)
	if info.State != orchestrator.StateCancelled || !strings.Contains(info.Result.Reason, "offboarded") {
		t.Fatalf("allocation after forced offboarding: %s %+v", info.State, info.Result)
	}
	if provider.Onboarded() || len(provider.LockedCapabilities()) != 0 || len(provider.HeldCapabilities()) != 0 {
		t.Fatalf("after forced offboarding: onboarded %v, locks %+v, holds %+v", provider.Onboarded(), provider.LockedCapabilities(), provider.HeldCapabilities())
	}
	// Offered again, all of it is available, and rightly so.
	cpu, mem, disk := uint64(1000), uint64(512*capability.MiB), uint64(capability.GiB)
	if _, err := provider.Onboard(ctx, onboarding.Request{CPU: &cpu, Memory: &mem, Disk: &disk}, nil); err != nil {
		t.Fatal(err)
	}
	if a := provider.AvailableCapability(); a.CPU.MilliCores != 1000 || a.Memory != mem {
		t.Fatalf("available after onboarding again: %s", a)
	}
	for _, a := range provider.Allocations() {
		if !a.State.Final() {
			t.Fatalf("allocation %s still %s after the forced offboarding", a.ID, a.State)
		}
	}
	select {
	case rec := <-done:
		if rec.State == node.JobCompleted {
			t.Fatalf("the requester saw the stopped job complete: %+v", rec)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the requester never heard that its job was stopped")
	}
}
