package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/cheat"
	"github.com/dms-project/dms/internal/nodehook"
	"github.com/dms-project/dms/testnet"
)

// cheatEnv makes this test binary the dms command line, with a node it
// runs a provider built to cheat (internal/cheat). Its value is MODE (forge,
// silent or endless: every node the process runs cheats) or NAME:MODE (only
// a node whose home directory is named NAME does). Only a test binary reads
// it, so a release build cannot cheat. The node processes that a test
// network starts from the test binary inherit it, so a 5-node test network
// with one cheat is:
//
//	go build -o /tmp/dms ./cmd/dms && go test -c -o /tmp/dms.test ./cmd/dms
//	DMS_TEST_CHEAT=node-4:forge /tmp/dms.test testnet up --nodes 5 --dir /tmp/tn
//	/tmp/dms --home /tmp/tn/node-1 job submit --wasm examples/hello/hello.wasm ...
const cheatEnv = "DMS_TEST_CHEAT"

// runCheating runs the command line that os.Args names, as dms would, with
// nodes that cheat as spec says.
func runCheating(spec string) int {
	name, mode, only := strings.Cut(spec, ":")
	if !only {
		name, mode = "", spec
	}
	m, err := cheat.ParseMode(mode)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%s: %v (want MODE or NAME:MODE)\n", cheatEnv, spec, err)
		return 2
	}
	if !only || filepath.Base(homeArg(os.Args[1:])) == name {
		nodehook.Backend = cheat.New(m).Wrap
	}
	return run(os.Args, os.Stdout, os.Stderr)
}

// homeArg is the --home flag's value among args, "" without one.
func homeArg(args []string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--home="); ok {
			return v
		}
		if a == "--home" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// TestReplicasOutvoteACheatingNode is issue 19's check on a test network
// of separate processes: five nodes, node-4 a provider that forges its
// results (this test binary, run with cheatEnv), node-1 the requester. A
// job run on three providers that must agree by majority gives the honest
// result, though the forger took part, and its receipt verifies offline.
func TestReplicasOutvoteACheatingNode(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end: builds the dms binary and starts 5 node processes; skipped under -short")
	}
	bin := buildDMS(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tn")
	t.Cleanup(func() { dmsExec(t, bin, "testnet", "down", "--dir", dir) }) // if the test fails half-way
	up := exec.Command(self, "testnet", "up", "--nodes", "5", "--dir", dir, "--timeout", "3m")
	up.Env = append(os.Environ(), cheatEnv+"=node-4:"+string(cheat.Forge))
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("testnet up with a forger: %v\n%s", err, out)
	}
	rec, err := testnet.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	forger := rec.Nodes[4].PeerID
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(wasm, examples.HelloWasm, 0o600); err != nil {
		t.Fatal(err)
	}
	requester := filepath.Join(dir, "node-1")
	// The forger bids best on everything, but a job may close its bidding
	// before a bid from a node that joined the mesh last: a few jobs make
	// sure it took part in one.
	for i := 0; ; i++ {
		job := dmsExec(t, bin, "--home", requester, "job", "submit", "--replicas", "3", "--agree", "majority",
			"--cpu", "0.5", "--memory", "128MiB", "--duration", "1m", "--wasm", wasm)
		job.want(t, 0, "primes below 100000: 9592")
		if strings.Contains(job.stdout, cheat.Forged) {
			t.Fatalf("the forged output was delivered:\n%s", job.stdout)
		}
		m := regexp.MustCompile(`submitting job ([0-9a-f]{32})`).FindStringSubmatch(job.stderr)
		if m == nil {
			t.Fatalf("no job ID in the progress:\n%s", job.stderr)
		}
		receipt := filepath.Join(t.TempDir(), "receipt.json")
		dmsExec(t, bin, "--home", requester, "job", "receipt", m[1], "--out", receipt).want(t, 0)
		dmsExec(t, bin, "receipt", "verify", receipt).want(t, 0)
		if strings.Contains(job.stderr, forger[len(forger)-8:]) {
			t.Logf("job %s outvoted the forger:\n%s", m[1], job.stderr)
			return
		}
		if i == 4 {
			t.Fatalf("the forger took part in none of %d jobs: the test shows nothing", i+1)
		}
	}
}
