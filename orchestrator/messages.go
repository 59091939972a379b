// Package orchestrator is the bidding protocol: bid requests on gossip, bids
// and invocations on direct streams, allocation events back to the
// requester. It holds both sides, the requester's and the provider's; what a
// provider does with a won job is behind the Backend interface.
package orchestrator

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/internal/text"
)

// Protocol names, under /dms/<network>/ (p2p adds the prefix). Version 2:
// bid requests and bids in signed envelopes, invocations carrying the
// bid's envelope, and a requester that says it still follows its
// allocations.
const (
	TopicBidRequests   = "bid-requests/2"
	ProtocolBid        = "bid/2"
	ProtocolInvoke     = "invoke/2"
	ProtocolAllocation = "allocation/2"
	ProtocolFetch      = "fetch/1"
)

// Size limits of every message that crosses the network. A bid request is
// small on purpose: the module never travels on gossip, only its hash.
const (
	MaxBidRequestSize = 16 << 10
	MaxBidSize        = 16 << 10
	// MaxInvokeSize bounds an invocation: a module of up to MaxInlineModule
	// travels in it, a larger one, and the inputs, over the fetch protocol.
	MaxInvokeSize   = maxInvokeHeader + MaxInlineModule + binary.MaxVarintLen64
	MaxInlineModule = 64 << 10
	MaxModuleSize   = 16 << 20
	MaxInputSize    = 64 << 20 // the inputs' archive
	MaxOutputSize   = 64 << 20 // the archive of what a job leaves in /outputs
	MaxEventSize    = 256 << 10
	MaxReplySize    = 16 << 10
	// MaxResultOutput bounds each of a job's stdout and stderr: the provider
	// keeps this much and the requester assembles no more.
	MaxResultOutput = 4 << 20
	MaxArgs         = 256
	MaxArgBytes     = 64 << 10 // args and env together
	MaxStdin        = 1 << 20
	MaxImageRef     = 255
	// MaxBiddingWindow bounds a request's deadline from its send time:
	// short, because what a provider holds for a bid stays held until
	// bidding closes.
	MaxBiddingWindow = 15 * time.Second
)

// ErrInvalid marks a message that failed validation; the wrapped text says why.
var ErrInvalid = errors.New("invalid message")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Executor kinds a job may ask for. They mirror executor.Kind without
// importing it: the protocol names them, the node maps them.
const (
	ExecutorWasm   = "wasm"
	ExecutorDocker = "docker"
	ExecutorNative = "native"
)

// BidRequest is published on the bid-request topic.
type BidRequest struct {
	JobID        string                `json:"job_id"`
	Requester    peer.ID               `json:"requester"`
	Requirements capability.Capability `json:"requirements"`
	// MaxPrice is the most the requester pays for the whole job; nil means
	// no limit.
	MaxPrice   *float64         `json:"max_price,omitempty"`
	Duration   seconds.Duration `json:"duration"`
	Executor   string           `json:"executor"`
	ModuleHash string           `json:"module_hash,omitempty"` // hex sha256 of the module
	ModuleSize int              `json:"module_size,omitempty"`
	// Image is the container image a docker job runs; a provider bids only
	// when it has the image.
	Image string `json:"image,omitempty"`
	// InputSize is the size of the inputs' archive the winner will fetch,
	// InputsHash its hex sha256: a provider that holds it says so in its
	// bid (Bid.HasInputs).
	InputSize  int64     `json:"input_size,omitempty"`
	InputsHash string    `json:"inputs_hash,omitempty"`
	Deadline   time.Time `json:"deadline"` // bidding closes
	Nonce      string    `json:"nonce"`
	// WantBids is how many acceptable bids the requester will wait for; a
	// provider may stay silent when it expects enough nearer bids.
	WantBids int `json:"want_bids,omitempty"`
	// Attempt counts the requester's submissions of the job (0 first): a
	// provider still holding for an earlier attempt bids again for a later
	// one, rather than taking it as a re-ask.
	Attempt int `json:"attempt,omitempty"`
	// Spread is the share of providers, by distance to the job ID, asked
	// to bid (see storm.go); 0 means all.
	Spread float64 `json:"spread,omitempty"`
	// Explain is the share of providers, by distance to the job ID, asked
	// to say why they do not bid (decline.go); 0 asks none (a probe). It
	// is about MaxExplainers of them however large the mesh, so that a job
	// nobody can run does not draw a decline from every node.
	Explain float64   `json:"explain,omitempty"`
	SentAt  time.Time `json:"sent_at"`
	// Constraints are the job's hard placement constraints: a provider
	// whose labels do not meet them all does not bid (constraint.go).
	Constraints []Constraint `json:"constraints,omitempty"`
}

// Bid is a provider's offer for one bid request; it travels sealed (see
// SignedBid).
type Bid struct {
	JobID       string                `json:"job_id"`
	Nonce       string                `json:"nonce"` // the request's nonce, ties the bid to it
	Provider    peer.ID               `json:"provider"`
	Requester   peer.ID               `json:"requester"`
	Price       float64               `json:"price"`
	Currency    string                `json:"currency,omitempty"`
	Offered     capability.Capability `json:"offered"`
	Score       float64               `json:"score"`
	HoldExpires time.Time             `json:"hold_expires"`
	// Labels are the provider's own (dms onboard --label): the requester
	// checks them against the job's constraints and ranks by its
	// preferences.
	Labels Labels `json:"labels,omitempty"`
	// HasModule and HasInputs say the provider already holds the module
	// (one over MaxInlineModule) or the inputs (ones this requester sent
	// it before) the request names by hash, so a job it wins moves no such
	// bytes. The requester prefers such a
	// bid when prices tie (cachedFirst); a provider that claims one
	// falsely gains only that tie and then fetches as any other.
	HasModule bool `json:"has_module,omitempty"`
	HasInputs bool `json:"has_inputs,omitempty"`
}

// JobSpec is what runs: it travels only in the invocation, to the winner.
type JobSpec struct {
	ID           string                `json:"id"`
	Requirements capability.Capability `json:"requirements"`
	Duration     seconds.Duration      `json:"duration"`
	Executor     string                `json:"executor"`
	// Module is the wasm module. One over MaxInlineModule travels over the
	// fetch protocol instead: the invocation carries only ModuleBlob.
	Module     []byte `json:"module,omitempty"`
	ModuleBlob *Blob  `json:"module_blob,omitempty"`
	// Image and Entrypoint are a docker job's (Entrypoint empty: the
	// image's own).
	Image      string            `json:"image,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Command    []string          `json:"command,omitempty"` // native executor only
	Args       []string          `json:"args,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Stdin      []byte            `json:"stdin,omitempty"`
	// Inputs is a tar archive of the job's input files, fetched by the
	// winner from the requester; they appear read-only in the job.
	Inputs *Blob `json:"inputs,omitempty"`
	// Constraints must hold for a provider's labels (they travel in the
	// bid request); Prefer ranks the bids of providers that meet more of
	// them first. Neither changes what runs.
	Constraints []Constraint `json:"constraints,omitempty"`
	Prefer      []Constraint `json:"prefer,omitempty"`
	// Deterministic, on a wasm job, fixes what would differ between two
	// honest runs: the clock the module reads starts at Clock and the
	// random bytes it draws come from Seed. A replicated job carries it,
	// so that honest replicas agree byte for byte (replicas.go).
	Deterministic *Determinism `json:"deterministic,omitempty"`
}

// Determinism is the clock start and random seed of a deterministic run.
type Determinism struct {
	Seed  uint64    `json:"seed"`
	Clock time.Time `json:"clock"`
}

// Blob names content that travels over the fetch protocol: its hex sha256
// and its size. Only the peer it was shared with can fetch it.
type Blob struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// BlobKind says what a fetched blob is to the job. A provider keeps both
// kinds, but uses a module for anyone's job and inputs only for the
// requester it fetched them from (see node/cache.go).
type BlobKind string

// Blob kinds a provider fetches.
const (
	BlobModule BlobKind = "module"
	BlobInputs BlobKind = "inputs"
)

// Outputs are what a job left in /outputs: a tar archive the requester
// fetches from the provider (the files' own hashes come from unpacking
// it), and how many files it holds.
type Outputs struct {
	Archive Blob `json:"archive"`
	Files   int  `json:"files"`
}

// Invocation asks the winner of a bid to run the job. It carries the bid
// as the provider sealed it, byte for byte.
type Invocation struct {
	Bid SignedBid `json:"bid"`
	Job JobSpec   `json:"job"`
}

// InvokeMessage is what travels on the invoke protocol: an invocation, or a
// release of the hold behind a bid that lost.
type InvokeMessage struct {
	Invocation *Invocation `json:"invocation,omitempty"`
	ReleaseJob string      `json:"release_job,omitempty"`
	// ReleaseNonce, with ReleaseJob, names the request the released bid
	// answered: a release that arrives late, after this node bid anew for
	// a later attempt at the job, leaves that bid alone.
	ReleaseNonce string `json:"release_nonce,omitempty"`
}

// InvokeReply answers an InvokeMessage.
type InvokeReply struct {
	Accepted     bool   `json:"accepted"`
	AllocationID string `json:"allocation_id,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// AllocationRequest opens the allocation stream: watch events or cancel.
// While it watches, the requester sends Keepalive frames: a provider that
// hears none for a while takes the requester as gone (see
// ProviderConfig.FollowTimeout).
type AllocationRequest struct {
	AllocationID string `json:"allocation_id"`
	Cancel       bool   `json:"cancel,omitempty"`
}

// Keepalive is what a watching requester sends on the allocation stream.
var Keepalive = []byte("{}")

// State is an allocation's life-cycle state.
type State string

// Allocation states. Completed, Failed and Cancelled are final.
const (
	StatePending   State = "pending"
	StateRunning   State = "running"
	StateCompleted State = "completed"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
)

// Final reports whether no event follows a state.
func (s State) Final() bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled
}

// EventKind says what an Event carries.
type EventKind string

// Event kinds on the allocation stream.
const (
	EventState     EventKind = "state"
	EventStdout    EventKind = "stdout"
	EventStderr    EventKind = "stderr"
	EventResult    EventKind = "result"
	EventHeartbeat EventKind = "heartbeat"
)

// Event is one message on the allocation stream, provider to requester.
type Event struct {
	Seq          int        `json:"seq"`
	AllocationID string     `json:"allocation_id"`
	Kind         EventKind  `json:"kind"`
	Time         time.Time  `json:"time"`
	State        State      `json:"state,omitempty"`
	Data         text.Bytes `json:"data,omitempty"`
	// Offset is where Data starts in its stream (stdout or stderr), so a
	// reader that missed a chunk knows it did.
	Offset  int64   `json:"offset,omitempty"`
	Result  *Result `json:"result,omitempty"`
	Message string  `json:"message,omitempty"`
}

// Result is the outcome of a finished allocation.
type Result struct {
	State           State      `json:"state"`
	ExitCode        int        `json:"exit_code"`
	Stdout          text.Bytes `json:"stdout,omitempty"`
	Stderr          text.Bytes `json:"stderr,omitempty"`
	StdoutTruncated bool       `json:"stdout_truncated,omitempty"`
	StderrTruncated bool       `json:"stderr_truncated,omitempty"`
	// OutputLimit is the cap stdout and stderr were held to, for a message
	// that says where a truncated stream was cut.
	OutputLimit int              `json:"output_limit,omitempty"`
	Duration    seconds.Duration `json:"duration"`
	Reason      string           `json:"reason,omitempty"`
	Restarts    int              `json:"restarts,omitempty"`
	// Outputs is set when the job left files in /outputs.
	Outputs *Outputs `json:"outputs,omitempty"`
	// Receipt is the provider's signed account of the allocation, a
	// sealed Receipt (receipt.go): the requester verifies it on arrival.
	Receipt []byte `json:"receipt,omitempty"`
}

// Encode marshals a message; it is the one encoder of the protocol.
func Encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return b, nil
}

// decode unmarshals at most max bytes into v. Unknown fields are allowed so
// that newer peers can add some; trailing data is not.
func decode(data []byte, max int, v any) error {
	if len(data) > max {
		return invalid("%T of %d bytes exceeds the limit of %d", v, len(data), max)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return invalid("decode %T: %v", v, err)
	}
	if dec.More() {
		return invalid("decode %T: trailing data", v)
	}
	return nil
}

// DecodeBidRequest decodes and checks the shape of a bid request (not its
// freshness or signer: see Validator).
func DecodeBidRequest(data []byte) (*BidRequest, error) {
	var r BidRequest
	if err := decode(data, MaxBidRequestSize, &r); err != nil {
		return nil, err
	}
	return &r, r.check()
}

// DecodeBid decodes and checks the shape of a bid payload (not its
// signature: bids travel sealed, see OpenBid).
func DecodeBid(data []byte) (*Bid, error) {
	var b Bid
	if err := decode(data, MaxBidSize, &b); err != nil {
		return nil, err
	}
	return &b, b.check()
}

// maxInvokeHeader bounds the JSON part of an invoke message: the bid, the
// job's requirements, args, env and stdin.
const maxInvokeHeader = MaxStdin + 2*MaxArgBytes + 64<<10

// EncodeInvokeMessage frames an invoke message as a uvarint length, the
// message as JSON without the module, then the module's raw bytes. Modules
// are megabytes: as base64 inside JSON, encoding and decoding one took
// about 140 ms of the demo's submit-to-running; raw, it is a copy.
func EncodeInvokeMessage(m *InvokeMessage) ([]byte, error) {
	var module []byte
	if m.Invocation != nil {
		inv := *m.Invocation
		module, inv.Job.Module = inv.Job.Module, nil
		m = &InvokeMessage{Invocation: &inv, ReleaseJob: m.ReleaseJob}
	}
	header, err := Encode(m)
	if err != nil {
		return nil, err
	}
	out := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(header)+len(module)), uint64(len(header)))
	out = append(out, header...)
	return append(out, module...), nil
}

// DecodeInvokeMessage decodes and checks an invocation or a release framed
// by EncodeInvokeMessage.
func DecodeInvokeMessage(data []byte) (*InvokeMessage, error) {
	if len(data) > MaxInvokeSize {
		return nil, invalid("invoke message of %d bytes exceeds the limit of %d", len(data), MaxInvokeSize)
	}
	n, k := binary.Uvarint(data)
	if k <= 0 || n > maxInvokeHeader || n > uint64(len(data)-k) {
		return nil, invalid("invoke message: bad header length")
	}
	header, module := data[k:k+int(n)], data[k+int(n):]
	var m InvokeMessage
	if err := decode(header, maxInvokeHeader, &m); err != nil {
		return nil, err
	}
	if len(module) > 0 {
		if m.Invocation == nil {
			return nil, invalid("invoke message: a module without an invocation")
		}
		if len(m.Invocation.Job.Module) > 0 {
			return nil, invalid("invoke message: module given twice")
		}
		if len(module) > MaxInlineModule {
			return nil, invalid("invoke message: inline module of %d bytes, at most %d (a larger one is fetched)", len(module), MaxInlineModule)
		}
		m.Invocation.Job.Module = module
	}
	switch {
	case m.Invocation != nil && m.ReleaseJob != "":
		return nil, invalid("invoke message carries both an invocation and a release")
	case m.Invocation != nil:
		// The bid's envelope was opened, and so verified, by decode.
		if len(m.Invocation.Bid.Envelope) == 0 {
			return nil, invalid("invocation without a bid")
		}
		if err := m.Invocation.Job.check(); err != nil {
			return nil, err
		}
		if m.Invocation.Job.ID != m.Invocation.Bid.Bid.JobID {
			return nil, invalid("job %q does not match bid's job %q", m.Invocation.Job.ID, m.Invocation.Bid.Bid.JobID)
		}
	case m.ReleaseJob != "":
		if err := checkJobID(m.ReleaseJob); err != nil {
			return nil, err
		}
		if n := len(m.ReleaseNonce); n != 0 && (n < 8 || n > 64) {
			return nil, invalid("release nonce of %d characters: want 8 to 64", n)
		}
	case m.ReleaseNonce != "":
		return nil, invalid("invoke message names a release nonce but no job")
	default:
		return nil, invalid("empty invoke message")
	}
	return &m, nil
}

// DecodeInvokeReply decodes a reply to an invocation.
func DecodeInvokeReply(data []byte) (*InvokeReply, error) {
	var r InvokeReply
	if err := decode(data, MaxReplySize, &r); err != nil {
		return nil, err
	}
	if r.Accepted && r.AllocationID == "" {
		return nil, invalid("accepted reply without an allocation id")
	}
	return &r, nil
}

// DecodeAllocationRequest decodes the opening message of an allocation stream.
func DecodeAllocationRequest(data []byte) (*AllocationRequest, error) {
	var r AllocationRequest
	if err := decode(data, MaxReplySize, &r); err != nil {
		return nil, err
	}
	if r.AllocationID == "" || len(r.AllocationID) > 128 {
		return nil, invalid("allocation id %q: want 1 to 128 characters", r.AllocationID)
	}
	return &r, nil
}

// DecodeEvent decodes one allocation event.
func DecodeEvent(data []byte) (*Event, error) {
	var e Event
	if err := decode(data, MaxEventSize, &e); err != nil {
		return nil, err
	}
	switch e.Kind {
	case EventState, EventStdout, EventStderr, EventHeartbeat:
	case EventResult:
		if e.Result == nil {
			return nil, invalid("result event without a result")
		}
		if o := e.Result.Outputs; o != nil {
			if err := o.Archive.check("outputs", MaxOutputSize); err != nil {
				return nil, err
			}
			if o.Files < 0 {
				return nil, invalid("outputs of %d files", o.Files)
			}
		}
		if n, limit := len(e.Result.Receipt), MaxReceiptSize+envelopeOverhead; n > limit {
			return nil, invalid("receipt of %d bytes exceeds the limit of %d", n, limit)
		}
	default:
		return nil, invalid("event kind %q: want state, stdout, stderr, result or heartbeat", e.Kind)
	}
	return &e, nil
}

func checkJobID(id string) error {
	if len(id) < 8 || len(id) > 64 {
		return invalid("job id %q: want 8 to 64 characters", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return invalid("job id %q: want lower-case letters, digits and '-'", id)
		}
	}
	return nil
}

func checkExecutor(kind string) error {
	switch kind {
	case ExecutorWasm, ExecutorDocker, ExecutorNative:
		return nil
	}
	return invalid("executor %q: want %s, %s or %s", kind, ExecutorWasm, ExecutorDocker, ExecutorNative)
}

// CheckImage checks a container image reference: what docker accepts as a
// name[:tag][@digest], within MaxImageRef characters.
func CheckImage(ref string) error {
	if ref == "" || len(ref) > MaxImageRef {
		return invalid("image %q: want 1 to %d characters", clip(ref), MaxImageRef)
	}
	if ref[0] == '-' || ref[0] == '.' || ref[0] == ':' || ref[0] == '/' {
		return invalid("image %q: must start with a letter or digit", clip(ref))
	}
	for _, c := range ref {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/' || c == ':' || c == '@') {
			return invalid("image %q: character %q not allowed in an image reference", clip(ref), c)
		}
	}
	return nil
}

func checkHash(what, h string) error {
	if len(h) != 64 {
		return invalid("%s sha256 %q: want 64 hex digits", what, clip(h))
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return invalid("%s sha256 %q: want lower-case hex", what, clip(h))
		}
	}
	return nil
}

func (b *Blob) check(what string, limit int64) error {
	if err := checkHash(what, b.SHA256); err != nil {
		return err
	}
	if b.Size < 0 || b.Size > limit {
		return invalid("%s of %d bytes: at most %d", what, b.Size, limit)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func (r *BidRequest) check() error {
	if err := checkJobID(r.JobID); err != nil {
		return err
	}
	if r.Requester == "" {
		return invalid("bid request without a requester")
	}
	if err := r.Requirements.Validate(); err != nil {
		return invalid("requirements: %v", err)
	}
	if r.Requirements.IsZero() {
		return invalid("requirements are empty: a job needs some cpu or memory")
	}
	if r.MaxPrice != nil && !(*r.MaxPrice >= 0) {
		return invalid("max price %v: want a number >= 0", *r.MaxPrice)
	}
	if r.Duration <= 0 {
		return invalid("duration %v: must be more than zero", r.Duration)
	}
	if err := checkExecutor(r.Executor); err != nil {
		return err
	}
	if r.ModuleSize < 0 || r.ModuleSize > MaxModuleSize {
		return invalid("module size %d: at most %d bytes", r.ModuleSize, MaxModuleSize)
	}
	if r.InputSize < 0 || r.InputSize > MaxInputSize {
		return invalid("input size %d: at most %d bytes", r.InputSize, MaxInputSize)
	}
	if r.ModuleHash != "" {
		if err := checkHash("module", r.ModuleHash); err != nil {
			return err
		}
	}
	if r.InputsHash != "" {
		if err := checkHash("inputs", r.InputsHash); err != nil {
			return err
		}
	}
	if (r.Executor == ExecutorDocker) != (r.Image != "") {
		return invalid("executor %s with image %q: a docker job names an image, others none", r.Executor, clip(r.Image))
	}
	if r.Image != "" {
		if err := CheckImage(r.Image); err != nil {
			return err
		}
	}
	if len(r.Nonce) < 8 || len(r.Nonce) > 64 {
		return invalid("nonce of %d characters: want 8 to 64", len(r.Nonce))
	}
	if r.Deadline.IsZero() || r.SentAt.IsZero() {
		return invalid("bid request without a deadline or send time")
	}
	if !(r.Spread >= 0 && r.Spread <= 1) {
		return invalid("spread %v: want 0 to 1", r.Spread)
	}
	if !(r.Explain >= 0 && r.Explain <= 1) {
		return invalid("explain %v: want 0 to 1", r.Explain)
	}
	if r.Attempt < 0 || r.Attempt > 1000 {
		return invalid("attempt %d: want 0 to 1000", r.Attempt)
	}
	if r.WantBids < 0 || r.WantBids > 1000 {
		return invalid("want_bids %d: want 0 to 1000", r.WantBids)
	}
	return checkConstraints("constraints", r.Constraints)
}

func (b *Bid) check() error {
	if err := checkJobID(b.JobID); err != nil {
		return err
	}
	if b.Provider == "" || b.Requester == "" {
		return invalid("bid without provider or requester")
	}
	if !(b.Price >= 0) {
		return invalid("bid price %v: want a number >= 0", b.Price)
	}
	if err := b.Offered.Validate(); err != nil {
		return invalid("offered: %v", err)
	}
	if len(b.Nonce) < 8 || len(b.Nonce) > 64 {
		return invalid("bid nonce of %d characters: want 8 to 64", len(b.Nonce))
	}
	if err := b.Labels.Validate(); err != nil {
		return invalid("bid labels: %v", err)
	}
	return nil
}

func (j *JobSpec) check() error {
	if err := checkJobID(j.ID); err != nil {
		return err
	}
	if err := checkExecutor(j.Executor); err != nil {
		return err
	}
	if j.Duration <= 0 {
		return invalid("job duration %v: must be more than zero", j.Duration)
	}
	if len(j.Module) > MaxModuleSize {
		return invalid("module of %d bytes: at most %d", len(j.Module), MaxModuleSize)
	}
	if j.ModuleBlob != nil {
		if len(j.Module) > 0 {
			return invalid("module given twice: inline and as a blob")
		}
		if err := j.ModuleBlob.check("module", MaxModuleSize); err != nil {
			return err
		}
	}
	switch j.Executor {
	case ExecutorWasm:
		if len(j.Module) == 0 && j.ModuleBlob == nil {
			return invalid("wasm job without a module")
		}
	case ExecutorDocker:
		if err := CheckImage(j.Image); err != nil {
			return err
		}
	case ExecutorNative:
		if len(j.Command) == 0 {
			return invalid("native job without a command")
		}
	}
	if j.Deterministic != nil && j.Executor != ExecutorWasm {
		return invalid("a deterministic run on a %s job: only wasm jobs run with a fixed clock and seed", j.Executor)
	}
	if j.Image != "" && j.Executor != ExecutorDocker {
		return invalid("image %q on a %s job: only docker jobs run images", clip(j.Image), j.Executor)
	}
	if j.Inputs != nil {
		if err := j.Inputs.check("inputs", MaxInputSize); err != nil {
			return err
		}
	}
	words := len(j.Args) + len(j.Command) + len(j.Entrypoint) + len(j.Env)
	if words > MaxArgs {
		return invalid("%d args, command and entrypoint words and env vars: at most %d", words, MaxArgs)
	}
	n := 0
	for _, a := range j.Args {
		n += len(a)
	}
	for _, a := range j.Command {
		n += len(a)
	}
	for _, a := range j.Entrypoint {
		n += len(a)
	}
	for k, v := range j.Env {
		n += len(k) + len(v)
	}
	if n > MaxArgBytes {
		return invalid("args, command and env of %d bytes: at most %d", n, MaxArgBytes)
	}
	if len(j.Stdin) > MaxStdin {
		return invalid("stdin of %d bytes: at most %d", len(j.Stdin), MaxStdin)
	}
	if err := checkConstraints("constraints", j.Constraints); err != nil {
		return err
	}
	return checkConstraints("preferences", j.Prefer)
}

// NewProbe returns a bid request that no provider can take (it asks for a
// trillion cores), so publishing it measures or warms up gossip alone:
// nobody bids, nobody holds. The caller publishes it as requester.
func NewProbe(requester peer.ID) *BidRequest {
	now := time.Now()
	return &BidRequest{
		JobID: NewJobID(), Requester: requester,
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 1 << 40}},
		Duration:     seconds.Duration(time.Second), Executor: ExecutorWasm,
		Deadline: now.Add(10 * time.Second), Nonce: NewJobID(), SentAt: now,
	}
}
