package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// TestContainerPartitionedProviderStopsItsCopy: in a container test
// network, the provider running a job is cut off (every packet to and from
// it dropped, no reset). The requester gives up on it and the job
// completes on another provider; the cut-off provider, no longer hearing
// its requester follow the job, stops its copy and frees its lock.
func TestContainerPartitionedProviderStopsItsCopy(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("containers: builds the dms binary and an image, starts 3 containers; skipped under -short")
	}
	if err := testnet.DockerAvailable(context.Background()); err != nil {
		t.Skipf("skipping the container partition test: %v", err)
	}
	for _, cmd := range []string{"nsenter", "iptables"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Skipf("skipping the container partition test: no %s command to cut a container off with (Debian: util-linux, iptables)", cmd)
		}
	}
	if os.Getuid() != 0 {
		t.Skip("skipping the container partition test: entering a container's network namespace needs root")
	}
	bin := buildDMS(t)
	dir := filepath.Join(t.TempDir(), "tc")
	t.Cleanup(func() { dmsExec(t, bin, "testnet", "down", "--dir", dir) })
	dmsExec(t, bin, "testnet", "up", "--nodes", "3", "--containers", "--abandon-grace", "3s", "--dir", dir, "--timeout", "5m").want(t, 0, "is up: 3 nodes")
	rec, err := testnet.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The image is per binary, and this binary is the test's own.
	t.Cleanup(func() { _ = exec.Command("docker", "image", "rm", "--force", rec.Image).Run() })
	for _, n := range rec.Nodes {
		if n.Container == "" || !strings.Contains(strings.Join(n.Addrs, " "), "/ip4/172.") && !strings.Contains(strings.Join(n.Addrs, " "), "/ip4/10.") && !strings.Contains(strings.Join(n.Addrs, " "), "/ip4/192.168.") {
			t.Fatalf("%s: container %q, addresses %v: want a container with an address of its own", n.Name, n.Container, n.Addrs)
		}
	}
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(wasm, examples.HelloWasm, 0o600); err != nil {
		t.Fatal(err)
	}
	// About 15 s of work: long enough to be cut off in the middle.
	r := dmsExec(t, bin, "--home", rec.Nodes[0].Home, "job", "submit", "--detach", "--cpu", "0.5", "--memory", "256MiB",
		"--duration", "2m", "--wasm", wasm, "--", "-n", "100000000", "cut")
	r.want(t, 0)
	jobID := strings.TrimSpace(strings.SplitN(r.stdout, "\n", 2)[0])
	ctx := context.Background()
	requester, err := api.Dial(ctx, rec.Nodes[0].Home)
	if err != nil {
		t.Fatal(err)
	}
	defer requester.Close()
	var job node.JobRecord
	poll.Until(t, 3*time.Minute, "the job to run", func() bool {
		job, _ = requester.Job(ctx, jobID)
		return job.State == node.JobRunning
	})
	first := job.Provider
	var cut testnet.Process
	for _, n := range rec.Nodes {
		if n.PeerID == first.String() {
			cut = n
		}
	}
	if cut.Name == "" {
		t.Fatalf("the job runs on %s, no node of the network", first)
	}
	dmsExec(t, bin, "testnet", "fault", "--dir", dir, "--node", cut.Name, "--partition").want(t, 0, "partition=true")
	poll.Until(t, 3*time.Minute, "the job to complete elsewhere", func() bool {
		job, _ = requester.Job(ctx, jobID)
		return job.Final()
	})
	if job.State != node.JobCompleted || job.Provider == first || job.Result == nil || !strings.Contains(string(job.Result.Stdout), "primes below 100000000") {
		t.Fatalf("job ended %s on %s (first on %s): %s", job.State, job.Provider, first, job.Error)
	}
	// The cut-off provider's control socket still answers: it is a file.
	provider, err := api.Dial(ctx, cut.Home)
	if err != nil {
		t.Fatal(err)
	}
	defer provider.Close()
	var alloc node.AllocationInfo
	poll.Until(t, 3*time.Minute, "the cut-off provider to stop its copy", func() bool {
		r, err := provider.Allocations(ctx)
		if err != nil || len(r.Allocations) == 0 {
			return false
		}
		alloc = r.Allocations[len(r.Allocations)-1]
		return alloc.State.Final()
	})
	if alloc.State != orchestrator.StateCancelled || alloc.Result == nil || !strings.Contains(alloc.Result.Reason, "abandoned") {
		t.Fatalf("the cut-off provider's allocation ended %s (%+v), want cancelled as abandoned", alloc.State, alloc.Result)
	}
	caps, err := provider.Capability(ctx, api.CapabilityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(caps.Locks) != 0 {
		t.Fatalf("the cut-off provider still holds locks: %+v", caps.Locks)
	}
	t.Logf("job %s: cut off %s; completed on %s; %s stopped its copy: %s", jobID, cut.Name, job.Provider, cut.Name, alloc.Result.Reason)
	dmsExec(t, bin, "testnet", "fault", "--dir", dir, "--node", cut.Name, "--heal").want(t, 0, "healed")
}
