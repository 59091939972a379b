package node_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

// filesOnDisk hashes the files under dir as archive.Unpack names them.
func filesOnDisk(t *testing.T, dir string) []archive.File {
	t.Helper()
	var out []archive.File
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, archive.File{Path: filepath.ToSlash(rel), Size: int64(len(b)), SHA256: archive.Sum(b)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A job that completes is recorded with its provider's receipt, which
// verifies: signed by the provider that ran it, for this requester, over
// the inputs sent, the output received and the files fetched; a file
// changed afterwards no longer matches it.
func TestCompletedJobKeepsAReceiptThatVerifiesAgainstItsOutputs(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 3, 1000, nil)
	in := inputs(t, map[string]string{"inputs/a.txt": "alpha\n", "inputs/sub/b.txt": "beta\n"})
	rec, err := nodes[1].SubmitJob(context.Background(), filesJob(orchestrator.ExecutorWasm, in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != node.JobCompleted || len(rec.Receipt) == 0 {
		t.Fatalf("job %s, receipt of %d bytes: %s", rec.State, len(rec.Receipt), rec.Error)
	}
	r, err := orchestrator.OpenReceipt(rec.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	if r.Provider != rec.Provider || r.Requester != nodes[1].ID() || r.JobID != rec.ID || r.AllocationID != rec.AllocationID {
		t.Fatalf("receipt names provider %s, requester %s, job %s, allocation %s", r.Provider, r.Requester, r.JobID, r.AllocationID)
	}
	if r.StdoutSHA256 != orchestrator.StreamHash(rec.Result.Stdout) || r.ExitCode != 0 || r.State != orchestrator.StateCompleted {
		t.Fatalf("receipt's stdout %s exit %d %s, received %q", r.StdoutSHA256, r.ExitCode, r.State, rec.Result.Stdout)
	}
	if r.InputsSHA256 != archive.Sum(in) || len(r.Inputs) != 2 || r.Started.IsZero() || r.Ended.Before(r.Started) {
		t.Fatalf("receipt's inputs %s %+v, times %v to %v", r.InputsSHA256, r.Inputs, r.Started, r.Ended)
	}
	if len(r.Outputs) != 3 {
		t.Fatalf("receipt's outputs %+v", r.Outputs)
	}
	if ms := orchestrator.CompareFiles("output", "on disk", r.Outputs, filesOnDisk(t, rec.Outputs.Dir)); len(ms) > 0 {
		t.Fatalf("fetched outputs do not match the receipt: %v", ms)
	}
	// Changed after the fact: named.
	p := filepath.Join(rec.Outputs.Dir, "summary.txt")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.ToUpper(b), 0o644); err != nil {
		t.Fatal(err)
	}
	ms := orchestrator.CompareFiles("output", "on disk", r.Outputs, filesOnDisk(t, rec.Outputs.Dir))
	if len(ms) != 1 || ms[0].Field != "output summary.txt" || !strings.Contains(ms[0].String(), "on disk") {
		t.Fatalf("an edited output: %v", ms)
	}
}
