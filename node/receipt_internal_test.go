package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/orchestrator"
)

// Outputs fetched that differ from the receipt's list fail the job, naming
// the file; outputs that could not be fetched are not held against it.
func TestFetchedOutputsAreCheckedAgainstTheReceipt(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	file := func(p, content string) archive.File {
		return archive.File{Path: p, Size: int64(len(content)), SHA256: archive.Sum([]byte(content))}
	}
	r := orchestrator.Receipt{
		JobID: orchestrator.NewJobID(), AllocationID: "alloc-1", Requester: id, Provider: id, Executor: orchestrator.ExecutorWasm,
		BidSHA256: archive.Sum(nil), SpecSHA256: archive.Sum(nil), StdoutSHA256: archive.Sum(nil), StderrSHA256: archive.Sum(nil),
		State: orchestrator.StateCompleted, Ended: time.Now(), OutputsSHA256: archive.Sum([]byte("tar")),
		Outputs: []archive.File{file("a.txt", "a"), file("summary.txt", "2 files")},
	}
	env, err := orchestrator.SealReceipt(&r, key)
	if err != nil {
		t.Fatal(err)
	}
	res := &orchestrator.Result{State: orchestrator.StateCompleted, Receipt: env}
	if err := checkOutputs(res, &JobOutputs{Files: []archive.File{file("a.txt", "a"), file("summary.txt", "2 files")}}); err != nil {
		t.Fatal(err)
	}
	err = checkOutputs(res, &JobOutputs{Files: []archive.File{file("a.txt", "a"), file("summary.txt", "3 files")}})
	if !errors.Is(err, orchestrator.ErrReceipt) || !strings.Contains(err.Error(), "receipt does not match: output summary.txt: sha256 ") || !strings.Contains(err.Error(), " fetched") {
		t.Fatalf("a changed output: %v", err)
	}
	if err := checkOutputs(res, &JobOutputs{Error: "provider gone"}); err != nil {
		t.Fatalf("outputs not fetched: %v", err)
	}
}
