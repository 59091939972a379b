package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/testnet"
)

// dmsExec runs the binary as a user would and returns what it printed.
func dmsExec(t *testing.T, bin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return result{code, out.String(), errb.String()}
}

// gone reports whether pid no longer runs. kill(pid, 0) still succeeds on
// a zombie, and the nodes, orphaned once `testnet up` exits, may stay
// zombies: where init does not reap (this container's does not), the
// process has still ended, which /proc tells.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// startRun starts `dms run --local` as a separate process and stops it
// (SIGTERM, then waiting for it) when the test ends.
func startRun(t *testing.T, bin, home string, args ...string) (stop func() (int, string)) {
	t.Helper()
	logPath := filepath.Join(filepath.Dir(home), filepath.Base(home)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"--home", home, "run", "--local", "--listen", "/ip4/127.0.0.1/tcp/0"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var code = -1
	stopped := false
	stop = func() (int, string) {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGTERM)
			timer := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
			_ = cmd.Wait()
			timer.Stop()
			code = cmd.ProcessState.ExitCode()
		}
		b, _ := os.ReadFile(logPath)
		return code, string(b)
	}
	t.Cleanup(func() { stop() })
	return stop
}

// peersOfHome asks the node running on home for its peers (nil while none
// answers).
func peersOfHome(dir string) []node.PeerInfo {
	cl, err := api.Dial(context.Background(), dir)
	if err != nil {
		return nil
	}
	defer cl.Close()
	r, err := cl.Peers(context.Background())
	if err != nil {
		return nil
	}
	return r.Peers
}

// TestTestnetEndToEnd builds the binary and drives a test network of
// separate processes with it, as a user would.
func TestTestnetEndToEnd(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end: builds the dms binary and starts 6 node processes; skipped under -short")
	}
	bin := buildDMS(t)
	dir := filepath.Join(t.TempDir(), "tn")
	t.Cleanup(func() { dmsExec(t, bin, "testnet", "down", "--dir", dir) }) // if the test fails half-way

	start := time.Now()
	dmsExec(t, bin, "testnet", "up", "--nodes", "4", "--dir", dir, "--timeout", "3m").want(t, 0, "is up: 4 nodes", "dms --home "+filepath.Join(dir, "node-3")+" peers")
	t.Logf("testnet up --nodes 4: %v", time.Since(start).Round(time.Millisecond))
	rec, err := testnet.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Nodes) != 4 || rec.UpPID != 0 || !strings.HasPrefix(rec.Network, "testnet-") {
		t.Fatalf("testnet.json: %+v", rec)
	}
	for _, n := range rec.Nodes {
		if gone(n.PID) || n.PeerID == "" || len(n.Addrs) == 0 {
			t.Fatalf("node %+v: not running, or no peer ID or address recorded", n)
		}
	}
	// A second network in the same directory is refused.
	dmsExec(t, bin, "testnet", "up", "--nodes", "2", "--dir", dir).want(t, 1, "a test network is already up in "+dir)

	// Every node sees every other, on the bid-request topic too.
	var peers api.PeersResponse
	r := dmsExec(t, bin, "--home", filepath.Join(dir, "node-3"), "peers", "--json")
	r.want(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &peers); err != nil {
		t.Fatal(err)
	}
	if len(peers.Peers) != 3 {
		t.Fatalf("node-3 sees %d peers, want 3:\n%s", len(peers.Peers), r.stdout)
	}
	for _, p := range peers.Peers {
		if !p.OnTopic || p.ID.String() == rec.Nodes[3].PeerID {
			t.Fatalf("node-3's peer %+v: want another node, on the topic", p)
		}
	}
	dmsExec(t, bin, "--home", filepath.Join(dir, "node-1"), "capability", "--json").want(t, 0, `"onboarded": true`)
	dmsExec(t, bin, "testnet", "status", "--dir", dir).want(t, 0, "node-3", "yes")

	// A job submitted on a node that is not the bootstrap node runs on
	// another process and its output comes back.
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(wasm, examples.HelloWasm, 0o600); err != nil {
		t.Fatal(err)
	}
	job := dmsExec(t, bin, "--home", filepath.Join(dir, "node-2"), "job", "submit", "--cpu", "0.5", "--memory", "128MiB",
		"--duration", "1m", "--wasm", wasm, "--", "e2e")
	job.want(t, 0, "Hello from dms, e2e!", "primes below 100000: 9592")
	if !strings.Contains(job.stderr, "completed") {
		t.Fatalf("job progress on stderr does not say completed:\n%s", job.stderr)
	}

	// A node given only node-0's address and the swarm key joins; one with
	// another key, started at the same time, does not.
	joiner, outsider := filepath.Join(t.TempDir(), "joiner"), filepath.Join(t.TempDir(), "outsider")
	for _, h := range []string{joiner, outsider} {
		dmsExec(t, bin, "--home", h, "init").want(t, 0)
	}
	otherKey := filepath.Join(t.TempDir(), "other.key")
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := p2p.WriteSwarmKey(otherKey, key); err != nil {
		t.Fatal(err)
	}
	stopJoiner := startRun(t, bin, joiner, "--network", rec.Network, "--swarm-key", rec.SwarmKey, "--bootstrap", rec.Nodes[0].Addrs[0])
	stopOutsider := startRun(t, bin, outsider, "--network", rec.Network, "--swarm-key", otherKey, "--bootstrap", rec.Nodes[0].Addrs[0])
	poll.Until(t, 2*time.Minute, "the joining node to see the whole network", func() bool {
		return len(peersOfHome(joiner)) >= 4 // >= 2 is what joining takes; discovery finds them all
	})
	poll.Until(t, 2*time.Minute, "the outsider to answer on its control socket", func() bool {
		_, err := api.Dial(context.Background(), outsider)
		return err == nil
	})
	// The outsider had as long to get in as the joiner took to meet
	// everyone, and dialled the same bootstrap peer.
	if ps := peersOfHome(outsider); len(ps) != 0 {
		t.Fatalf("a node with another swarm key connected to %d peers: %+v", len(ps), ps)
	}
	var outsiderID api.IDResponse
	if err := json.Unmarshal([]byte(dmsExec(t, bin, "--home", outsider, "id", "--json").stdout), &outsiderID); err != nil {
		t.Fatal(err)
	}
	for _, p := range peersOfHome(rec.Nodes[0].Home) {
		if p.ID.String() == outsiderID.PeerID {
			t.Fatal("node-0 is connected to the node with another swarm key")
		}
	}
	// SIGTERM stops a node cleanly: exit 0, socket gone.
	for name, stop := range map[string]func() (int, string){"joiner": stopJoiner, "outsider": stopOutsider} {
		if code, log := stop(); code != 0 || !strings.Contains(log, "node stopped") {
			t.Fatalf("%s after SIGTERM: exit %d\n%s", name, code, log)
		}
	}
	if _, err := os.Stat(home.SocketPath(joiner)); !os.IsNotExist(err) {
		t.Fatalf("joiner's socket after it stopped: %v", err)
	}

	dmsExec(t, bin, "testnet", "down", "--dir", dir).want(t, 0, fmt.Sprintf("Stopped test network %s: 4 nodes.", rec.Network))
	for _, n := range rec.Nodes {
		if !gone(n.PID) {
			t.Errorf("%s (pid %d) still runs after testnet down", n.Name, n.PID)
		}
		if _, err := os.Stat(home.SocketPath(n.Home)); !os.IsNotExist(err) {
			t.Errorf("%s left its socket: %v", n.Name, err)
		}
		if log, err := os.ReadFile(n.Log); err != nil || !strings.Contains(string(log), "node stopped") {
			t.Errorf("%s did not stop cleanly (%v):\n%s", n.Name, err, log)
		}
	}
	if _, err := os.Stat(testnet.RecordPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("testnet.json after down: %v", err)
	}
	dmsExec(t, bin, "testnet", "status", "--dir", dir).want(t, 1, "no test network is up in "+dir)
	dmsExec(t, bin, "testnet", "down", "--dir", dir, "--clean").want(t, 0, "No test network is up", "Removed 4 homes")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s after down --clean: %v", dir, err)
	}
}
