package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/archive"
)

// receiptCase is an invocation of a provider by a requester and the
// receipt the provider would seal for it.
type receiptCase struct {
	providerKey crypto.PrivKey
	provider    peer.ID
	requester   peer.ID
	inv         *Invocation
	inputs      []byte
	res         *Result
	receipt     Receipt
}

func newReceiptCase(t *testing.T) *receiptCase {
	t.Helper()
	pk, provider := testPeer(t)
	_, requester := testPeer(t)
	sub := wasmJob("-n", "5")
	job := sub.Job
	job.ID = NewJobID()
	job.Env = map[string]string{"B": "2", "A": "1"}
	job.Stdin = []byte("in")
	inputs := []byte("an archive, as far as hashing goes")
	job.Inputs = &Blob{SHA256: archive.Sum(inputs), Size: int64(len(inputs))}
	bid, err := SealBid(&Bid{JobID: job.ID, Nonce: "abcdefgh", Provider: provider, Requester: requester, HoldExpires: time.Now()}, pk)
	if err != nil {
		t.Fatal(err)
	}
	c := &receiptCase{providerKey: pk, provider: provider, requester: requester, inputs: inputs,
		inv: &Invocation{Bid: *bid, Job: job}}
	c.res = &Result{State: StateCompleted, ExitCode: 0, Stdout: []byte("primes: 3\n"), Stderr: []byte("warn\n"),
		Outputs: &Outputs{Archive: Blob{SHA256: archive.Sum([]byte("outputs")), Size: 7}, Files: 1}}
	r := NewReceipt(c.inv, provider)
	r.AllocationID, r.State, r.ExitCode = "alloc-1", StateCompleted, 0
	r.Started, r.Ended = time.Now().Add(-time.Second), time.Now()
	r.StdoutSHA256, r.StdoutSize = StreamHash(c.res.Stdout), int64(len(c.res.Stdout))
	r.StderrSHA256, r.StderrSize = StreamHash(c.res.Stderr), int64(len(c.res.Stderr))
	r.OutputsSHA256 = c.res.Outputs.Archive.SHA256
	r.Outputs = []archive.File{{Path: "summary.txt", Size: 3, SHA256: archive.Sum([]byte("sum"))}}
	c.receipt = r
	return c
}

// expect is what the requester knows: it sent the job with its module
// inline and no inputs blob (those are the staged copy's).
func (c *receiptCase) expect() ReceiptExpect {
	job := c.inv.Job
	job.Inputs = nil
	return ReceiptFor(job, c.inputs, &c.inv.Bid, c.requester, c.res)
}

func (c *receiptCase) seal(t *testing.T) []byte {
	t.Helper()
	env, err := SealReceipt(&c.receipt, c.providerKey)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestReceiptThatMatchesVerifies(t *testing.T) {
	c := newReceiptCase(t)
	r, err := VerifyReceipt(c.seal(t), c.expect())
	if err != nil {
		t.Fatal(err)
	}
	if r.Provider != c.provider || r.Outputs[0].Path != "summary.txt" || r.ModuleSHA256 != ModuleHash(c.inv.Job.Module) {
		t.Fatalf("receipt %+v", r)
	}
}

// Whichever byte of a sealed receipt changes, it no longer opens: the
// signature covers the payload, its type and the signer's key.
func TestReceiptChangedInOneByteFailsVerification(t *testing.T) {
	c := newReceiptCase(t)
	env := c.seal(t)
	for i := range env {
		bad := bytes.Clone(env)
		bad[i] ^= 0x01
		if _, err := OpenReceipt(bad); err == nil {
			t.Fatalf("byte %d of %d changed: the receipt still opens", i, len(env))
		}
		if _, err := VerifyReceipt(bad, c.expect()); !errors.Is(err, ErrReceipt) {
			t.Fatalf("byte %d changed: %v, want ErrReceipt", i, err)
		}
	}
}

// Each thing a provider could get wrong, or lie about, is named.
func TestVerifyReceiptNamesTheFieldThatDoesNotMatch(t *testing.T) {
	otherKey, other := testPeer(t)
	cases := []struct {
		field  string
		change func(c *receiptCase) []byte // returns the envelope
	}{
		{"stdout", func(c *receiptCase) []byte { c.res.Stdout = []byte("forged\n"); return c.seal(t) }},
		{"stderr", func(c *receiptCase) []byte { c.res.Stderr = nil; return c.seal(t) }},
		{"exit code", func(c *receiptCase) []byte { c.res.ExitCode = 1; return c.seal(t) }},
		{"outputs", func(c *receiptCase) []byte { c.res.Outputs = nil; return c.seal(t) }},
		{"state", func(c *receiptCase) []byte { c.res.State = StateFailed; return c.seal(t) }},
		{"spec", func(c *receiptCase) []byte { c.receipt.SpecSHA256 = StreamHash([]byte("other")); return c.seal(t) }},
		{"bid", func(c *receiptCase) []byte { c.receipt.BidSHA256 = StreamHash([]byte("other")); return c.seal(t) }},
		{"inputs", func(c *receiptCase) []byte { c.receipt.InputsSHA256 = StreamHash([]byte("other")); return c.seal(t) }},
		{"requester", func(c *receiptCase) []byte { c.receipt.Requester = other; return c.seal(t) }},
		{"job", func(c *receiptCase) []byte { c.receipt.JobID = NewJobID(); return c.seal(t) }},
		{"signer", func(c *receiptCase) []byte {
			// Another peer's receipt, honestly signed by it.
			c.receipt.Provider = other
			env, err := SealReceipt(&c.receipt, otherKey)
			if err != nil {
				t.Fatal(err)
			}
			return env
		}},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			c := newReceiptCase(t)
			env := tc.change(c)
			_, err := VerifyReceipt(env, c.expect())
			var me *MismatchError
			if !errors.As(err, &me) || !errors.Is(err, ErrReceipt) || len(me.Mismatches) != 1 || me.Mismatches[0].Field != tc.field {
				t.Fatalf("err = %v, want one mismatch in %s", err, tc.field)
			}
			if !strings.HasPrefix(err.Error(), "receipt does not match: "+tc.field+": ") {
				t.Fatalf("message %q", err)
			}
		})
	}
	// A receipt signed by a key other than the one it names is no receipt.
	c := newReceiptCase(t)
	env, err := SealReceipt(&c.receipt, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyReceipt(env, c.expect()); !errors.Is(err, ErrReceipt) || !strings.Contains(err.Error(), "signed by") {
		t.Fatalf("a receipt naming another provider than its signer: %v", err)
	}
	if _, err := VerifyReceipt(nil, c.expect()); !errors.Is(err, ErrReceipt) || !strings.Contains(err.Error(), "sent none") {
		t.Fatalf("no receipt: %v", err)
	}
}

// The spec hash is the same whether the module went inline or was fetched,
// and survives the invocation's trip; any change to what runs changes it.
func TestSpecHashIsCanonical(t *testing.T) {
	c := newReceiptCase(t)
	job := c.inv.Job
	h := SpecHash(job)
	fetched := job
	fetched.Module, fetched.ModuleBlob = nil, &Blob{SHA256: ModuleHash(job.Module), Size: int64(len(job.Module))}
	if SpecHash(fetched) != h {
		t.Fatal("module inline and as a blob hash differently")
	}
	msg, err := EncodeInvokeMessage(&InvokeMessage{Invocation: c.inv})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeInvokeMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	if SpecHash(got.Invocation.Job) != h {
		t.Fatal("the spec hashes differently after travelling")
	}
	changed := job
	changed.Args = append([]string{"-x"}, job.Args...)
	if SpecHash(changed) == h {
		t.Fatal("other args, same spec hash")
	}
}

// A receipt whose file lists would not fit is sealed with the archives'
// hashes alone, and says so.
func TestReceiptTooLargeForItsFileListsKeepsTheArchiveHashes(t *testing.T) {
	c := newReceiptCase(t)
	for i := range 2000 {
		c.receipt.Outputs = append(c.receipt.Outputs, archive.File{Path: strings.Repeat("d/", 20) + NewJobID() + ".txt", SHA256: archive.Sum([]byte{byte(i)})})
	}
	r, err := VerifyReceipt(c.seal(t), c.expect())
	if err != nil {
		t.Fatal(err)
	}
	if !r.FilesOmitted || len(r.Outputs) != 0 || r.OutputsSHA256 == "" {
		t.Fatalf("files omitted %v, %d outputs, archive %q", r.FilesOmitted, len(r.Outputs), r.OutputsSHA256)
	}
}

func TestCompareFilesNamesEachFileThatDiffers(t *testing.T) {
	f := func(p, content string) archive.File {
		return archive.File{Path: p, Size: int64(len(content)), SHA256: archive.Sum([]byte(content))}
	}
	receipt := []archive.File{f("a.txt", "a"), f("b.txt", "b"), f("c.txt", "c")}
	found := []archive.File{f("a.txt", "a"), f("b.txt", "B"), f("d.txt", "d")}
	ms := CompareFiles("output", "on disk", receipt, found)
	var got []string
	for _, m := range ms {
		got = append(got, m.String())
	}
	want := []string{
		"output b.txt: sha256 " + archive.Sum([]byte("b")) + " in the receipt, sha256 " + archive.Sum([]byte("B")) + " on disk",
		"output c.txt: sha256 " + archive.Sum([]byte("c")) + " in the receipt, missing on disk",
		"output d.txt: not named in the receipt, sha256 " + archive.Sum([]byte("d")) + " on disk",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ms := CompareFiles("output", "on disk", receipt, receipt); len(ms) != 0 {
		t.Fatalf("the same files: %v", ms)
	}
}

// A provider whose output is not what its receipt accounts for fails the
// job, naming what differs; the result comes back with the error, as the
// evidence.
func TestProviderWhoseReceiptDoesNotMatchFailsTheJob(t *testing.T) {
	nodes := newFakeMesh(t, 2, func(i int) *fakeBackend {
		b := newFakeBackend(2000)
		b.onboarded = i == 1
		b.forge = true
		return b
	})
	res, err := nodes[0].svc.Submit(context.Background(), wasmJob("hello"), nil)
	if !errors.Is(err, ErrReceipt) || !strings.Contains(err.Error(), "receipt does not match: stdout: ") {
		t.Fatalf("err = %v, want the stdout named", err)
	}
	if res == nil || string(res.Stdout) != "forged" || len(res.Receipt) == 0 {
		t.Fatalf("result kept with the error: %+v", res)
	}
	// The requester remembers it, as it remembers a provider that cheats
	// any other way: it is not invoked again for a while.
	forger := nodes[1].host.ID()
	if n := nodes[0].svc.Reputation().Count(forger, OutcomeBadReceipt); n != 1 {
		t.Fatalf("the provider's record shows %d bad receipts, want 1", n)
	}
	if _, _, avoided := nodes[0].svc.Reputation().Avoided(forger); !avoided {
		t.Fatal("a provider that sent a receipt that does not match is not avoided")
	}
}
