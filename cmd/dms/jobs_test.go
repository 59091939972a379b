package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/testnet"
)

func TestDemoRunsTheSampleJob(t *testing.T) {
	t.Parallel()
	r := dms(t, "demo")
	r.want(t, 0, "Hello from dms, world!", "Winner: node", "Bids (* won):", "submit -> done")
	if strings.Contains(r.stdout, "Winner: node 1 ") {
		t.Fatalf("the requester (node 1) ran its own job:\n%s", r.stdout)
	}
	dms(t, "demo", "--nodes", "1").want(t, 2, "--nodes")
}

// serveNode serves the control API of n on a fresh home, as dms run does,
// and returns the home.
func serveNode(t *testing.T, n *node.Node) string {
	t.Helper()
	dir := t.TempDir()
	s := api.NewServer(n, dir, slog.New(slog.DiscardHandler))
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return dir
}

// waitJob polls dms job status until the job has ended.
func waitJob(t *testing.T, home, id string) node.JobRecord {
	t.Helper()
	var rec node.JobRecord
	poll.Until(t, 2*time.Minute, "job "+id+" to end", func() bool {
		r := dms(t, "--home", home, "job", "status", id, "--json")
		r.want(t, 0)
		rec = node.JobRecord{}
		if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil {
			t.Fatalf("job status --json: %v\n%s", err, r.stdout)
		}
		return rec.Final()
	})
	return rec
}

// TestJobCommands drives every job command against one in-process network
// (node 1 submits, the others provide), each node served on its own home.
func TestJobCommands(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{Nodes: 4, Requesters: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	homes := map[string]string{} // peer ID -> home
	for _, n := range ln.Nodes {
		homes[n.ID().String()] = serveNode(t, n)
	}
	req := homes[ln.Nodes[1].ID().String()]
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(wasm, examples.HelloWasm, 0o600); err != nil {
		t.Fatal(err)
	}
	job := func(args ...string) result { return dms(t, append([]string{"--home", req, "job"}, args...)...) }
	submit := func(args ...string) result {
		return job(append([]string{"submit", "--cpu", "0.5", "--memory", "128MiB", "--duration", "1m", "--wasm", wasm}, args...)...)
	}

	var first node.JobRecord
	t.Run("submit", func(t *testing.T) {
		r := submit("--env", "A=1,2", "--", "tester", "-n", "1000")
		r.want(t, 0, "Hello from dms, tester!", "primes below 1000: 168")
		for _, step := range []string{"submitting job", "bid request sent", "bid from", "bidding closed with", "winner", "running on", "completed: exit code 0"} {
			if !strings.Contains(r.stderr, step) {
				t.Errorf("progress does not say %q:\n%s", step, r.stderr)
			}
		}
		if strings.Contains(r.stdout, "bid from") {
			t.Errorf("progress went to stdout:\n%s", r.stdout)
		}
	})
	t.Run("json", func(t *testing.T) {
		r := submit("--json", "--", "json")
		r.want(t, 0)
		if err := json.Unmarshal([]byte(r.stdout), &first); err != nil {
			t.Fatalf("--json is not one JSON document: %v\n%s", err, r.stdout)
		}
		if first.State != node.JobCompleted || !strings.Contains(string(first.Result.Stdout), "Hello from dms, json!") || len(first.Bids) == 0 {
			t.Fatalf("record %+v", first)
		}
		if first.Provider == ln.Nodes[1].ID() {
			t.Fatal("the requester ran its own job")
		}
	})
	t.Run("detach status logs", func(t *testing.T) {
		r := submit("--detach", "--stdin", writeFile(t, "piped in\n"), "--", "detached")
		r.want(t, 0, "follow it with: dms --home "+req+" job logs -f")
		id := strings.TrimSpace(r.stdout)
		rec := waitJob(t, req, id[:8]) // any unique prefix names the job
		if rec.ID != id || rec.State != node.JobCompleted {
			t.Fatalf("detached job: %+v", rec)
		}
		job("logs", id).want(t, 0, "Hello from dms, detached!", "stdin: piped in")
		job("status", id).want(t, 0, "state:      completed", "exit code 0", "steps:", "winner")
	})
	t.Run("list", func(t *testing.T) {
		job("list").want(t, 0, "ID", "STATE", shortJobID(first.ID), "completed")
		r := job("list", "--json")
		r.want(t, 0)
		var resp api.JobListResponse
		if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || len(resp.Jobs) < 3 {
			t.Fatalf("list --json: %v, %d jobs\n%s", err, len(resp.Jobs), r.stdout)
		}
	})
	t.Run("bids", func(t *testing.T) {
		r := job("bids", first.ID)
		r.want(t, 0, "Bids received for job "+first.ID, "PRICE", "SCORE")
		if !strings.Contains(r.stdout, "*  "+shortPeer(first.Provider)) {
			t.Errorf("the winner %s is not marked:\n%s", shortPeer(first.Provider), r.stdout)
		}
	})
	t.Run("allocations", func(t *testing.T) {
		home := homes[first.Provider.String()]
		dms(t, "--home", home, "allocations").want(t, 0, first.AllocationID, shortJobID(first.ID), shortPeer(ln.Nodes[1].ID()), "completed")
		r := dms(t, "--home", home, "allocations", "--json")
		r.want(t, 0)
		var resp api.AllocationsResponse
		if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || len(resp.Allocations) == 0 {
			t.Fatalf("allocations --json: %v\n%s", err, r.stdout)
		}
		dms(t, "--home", req, "allocations").want(t, 0, "No allocations")
	})
	t.Run("job exits non-zero", func(t *testing.T) {
		// dms exits with the job's own code, as docker run does.
		r := submit("--", "-n", "many")
		r.want(t, 2, "exited with code 2", "hello: -n wants a non-negative integer")
		if strings.Contains(r.stderr, "--help") {
			t.Errorf("a job's exit code read as a usage error:\n%s", r.stderr)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		r := dms(t, "--home", req, "job", "submit", "--cpu", "0.5", "--memory", "512MiB", "--duration", "1m", "--wasm", wasm, "--detach", "--", "-n", "400000000")
		r.want(t, 0)
		id := strings.TrimSpace(r.stdout)
		job("cancel", id).want(t, 0, "cancelled")
		if rec := waitJob(t, req, id); rec.State != node.JobCancelled {
			t.Fatalf("cancelled job ended %s", rec.State)
		}
		job("cancel", id).want(t, 1, "already ended")
	})
	filesWasm := filepath.Join(t.TempDir(), "files.wasm")
	if err := os.WriteFile(filesWasm, examples.FilesWasm, 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "a.txt"), []byte("alpha\n"), 0o600)
	os.WriteFile(filepath.Join(data, "sub", "b.txt"), []byte("beta\n"), 0o600)
	wantOut := map[string]string{"a.txt.upper": "ALPHA\n", "sub/b.txt.upper": "BETA\n"}
	checkDir := func(t *testing.T, dir string) {
		t.Helper()
		for p, content := range wantOut {
			if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != content {
				t.Errorf("%s: %q %v", p, b, err)
			}
		}
	}
	t.Run("inputs and outputs", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		r := job("submit", "--wasm", filesWasm, "--cpu", "0.5", "--memory", "128MiB", "--duration", "1m",
			"--input", data+":/inputs/data", "--output-dir", out, "--", "-in", "/inputs/data")
		r.want(t, 0, "file a.txt: 6 bytes", "2 files, 11 bytes", "Wrote 3 files", archive.Sum([]byte("ALPHA\n"))[:16])
		checkDir(t, out)
		id := jobID(t, r)
		job("status", id).want(t, 0, "inputs:     2 files, 11B", "outputs:    3 files", "receipt:    signed by ", ", verified (dms job receipt")
		// job get writes them again elsewhere, and never over files there.
		again := filepath.Join(t.TempDir(), "again")
		job("get", id, "--dir", again).want(t, 0, "Wrote 3 files")
		checkDir(t, again)
		job("get", id, "--dir", again).want(t, 1, "file exists")
		// Its receipt, exported, verifies offline against the files;
		// one changed after the fact is named.
		receipt := filepath.Join(t.TempDir(), "r.json")
		var rec node.JobRecord
		if st := job("status", id, "--json"); json.Unmarshal([]byte(st.stdout), &rec) != nil || rec.Provider == "" {
			t.Fatalf("status --json: %s", st.stdout)
		}
		job("receipt", id, "--out", receipt).want(t, 0, "signed by "+rec.Provider.String())
		dms(t, "receipt", "verify", receipt, "--outputs", out).want(t, 0, "signature: valid", "ok        output summary.txt")
		if err := os.WriteFile(filepath.Join(out, "a.txt.upper"), []byte("FORGED\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		dms(t, "receipt", "verify", receipt, "--outputs", out).want(t, 1, "MISMATCH  output a.txt.upper: sha256 "+archive.Sum([]byte("ALPHA\n")))
		// A job that left none says so.
		job("get", first.ID, "--dir", t.TempDir()).want(t, 1, "left no files in /outputs")
	})
	t.Run("job file", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "out")
		spec := "wasm: " + filesWasm + "\ncpu: 0.5\nmemory: 128MiB\nduration: 1m\ninputs: [" + data + ":/inputs/data]\nargs: [-in, /inputs/data]\noutput-dir: out\nenv: [A=1, B=2]\n"
		f := filepath.Join(dir, "job.yaml")
		os.WriteFile(f, []byte(spec), 0o600)
		job("submit", "-f", f).want(t, 0, "2 files, 11 bytes")
		checkDir(t, out) // relative to the file
		job("submit", "-f", f, "--memory", "4XB").want(t, 2, "--memory")
		os.WriteFile(f, []byte("memory: 4XB\n"), 0o600)
		job("submit", "-f", f, "--wasm", filesWasm, "--cpu", "1", "--duration", "1m").want(t, 2, `invalid value "4XB" for memory in job.yaml`)
		os.WriteFile(f, []byte("colour: blue\n"), 0o600)
		job("submit", "-f", f).want(t, 2, `unknown key "colour"`, "keys: wasm, image")
	})
	t.Run("logs follow", func(t *testing.T) {
		r := job("submit", "--wasm", filesWasm, "--cpu", "0.5", "--memory", "128MiB", "--duration", "1m", "--detach", "--", "-tick", "5")
		r.want(t, 0)
		id := strings.TrimSpace(r.stdout)
		r = job("logs", "-f", id)
		r.want(t, 0, "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n0 files, 0 bytes\n")
		if strings.Count(r.stdout, "tick 1\n") != 1 {
			t.Fatalf("output printed twice:\n%s", r.stdout)
		}
		job("logs", "--follow", id).want(t, 0, "tick 5") // an ended job: its output at once
	})
	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out, errb syncBuffer
		code := make(chan int, 1)
		go func() {
			code <- runCtx(ctx, []string{"dms", "--home", req, "job", "submit", "--wasm", filesWasm, "--cpu", "0.5", "--memory", "128MiB", "--duration", "1m", "--", "-tick", "600"}, &out, &errb)
		}()
		poll.Until(t, 2*time.Minute, "the job to print its first line", func() bool { return strings.Contains(out.String(), "tick 1") })
		cancel() // as Ctrl-C does
		if c := <-code; c != 130 || !strings.Contains(errb.String(), "interrupted") {
			t.Fatalf("exit %d, want 130\n%s", c, errb.String())
		}
	})
	t.Run("bad input", func(t *testing.T) {
		notWasm := writeFile(t, "#!/bin/sh\necho hi\n")
		dms(t, "--home", req, "job", "submit", "--cpu", "1", "--memory", "1GiB", "--duration", "1m").want(t, 2, "missing --wasm, --image or --command")
		submit("--image", "x:1").want(t, 2, "give one of them")
		submit("--input", "/no/such/file").want(t, 2, "--input", "no such file")
		submit("--input", wasm+":relative").want(t, 2, "GUEST an absolute path")
		submit("--input", wasm+":/outputs/x").want(t, 2, "/outputs holds what the job writes")
		submit("--gpu", "1").want(t, 2, "--gpu needs a container job")
		submit("--detach", "--output-dir", t.TempDir()).want(t, 2, "do not go together")
		full := t.TempDir()
		os.WriteFile(filepath.Join(full, "old.txt"), []byte("old"), 0o600)
		submit("--output-dir", full).want(t, 2, "--output-dir", "is not empty (it holds old.txt)", "dms job get ID --dir NEW")
		submit("--memory", "4XB").want(t, 2, "--memory", "want a size")
		job("submit", "--cpu", "1", "--memory", "1GiB", "--duration", "soon", "--wasm", wasm).want(t, 2, "--duration")
		job("submit", "--cpu", "1", "--memory", "1GiB", "--duration", "1m", "--wasm", notWasm).want(t, 2, "--wasm", "not a WebAssembly module")
		job("submit", "--cpu", "1", "--memory", "1GiB", "--duration", "1m", "--wasm", wasm+".missing").want(t, 2, "--wasm", "no such file")
		submit("--env", "NOEQUALS").want(t, 2, "--env")
		submit("--max-price", "-1").want(t, 2, "--max-price")
		big := filepath.Join(t.TempDir(), "big.wasm")
		if err := os.WriteFile(big, append(append([]byte{}, examples.HelloWasm[:8]...), make([]byte, 17<<20)...), 0o600); err != nil {
			t.Fatal(err)
		}
		job("submit", "--cpu", "1", "--memory", "1GiB", "--duration", "1m", "--wasm", big).want(t, 2, "--wasm", "over the limit of 16MiB")
		job("status", "0123456789abcdef").want(t, 2, "no job 0123456789abcdef on this node")
		job("logs", "nope").want(t, 2, "no job nope on this node")
		job("status").want(t, 2, "needs one job ID")
		job("status", "a", "b").want(t, 2, `unexpected argument "b"`)
		job("frobnicate").want(t, 2, "unknown job command")
	})
	t.Run("no node running", func(t *testing.T) {
		idle := newHome(t)
		dms(t, "--home", idle, "job", "list").want(t, 1, "no dms node is running", "dms --home "+idle+" run")
		dms(t, "--home", idle, "allocations").want(t, 1, "no dms node is running")
		// Every command that needs a node says the same of a directory that
		// is no home yet.
		empty := t.TempDir()
		for _, args := range [][]string{{"job", "list"}, {"allocations"}, {"status"}, {"peers"}, {"id"}, {"job", "status", "abcd"}} {
			dms(t, append([]string{"--home", empty}, args...)...).want(t, 2, "home not initialised", "run dms init")
		}
	})
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// jobID finds the job ID in submit's progress.
func jobID(t *testing.T, r result) string {
	t.Helper()
	_, rest, ok := strings.Cut(r.stderr, "submitting job ")
	if !ok {
		t.Fatalf("no job ID in:\n%s", r.stderr)
	}
	id, _, _ := strings.Cut(rest, ":")
	return id
}
