package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/internal/randid"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runningNode is `dms run` running in-process.
type runningNode struct {
	stop   func() result // cancels the run and waits for it to return
	stdout *syncBuffer
}

// startNode runs `dms --home home run --local args...` in a goroutine and
// returns once it printed "ready". The test's end stops it.
func startNode(t *testing.T, home string, args ...string) runningNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runCtx(ctx, append([]string{"dms", "--home", home, "run", "--local"}, args...), &out, &errb)
	}()
	stop := sync.OnceValue(func() result {
		cancel()
		select {
		case code := <-done:
			return result{code, out.String(), errb.String()}
		case <-time.After(2 * time.Minute):
			t.Errorf("dms run did not stop within 2m of its context ending\nstderr:\n%s", errb.String())
			return result{-1, out.String(), errb.String()}
		}
	})
	t.Cleanup(func() { stop() })
	poll.Until(t, 2*time.Minute, "dms run to print ready", func() bool {
		select {
		case code := <-done:
			t.Fatalf("dms run exited %d before it was ready\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
		default:
		}
		return strings.Contains(out.String(), "\nready\n")
	})
	return runningNode{stop: stop, stdout: &out}
}

// runLine returns the value of the first "key: value" line dms run printed.
func (n runningNode) runLine(t *testing.T, key string) string {
	t.Helper()
	for _, l := range strings.Split(n.stdout.String(), "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return v
		}
	}
	t.Fatalf("dms run printed no %q line:\n%s", key, n.stdout.String())
	return ""
}

func jsonOut[T any](t *testing.T, r result) T {
	t.Helper()
	r.want(t, 0)
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	return v
}

// TestRunInProcess drives a node started by `dms run` with the commands
// that talk to it, and checks that it stops cleanly.
func TestRunInProcess(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	network := "test-" + randid.Hex(3)
	n := startNode(t, h, "--network", network, "--dht-mode", "server")
	id := n.runLine(t, "peer id")
	if got := n.runLine(t, "network"); got != network {
		t.Fatalf("network: %q, want %q", got, network)
	}
	addr := n.runLine(t, "listening on")
	if !strings.HasPrefix(addr, "/ip4/127.0.0.1/tcp/") || !strings.HasSuffix(addr, "/p2p/"+id) {
		t.Fatalf("listening on %q: want a loopback TCP address ending in /p2p/%s", addr, id)
	}
	if n.runLine(t, "control socket") != home.SocketPath(h) {
		t.Fatalf("control socket line: %q", n.runLine(t, "control socket"))
	}
	st, err := os.Stat(home.SocketPath(h))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, mode %v; want 0600", err, st.Mode().Perm())
	}

	dms(t, "--home", h, "id").want(t, 0, "peer id: "+id, "network: "+network, "listening on: "+addr)
	if r := jsonOut[api.IDResponse](t, dms(t, "--home", h, "id", "--json")); r.PeerID != id || r.PID != os.Getpid() || r.Home != h {
		t.Fatalf("id --json: %+v", r)
	}
	if r := jsonOut[api.PeersResponse](t, dms(t, "--home", h, "peers", "--json")); len(r.Peers) != 0 || r.Topic != "dms/"+network+"/"+orchestrator.TopicBidRequests {
		t.Fatalf("peers --json of a lone node: %+v", r)
	}
	dms(t, "--home", h, "peers").want(t, 0, "0 peers")
	s := jsonOut[api.StatusResponse](t, dms(t, "--home", h, "status", "--json"))
	if s.ID.String() != id || s.Network != network || s.Onboarded || s.Home != h {
		t.Fatalf("status --json: %+v", s)
	}
	dms(t, "--home", h, "status").want(t, 0, "peer id:      "+id, "onboarded:    no")

	// One node per home: the second one is refused before it touches the
	// first one's socket.
	dms(t, "--home", h, "run", "--local").want(t, 1, fmt.Sprintf("a dms node is already running on %s (pid %d)", h, os.Getpid()))
	dms(t, "--home", h, "id").want(t, 0, id)

	// The controller commands go through the socket (opening the home
	// directly would fail: the node holds the datastore).
	if c := capabilityJSON(t, h); c.Onboarded || c.Home != h || c.Machine.CPU.MilliCores == 0 {
		t.Fatalf("capability through the socket: %+v", c)
	}
	dms(t, "--home", h, "onboard", "--cpu", "1000", "--memory", "256MiB", "--disk", "256MiB", "--skip-benchmark").
		want(t, 2, "invalid value 1000 for --cpu: more than this machine can offer")
	dms(t, "--home", h, "onboard", "--cpu", "0.5", "--memory", "256MiB", "--disk", "256MiB", "--benchmark-duration", "80ms").
		want(t, 0, "Onboarded: offering cpu=0.5 memory=256MiB disk=256MiB", "[4/4]", "benchmark: score")
	if s := jsonOut[api.StatusResponse](t, dms(t, "--home", h, "status", "--json")); !s.Onboarded || s.Registered.CPU.MilliCores != 500 || s.Available.Memory != 256<<20 {
		t.Fatalf("the running node did not take the offer: %+v", s)
	}
	dms(t, "--home", h, "benchmark", "--duration", "80ms").want(t, 0, "[1/4] cpu, one core", "stored")
	dms(t, "--home", h, "offboard").want(t, 0, "Offboarded: no longer offering cpu=0.5")
	dms(t, "--home", h, "onboard", "--cpu", "0.5", "--memory", "256MiB", "--disk", "256MiB").want(t, 0, "Onboarded")

	// A second node that knows only the first one's address joins it, on
	// the bid-request topic too.
	h2 := filepath.Join(t.TempDir(), "home2")
	dms(t, "--home", h2, "init").want(t, 0)
	startNode(t, h2, "--network", network, "--bootstrap", addr)
	poll.Until(t, 2*time.Minute, "the second node to see the first on the topic", func() bool {
		r := jsonOut[api.PeersResponse](t, dms(t, "--home", h2, "peers", "--json"))
		return len(r.Peers) == 1 && r.Peers[0].ID.String() == id && r.Peers[0].OnTopic && r.Peers[0].Direction == "outbound"
	})
	dms(t, "--home", h, "peers").want(t, 0, "1 peer, 1 on the bid-request topic", "inbound")

	r := n.stop()
	r.want(t, 0)
	if _, err := os.Stat(home.SocketPath(h)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket after the node stopped: %v", err)
	}
	if !strings.Contains(r.stderr, "node stopped") {
		t.Fatalf("no clean stop logged:\n%s", r.stderr)
	}
	msg := fmt.Sprintf("no dms node is running on %s (start one with: dms --home %s run)", h, h)
	for _, cmd := range []string{"status", "peers", "id"} {
		dms(t, "--home", h, cmd).want(t, 1, msg)
	}
	// The datastore was closed and holds what the node recorded.
	if c := capabilityJSON(t, h); !c.Onboarded || c.Registered.CPU.MilliCores != 500 || c.Benchmark == nil {
		t.Fatalf("after the node stopped: %+v", c)
	}
}

func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	key := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		says []string
	}{
		{[]string{"--dht-mode", "fast"}, []string{`invalid value "fast" for --dht-mode: want auto, server or client`}},
		{[]string{"--listen", "localhost:4001"}, []string{`invalid value "localhost:4001" for --listen: want a multiaddr`}},
		{[]string{"--bootstrap", "/ip4/127.0.0.1/tcp/4001"}, []string{`for --bootstrap: want a multiaddr ending in /p2p/<peer ID>`}},
		{[]string{"--network", "My Net"}, []string{`invalid value "My Net" for --network: want 1 to 32 characters`}},
		{[]string{"--swarm-key", filepath.Join(t.TempDir(), "none")}, []string{"for --swarm-key", "no such file"}},
		{[]string{"--swarm-key", key}, []string{"for --swarm-key", "swarm"}},
		{[]string{"now"}, []string{`unexpected argument "now"`}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			dms(t, append([]string{"--home", h, "run", "--local"}, c.args...)...).want(t, 2, c.says...)
		})
	}
	missing := filepath.Join(t.TempDir(), "nohome")
	dms(t, "--home", missing, "peers").want(t, 2, "run dms init")
	dms(t, "--home", missing, "run").want(t, 2, "run dms init")
}

// TestForcedOffboardStopsRunningAllocations is the defect of issue 9 as a
// user met it: a forced offboarding of a provider with a job running used
// to drop the job's lock while the job ran on, so that onboarding again
// showed its capacity as free. Now the provider stops the job first.
func TestForcedOffboardStopsRunningAllocations(t *testing.T) {
	t.Parallel()
	provider, requester := newHome(t), filepath.Join(t.TempDir(), "requester")
	dms(t, "--home", requester, "init").want(t, 0)
	network := "offboard-" + randid.Hex(3)
	p := startNode(t, provider, "--network", network)
	startNode(t, requester, "--network", network, "--bootstrap", p.runLine(t, "listening on"))
	dms(t, "--home", provider, "onboard", "--cpu", "1", "--memory", "512MiB", "--disk", "256MiB", "--skip-benchmark").want(t, 0, "Onboarded")
	poll.Until(t, 2*time.Minute, "the requester to see the provider on the topic", func() bool {
		r := jsonOut[api.PeersResponse](t, dms(t, "--home", requester, "peers", "--json"))
		return len(r.Peers) == 1 && r.Peers[0].OnTopic
	})
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(wasm, examples.HelloWasm, 0o600); err != nil {
		t.Fatal(err)
	}
	// A job that runs for a long while (a sieve of 4e8 numbers).
	r := dms(t, "--home", requester, "job", "submit", "--cpu", "0.5", "--memory", "500MiB", "--duration", "2m", "--wasm", wasm, "--detach", "--", "-n", "400000000")
	r.want(t, 0)
	id := strings.TrimSpace(r.stdout)
	var alloc node.AllocationInfo
	poll.Until(t, 2*time.Minute, "the job to run on the provider", func() bool {
		for _, a := range jsonOut[api.AllocationsResponse](t, dms(t, "--home", provider, "allocations", "--json")).Allocations {
			if a.JobID == id && a.State == orchestrator.StateRunning {
				alloc = a
				return true
			}
		}
		return false
	})
	dms(t, "--home", provider, "offboard").want(t, 1, "offboard refused: 1 allocation(s) hold locks", alloc.ID, "--force")
	dms(t, "--home", provider, "offboard", "--force").want(t, 0, "Offboarded (forced)", "Stopped 1 allocation(s), then released their locks", alloc.ID)
	// By then the allocation has ended; nothing runs that the ledger no
	// longer counts.
	for _, a := range jsonOut[api.AllocationsResponse](t, dms(t, "--home", provider, "allocations", "--json")).Allocations {
		if a.ID == alloc.ID && (a.State != orchestrator.StateCancelled || !strings.Contains(a.Result.Reason, "offboarded")) {
			t.Fatalf("allocation after the forced offboarding: %s %+v", a.State, a.Result)
		}
	}
	if c := capabilityJSON(t, provider); c.Onboarded || len(c.Locks) != 0 || len(c.Holds) != 0 {
		t.Fatalf("capability after the forced offboarding: %+v", c)
	}
	dms(t, "--home", provider, "onboard", "--cpu", "1", "--memory", "512MiB", "--disk", "256MiB", "--skip-benchmark").want(t, 0, "Onboarded")
	if c := capabilityJSON(t, provider); c.Available.CPU.MilliCores != 1000 || len(c.Locks) != 0 {
		t.Fatalf("capability after onboarding again: available %s, locks %+v", c.Available, c.Locks)
	}
	dms(t, "--home", provider, "allocations").want(t, 0, alloc.ID, "cancelled")
	var last node.JobRecord
	defer func() {
		if t.Failed() {
			t.Logf("the requester's record of the job, last seen: %s %q, steps %+v", last.State, last.Error, last.Progress)
		}
	}()
	poll.Until(t, 2*time.Minute, "the requester to hear that its job was stopped", func() bool {
		last = jsonOut[node.JobRecord](t, dms(t, "--home", requester, "job", "status", id, "--json"))
		return last.State.Final()
	})
	dms(t, "--home", requester, "job", "status", id).want(t, 0, "cancelled", "the provider offboarded")
}
