package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/orchestrator"
)

// writeReceipt seals a receipt for outputs and stdout, as a provider
// would, and writes it as dms job receipt does.
func writeReceipt(t *testing.T, dir string, outputs map[string]string, stdout string) (string, peer.ID, []byte) {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	r := orchestrator.Receipt{
		JobID: orchestrator.NewJobID(), AllocationID: "alloc-1", Requester: id, Provider: id, Executor: orchestrator.ExecutorWasm,
		BidSHA256: archive.Sum([]byte("bid")), SpecSHA256: archive.Sum([]byte("spec")),
		StdoutSHA256: orchestrator.StreamHash([]byte(stdout)), StderrSHA256: orchestrator.StreamHash(nil),
		State: orchestrator.StateCompleted, Started: time.Now().Add(-time.Second), Ended: time.Now(),
		OutputsSHA256: archive.Sum([]byte("archive")),
	}
	for p, content := range outputs {
		r.Outputs = append(r.Outputs, archive.File{Path: p, Size: int64(len(content)), SHA256: archive.Sum([]byte(content))})
	}
	env, err := orchestrator.SealReceipt(&r, key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(receiptFile{Format: receiptFormat, Envelope: env, Signer: id, Receipt: &r})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "r.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, id, env
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		local := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// dms receipt verify checks a receipt with nothing but it and the files:
// it passes when they match, names the file changed after the fact, and
// fails a receipt changed in one byte.
func TestReceiptVerifyNamesWhatDoesNotMatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	outputs := map[string]string{"summary.txt": "2 files\n", "sub/a.txt": "ALPHA\n"}
	path, signer, env := writeReceipt(t, dir, outputs, "done\n")
	outDir := filepath.Join(dir, "out")
	writeFiles(t, outDir, outputs)
	stdout := filepath.Join(dir, "stdout")
	writeFiles(t, dir, map[string]string{"stdout": "done\n"})

	dms(t, "receipt", "verify", path, "--outputs", outDir, "--stdout", stdout).want(t, 0,
		"signature: valid, signed by "+signer.String(), "ok        output summary.txt", "ok        output sub/a.txt", "ok        stdout",
		"unchecked stderr", "unchecked bid")
	// Without the files, it says what it could not check.
	dms(t, "receipt", "verify", path).want(t, 0, "unchecked outputs (2 files", "unchecked stdout")

	// A file changed after the fact is named, with both hashes.
	writeFiles(t, outDir, map[string]string{"summary.txt": "3 files\n"})
	dms(t, "receipt", "verify", path, "--outputs", outDir).want(t, 1,
		"MISMATCH  output summary.txt: sha256 "+archive.Sum([]byte("2 files\n"))+" in the receipt, sha256 "+archive.Sum([]byte("3 files\n"))+" on disk",
		"ok        output sub/a.txt", "receipt does not match: 1 field differs")
	writeFiles(t, dir, map[string]string{"stdout": "forged\n"})
	dms(t, "receipt", "verify", path, "--stdout", stdout).want(t, 1, "MISMATCH  stdout: sha256 "+orchestrator.StreamHash([]byte("done\n")))

	// One byte of the envelope changed: the signature fails.
	env[len(env)/2] ^= 1
	data, err := json.Marshal(receiptFile{Format: receiptFormat, Envelope: env})
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dms(t, "receipt", "verify", bad).want(t, 1, "receipt "+bad+" does not verify")
	dms(t, "receipt", "verify").want(t, 2, "needs one receipt file")
}
