package orchestrator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
)

// A receipt is what a provider signs when an allocation ends: which job it
// ran for whom, on which bid, from which spec, module and inputs, and what
// came of it (the hashes of its stdout, stderr and output files, its exit
// code, times and resources). It travels with the result; the requester
// checks it against what it sent and received, and keeps it, so that
// anyone holding the receipt and the files can check them later without
// the mesh: a provider that returns other output than it signed for is
// caught, and one that signed for what it returned cannot deny it.

const receiptDomain = "dms/receipt"

var receiptCodec = []byte("/dms/receipt/json/1")

// MaxReceiptSize bounds a receipt's payload. It rides in the result event
// (base64 in JSON, within MaxEventSize); a job with more files than fit is
// receipted by its archives' hashes alone (FilesOmitted).
const MaxReceiptSize = 128 << 10

// Receipt is a provider's signed account of one allocation. Hashes are hex
// sha256.
type Receipt struct {
	JobID        string  `json:"job_id"`
	AllocationID string  `json:"allocation_id"`
	Requester    peer.ID `json:"requester"`
	Provider     peer.ID `json:"provider"`
	// BidSHA256 is the hash of the bid's envelope, the exact bytes the
	// requester invoked.
	BidSHA256 string `json:"bid_sha256"`
	// SpecSHA256 is SpecHash of the job spec invoked.
	SpecSHA256   string `json:"spec_sha256"`
	Executor     string `json:"executor"`
	ModuleSHA256 string `json:"module_sha256,omitempty"`
	// Image is a docker job's image as the spec named it (a digest is
	// known only where the reference carries one).
	Image string `json:"image,omitempty"`
	// InputsSHA256 is the inputs' archive, Inputs its files.
	InputsSHA256 string         `json:"inputs_sha256,omitempty"`
	Inputs       []archive.File `json:"inputs,omitempty"`
	// OutputsSHA256 is the archive of /outputs the requester fetches,
	// Outputs its files.
	OutputsSHA256 string         `json:"outputs_sha256,omitempty"`
	Outputs       []archive.File `json:"outputs,omitempty"`
	// FilesOmitted: the file lists were left out to keep the receipt
	// within MaxReceiptSize; the archives' hashes still bind the files.
	FilesOmitted bool   `json:"files_omitted,omitempty"`
	StdoutSHA256 string `json:"stdout_sha256"`
	StdoutSize   int64  `json:"stdout_size"`
	StderrSHA256 string `json:"stderr_sha256"`
	StderrSize   int64  `json:"stderr_size"`
	State        State  `json:"state"`
	ExitCode     int    `json:"exit_code"`
	// Started is zero for a job that never ran (its files could not be
	// fetched, or it was cancelled first).
	Started   time.Time             `json:"started,omitzero"`
	Ended     time.Time             `json:"ended"`
	Duration  seconds.Duration      `json:"duration"`
	Restarts  int                   `json:"restarts,omitempty"`
	Resources capability.Capability `json:"resources"`
}

// SpecHash is the hex sha256 a receipt names a job spec by: of the spec's
// JSON (Encode) with an inline module replaced by its blob (hash and
// size), so that the hash is the same whether the module travelled in the
// invocation or was fetched; the inputs are named by their blob likewise.
// Go's encoding writes fields in declaration order and map keys sorted,
// and omits empty optional fields, so a spec the provider decoded encodes
// to the bytes the requester's did. A field added by a newer requester and
// unknown to the provider is dropped in decoding and so changes the hash:
// the receipt then does not match, which is the safe way to fail.
func SpecHash(j JobSpec) string {
	if len(j.Module) > 0 {
		j.ModuleBlob = &Blob{SHA256: ModuleHash(j.Module), Size: int64(len(j.Module))}
		j.Module = nil
	}
	data, err := Encode(&j)
	if err != nil {
		// A spec that passed check always encodes; an empty hash never
		// matches one.
		return ""
	}
	return sha256Hex(data)
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// NewReceipt fills in what the invocation says: the job, its requester,
// the bid, the spec and what it names. The rest is the allocation's.
func NewReceipt(inv *Invocation, provider peer.ID) Receipt {
	r := Receipt{
		JobID: inv.Job.ID, Requester: inv.Bid.Bid.Requester, Provider: provider,
		BidSHA256: sha256Hex(inv.Bid.Envelope), SpecSHA256: SpecHash(inv.Job),
		Executor: inv.Job.Executor, Image: inv.Job.Image, Resources: inv.Job.Requirements,
	}
	if len(inv.Job.Module) > 0 || inv.Job.ModuleBlob != nil {
		r.ModuleSHA256 = moduleHashOf(&inv.Job)
	}
	if inv.Job.Inputs != nil {
		r.InputsSHA256 = inv.Job.Inputs.SHA256
	}
	return r
}

// StreamHash is the hex sha256 of a stream's bytes, as a receipt names
// stdout and stderr.
func StreamHash(data []byte) string { return sha256Hex(data) }

// SealReceipt signs a receipt with the provider's key. A receipt whose
// file lists would not fit MaxReceiptSize is sealed without them.
func SealReceipt(r *Receipt, key crypto.PrivKey) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	body, err := Encode(r)
	if err != nil {
		return nil, err
	}
	if len(body) > MaxReceiptSize {
		cp := *r
		cp.Inputs, cp.Outputs, cp.FilesOmitted = nil, nil, true
		if body, err = Encode(&cp); err != nil {
			return nil, err
		}
		if len(body) > MaxReceiptSize {
			return nil, fmt.Errorf("receipt of %d bytes without its file lists: at most %d", len(body), MaxReceiptSize)
		}
	}
	return seal(&jsonRecord{domain: receiptDomain, codec: receiptCodec, max: MaxReceiptSize, raw: body}, key)
}

// OpenReceipt verifies a receipt's signature and decodes it: its shape is
// checked, and its signer must be the provider it names.
func OpenReceipt(data []byte) (*Receipt, error) {
	var r Receipt
	signer, err := open(data, &jsonRecord{domain: receiptDomain, codec: receiptCodec, max: MaxReceiptSize, v: &r}, "receipt")
	if err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	if r.Provider != signer {
		return nil, invalid("receipt for job %s names provider %s but was signed by %s", r.JobID, r.Provider, signer)
	}
	return &r, nil
}

func (r *Receipt) check() error {
	if err := checkJobID(r.JobID); err != nil {
		return err
	}
	if r.Requester == "" || r.Provider == "" {
		return invalid("receipt without requester or provider")
	}
	for what, h := range map[string]string{"bid": r.BidSHA256, "spec": r.SpecSHA256, "stdout": r.StdoutSHA256, "stderr": r.StderrSHA256} {
		if err := checkHash("receipt's "+what, h); err != nil {
			return err
		}
	}
	for what, h := range map[string]string{"module": r.ModuleSHA256, "inputs": r.InputsSHA256, "outputs": r.OutputsSHA256} {
		if h == "" {
			continue
		}
		if err := checkHash("receipt's "+what, h); err != nil {
			return err
		}
	}
	for _, fs := range [][]archive.File{r.Inputs, r.Outputs} {
		for _, f := range fs {
			if _, err := archive.CleanPath(f.Path); err != nil || f.Size < 0 {
				return invalid("receipt names file %q of %d bytes: want a relative path and a size of 0 or more", clip(f.Path), f.Size)
			}
			if err := checkHash("receipt's file "+clip(f.Path), f.SHA256); err != nil {
				return err
			}
		}
	}
	if !r.State.Final() {
		return invalid("receipt in state %q: want completed, failed or cancelled", r.State)
	}
	if r.StdoutSize < 0 || r.StderrSize < 0 {
		return invalid("receipt with negative output sizes")
	}
	return nil
}

// ErrReceipt: a receipt that does not match what it should (or none).
var ErrReceipt = errors.New("receipt does not match")

// Mismatch is one field of a receipt that does not match: what the
// receipt says, and what was found.
type Mismatch struct {
	Field   string // "stdout", "output data/summary.txt", ...
	Receipt string // what the receipt says
	Found   string // what was received or is on disk
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s: %s in the receipt, %s", m.Field, m.Receipt, m.Found)
}

// MismatchError is a receipt that does not match, naming each field.
type MismatchError struct{ Mismatches []Mismatch }

func (e *MismatchError) Error() string {
	var b bytes.Buffer
	b.WriteString(ErrReceipt.Error())
	for i, m := range e.Mismatches {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(m.String())
	}
	return b.String()
}

func (e *MismatchError) Unwrap() error { return ErrReceipt }

// ReceiptExpect is what a requester knows a receipt must say. An empty
// field is not checked: a requester that followed a job again after it
// restarted no longer holds the bid it invoked.
type ReceiptExpect struct {
	JobID     string
	Requester peer.ID
	Provider  peer.ID // the winner invoked: the receipt's signer
	BidSHA256 string
	// SpecSHA256 is SpecHash of the spec as invoked.
	SpecSHA256   string
	InputsSHA256 string
	// Result is what arrived: its stdout, stderr, exit code, state and
	// outputs' archive are checked.
	Result *Result
}

// ReceiptFor is what the requester expects of a winner's receipt: the
// bid it invoked, and the spec with the inputs it shared.
func ReceiptFor(job JobSpec, inputs []byte, bid *SignedBid, requester peer.ID, res *Result) ReceiptExpect {
	want := ReceiptExpect{
		JobID: job.ID, Requester: requester, Provider: bid.Bid.Provider,
		BidSHA256: sha256Hex(bid.Envelope), SpecSHA256: SubmittedSpecHash(job, inputs), Result: res,
	}
	if len(inputs) > 0 {
		want.InputsSHA256 = sha256Hex(inputs)
	}
	return want
}

// SubmittedSpecHash is SpecHash of a submitted job as its winner is
// invoked with it: the inputs' archive named by its blob.
func SubmittedSpecHash(job JobSpec, inputs []byte) string {
	if len(inputs) > 0 {
		job.Inputs = &Blob{SHA256: sha256Hex(inputs), Size: int64(len(inputs))}
	}
	return SpecHash(job)
}

// VerifyReceipt opens a receipt and checks it against what the requester
// knows. It returns the receipt; an error wrapping ErrReceipt names what
// does not match.
func VerifyReceipt(env []byte, want ReceiptExpect) (*Receipt, error) {
	if len(env) == 0 {
		return nil, fmt.Errorf("%w: the provider sent none", ErrReceipt)
	}
	r, err := OpenReceipt(env)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReceipt, err)
	}
	var ms []Mismatch
	differs := func(field, got, wantS, how string) {
		if wantS != "" && got != wantS {
			ms = append(ms, Mismatch{Field: field, Receipt: orNone(got), Found: wantS + " " + how})
		}
	}
	same := func(field, got, wantS string) { differs(field, got, wantS, "expected") }
	same("signer", r.Provider.String(), want.Provider.String())
	same("job", r.JobID, want.JobID)
	same("requester", r.Requester.String(), want.Requester.String())
	same("bid", r.BidSHA256, want.BidSHA256)
	same("spec", r.SpecSHA256, want.SpecSHA256)
	same("inputs", r.InputsSHA256, want.InputsSHA256)
	if want.InputsSHA256 == "" && want.SpecSHA256 != "" && r.InputsSHA256 != "" {
		ms = append(ms, Mismatch{Field: "inputs", Receipt: r.InputsSHA256, Found: "none sent"})
	}
	if res := want.Result; res != nil {
		if !res.StdoutTruncated {
			differs("stdout", r.StdoutSHA256, StreamHash(res.Stdout), "received")
		}
		if !res.StderrTruncated {
			differs("stderr", r.StderrSHA256, StreamHash(res.Stderr), "received")
		}
		if r.ExitCode != res.ExitCode {
			ms = append(ms, Mismatch{Field: "exit code", Receipt: fmt.Sprint(r.ExitCode), Found: fmt.Sprint(res.ExitCode) + " received"})
		}
		differs("state", string(r.State), string(res.State), "received")
		outputs := ""
		if res.Outputs != nil {
			outputs = res.Outputs.Archive.SHA256
		}
		if r.OutputsSHA256 != outputs {
			ms = append(ms, Mismatch{Field: "outputs", Receipt: orNone(r.OutputsSHA256), Found: orNone(outputs) + " in the result"})
		}
	}
	if len(ms) > 0 {
		return r, &MismatchError{Mismatches: ms}
	}
	return r, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// CompareFiles checks files found (fetched, or on disk) against a
// receipt's list of them, by path: each file whose hash differs, each
// named file missing, and each file found that the receipt does not name.
// kind names them in the mismatches ("output"), where says where they
// were found ("on disk").
func CompareFiles(kind, where string, receipt, found []archive.File) []Mismatch {
	have := make(map[string]archive.File, len(found))
	for _, f := range found {
		have[f.Path] = f
	}
	var ms []Mismatch
	named := make(map[string]bool, len(receipt))
	for _, f := range receipt {
		named[f.Path] = true
		g, ok := have[f.Path]
		switch {
		case !ok:
			ms = append(ms, Mismatch{Field: kind + " " + f.Path, Receipt: "sha256 " + f.SHA256, Found: "missing " + where})
		case g.SHA256 != f.SHA256:
			ms = append(ms, Mismatch{Field: kind + " " + f.Path, Receipt: "sha256 " + f.SHA256, Found: "sha256 " + g.SHA256 + " " + where})
		}
	}
	var extra []string
	for p := range have {
		if !named[p] {
			extra = append(extra, p)
		}
	}
	sort.Strings(extra)
	for _, p := range extra {
		ms = append(ms, Mismatch{Field: kind + " " + p, Receipt: "not named", Found: "sha256 " + have[p].SHA256 + " " + where})
	}
	return ms
}

// checkReceipt verifies the receipt that came with a winner's result
// against the bid invoked, the spec and inputs sent, and the result
// received.
func (r *Requester) checkReceipt(st *staged, bids []*SignedBid, winner peer.ID, res *Result) error {
	var bid *SignedBid
	for _, b := range bids {
		if b.Bid.Provider == winner {
			bid = b
			break
		}
	}
	if bid == nil {
		return fmt.Errorf("%w: no bid of the winner %s among those invoked", ErrReceipt, winner)
	}
	_, err := VerifyReceipt(res.Receipt, ReceiptFor(st.job, st.inputs, bid, r.host.ID(), res))
	if err != nil {
		r.log.Warn("a provider's receipt does not match its result", "job", st.job.ID, "provider", winner, "err", err)
	}
	return err
}
