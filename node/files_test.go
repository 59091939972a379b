package node_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/orchestrator"
)

// inputs packs files (guest path → content) the way the CLI does.
func inputs(t *testing.T, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	var entries []archive.Entry
	for guest, content := range files {
		local := filepath.Join(dir, filepath.FromSlash(guest))
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, archive.Entry{Local: local, Path: guest})
	}
	data, _, err := archive.Pack(entries, orchestrator.MaxInputSize)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func filesJob(executor string, in []byte, args ...string) orchestrator.Submission {
	sub := orchestrator.Submission{Inputs: in, Job: orchestrator.JobSpec{
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: 128 * capability.MiB},
		Duration:     seconds.Duration(time.Minute), Executor: executor, Args: args,
	}}
	if executor == orchestrator.ExecutorWasm {
		sub.Job.Module = examples.FilesWasm
	}
	return sub
}

// checkOutputs compares what the requester kept of a job's outputs with
// what the files job must have written for in.
func checkOutputs(t *testing.T, rec node.JobRecord, want map[string]string) {
	t.Helper()
	if rec.Outputs == nil || rec.Outputs.Error != "" {
		t.Fatalf("outputs %+v", rec.Outputs)
	}
	got := map[string]archive.File{}
	for _, f := range rec.Outputs.Files {
		got[f.Path] = f
	}
	for p, content := range want {
		b, err := os.ReadFile(filepath.Join(rec.Outputs.Dir, filepath.FromSlash(p)))
		if err != nil || string(b) != content || got[p].SHA256 != archive.Sum(b) {
			t.Errorf("output %s: %q %v (recorded %+v)", p, b, err, got[p])
		}
	}
}

// A wasm job reads its inputs read-only at their guest paths and writes
// /outputs; the requester fetches the outputs and keeps them, hashed.
func TestWasmJobReadsInputsAndWritesOutputs(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 3, 1000, nil)
	in := inputs(t, map[string]string{"inputs/a.txt": "alpha\n", "inputs/sub/b.txt": "beta\n"})
	rec, err := nodes[1].SubmitJob(context.Background(), filesJob(orchestrator.ExecutorWasm, in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != node.JobCompleted || !strings.Contains(string(rec.Result.Stdout), "2 files, 11 bytes") {
		t.Fatalf("job %s: %q %q %s", rec.State, rec.Result.Stdout, rec.Result.Stderr, rec.Result.Reason)
	}
	checkOutputs(t, rec, map[string]string{"a.txt.upper": "ALPHA\n", "sub/b.txt.upper": "BETA\n", "summary.txt": "file a.txt: 6 bytes\nfile sub/b.txt: 5 bytes\n2 files, 11 bytes\n"})
	if len(rec.Inputs) != 2 {
		t.Fatalf("recorded inputs %+v", rec.Inputs)
	}
	// The inputs are read-only in the job.
	rec, err = nodes[1].SubmitJob(context.Background(), filesJob(orchestrator.ExecutorWasm, in, "-out", "/inputs"), nil)
	if err != nil || rec.Result.ExitCode == 0 {
		t.Fatalf("writing into /inputs: %v, exit %d", err, rec.Result.ExitCode)
	}
}

// A job that leaves more than the provider's limit in /outputs fails,
// naming the limit.
func TestOutputsOverTheLimitFailTheJob(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 3, 1000, func(i int, c *node.Config) { c.MaxOutputBytes = 1024 })
	in := inputs(t, map[string]string{"inputs/big.txt": strings.Repeat("x", 4096)})
	rec, _ := nodes[1].SubmitJob(context.Background(), filesJob(orchestrator.ExecutorWasm, in), nil)
	if rec.State != node.JobFailed || !strings.Contains(rec.Result.Reason, "limit of 1KiB") {
		t.Fatalf("job %s: %q", rec.State, rec.Result.Reason)
	}
}

// bigModule is a valid module of about size bytes: the tiny job with a
// custom section (which runtimes skip) of padding.
func bigModule(size int) []byte {
	name := "padding"
	payload := size - len(examples.TinyWasm) - 16
	body := binary.AppendUvarint(nil, uint64(len(name)))
	body = append(body, name...)
	body = append(body, make([]byte, payload)...)
	sec := append([]byte{0}, binary.AppendUvarint(nil, uint64(len(body)))...)
	return append(append(bytes.Clone(examples.TinyWasm), sec...), body...)
}

// A module far over one message travels over the fetch protocol and runs.
func TestFifteenMiBModuleRuns(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 3, 1000, nil)
	sub := filesJob(orchestrator.ExecutorWasm, nil)
	sub.Job.Module = bigModule(15 << 20)
	rec, err := nodes[1].SubmitJob(context.Background(), sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != node.JobCompleted || string(rec.Result.Stdout) != "tiny job ok\n" {
		t.Fatalf("job %s: %q %s", rec.State, rec.Result.Stdout, rec.Result.Reason)
	}
}

// A container job runs only on a provider that opted in and has the image;
// the others say why they did not bid.
func TestDockerJobOnAProviderThatHasTheImage(t *testing.T) {
	t.Parallel()
	ref := examples.NeedFilesImage(t)
	nodes := newNetwork(t, 3, 1000, nil)
	ctx := context.Background()
	docker := []string{orchestrator.ExecutorWasm, orchestrator.ExecutorDocker}
	if _, err := nodes[2].Onboard(ctx, onboarding.Request{Executors: &docker}, nil); err != nil {
		t.Fatal(err)
	}
	in := inputs(t, map[string]string{"inputs/a.txt": "alpha\n"})
	sub := filesJob(orchestrator.ExecutorDocker, in, "-exit", "3")
	sub.Job.Image = ref
	rec, err := nodes[1].SubmitJob(ctx, sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Provider != nodes[2].ID() {
		t.Fatalf("ran on %s, want the provider that opted into docker", rec.Provider)
	}
	if rec.State != node.JobCompleted || rec.Result.ExitCode != 3 {
		t.Fatalf("job %s exit %d: %q %s", rec.State, rec.Result.ExitCode, rec.Result.Stderr, rec.Result.Reason)
	}
	checkOutputs(t, rec, map[string]string{"a.txt.upper": "ALPHA\n"})
	if why := nodes[0].DeclinedBid(rec.ID); !strings.Contains(why, "does not run docker jobs") {
		t.Fatalf("node 0 (no docker) says %q about the job", why)
	}
	// An image nobody has draws no bid, and the provider says why.
	sub.Job.Image = "dms-no-such-image:never"
	sub.Job.ID = ""
	rec, err = nodes[1].SubmitJob(ctx, sub, nil)
	if !errors.Is(err, orchestrator.ErrNoBids) {
		t.Fatalf("a missing image: %v", err)
	}
	if why := nodes[2].DeclinedBid(rec.ID); !strings.Contains(why, "not on this provider") {
		t.Fatalf("node 2 says %q about the job with a missing image", why)
	}
}

// A host command (native executor) runs only where the provider opted in;
// it finds its inputs under $DMS_INPUTS and writes $DMS_OUTPUTS.
func TestNativeJobFindsItsFilesThroughTheEnvironment(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("skipping: no /bin/sh")
	}
	nodes := newNetwork(t, 3, 1000, nil)
	native := []string{orchestrator.ExecutorNative}
	if _, err := nodes[0].Onboard(context.Background(), onboarding.Request{Executors: &native}, nil); err != nil {
		t.Fatal(err)
	}
	sub := filesJob(orchestrator.ExecutorNative, inputs(t, map[string]string{"inputs/a.txt": "alpha\n"}))
	sub.Job.Command = []string{"/bin/sh", "-c", `tr a-z A-Z < "$DMS_INPUTS/inputs/a.txt" > "$DMS_OUTPUTS/a.txt.upper"; echo done`}
	rec, err := nodes[1].SubmitJob(context.Background(), sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Provider != nodes[0].ID() || rec.State != node.JobCompleted || string(rec.Result.Stdout) != "done\n" {
		t.Fatalf("job on %s: %s %q %q", rec.Provider, rec.State, rec.Result.Stdout, rec.Result.Stderr)
	}
	checkOutputs(t, rec, map[string]string{"a.txt.upper": "ALPHA\n"})
}
