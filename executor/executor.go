// Package executor runs one allocation behind one small interface.
//
// A job is described by a [Spec] and run by an [Executor] of the matching
// [Kind]: [Wasm] is a WebAssembly sandbox (WASI preview 1 on wazero) and the
// default; [Native] runs a host process and exists only for providers that
// allow it explicitly. The package knows nothing of bids, peers or
// capabilities: the caller turns those into a Spec with hard limits.
package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Kind names an executor, as carried in bid requests and job specs.
type Kind string

const (
	// KindWasm runs a WASI preview 1 command module in a sandbox.
	KindWasm Kind = "wasm"
	// KindDocker runs a container image on the local Docker engine;
	// providers must opt in.
	KindDocker Kind = "docker"
	// KindNative runs a host process; providers must opt in.
	KindNative Kind = "native"
)

// OutputsPath is where a job sees its writable output directory.
const OutputsPath = "/outputs"

// DefaultMaxOutput is the per-stream capture cap when Spec.MaxOutput is 0.
const DefaultMaxOutput = 1 << 20

// wasmPageSize is the WebAssembly page size; wasm memory caps are in pages.
const wasmPageSize = 1 << 16

// maxWasmMemory is the most a 32-bit wasm memory can address (65536 pages).
const maxWasmMemory = 1 << 32

// Sentinel errors callers branch on. Run wraps them with detail, so test with
// errors.Is.
var (
	// ErrTimeout: the job ran past Spec.Timeout and was stopped.
	ErrTimeout = errors.New("job timed out")
	// ErrMemoryLimit: the job needed more than Spec.MemoryBytes and was stopped.
	ErrMemoryLimit = errors.New("job exceeded its memory limit")
	// ErrCancelled: the caller's context ended (or the executor closed)
	// before the job finished.
	ErrCancelled = errors.New("job cancelled")
	// ErrNotAllowed: the provider does not allow this kind of job or grant.
	ErrNotAllowed = errors.New("not allowed by provider")
	// ErrInvalidModule: the wasm bytes are not a runnable WASI command module.
	ErrInvalidModule = errors.New("invalid wasm module")
	// ErrInvalidSpec: a Spec field is missing or out of range.
	ErrInvalidSpec = errors.New("invalid job spec")
	// ErrClosed: Run was called after Close.
	ErrClosed = errors.New("executor closed")
)

// Spec is one job as an executor sees it: what to run, its inputs, and the
// hard limits it runs under. Filesystem and network are off unless granted.
type Spec struct {
	Kind Kind
	// Module is the wasm binary (KindWasm only).
	Module []byte
	// Command is argv for KindNative; Command[0] is looked up in PATH.
	Command []string
	// Args is argv[1:] for KindWasm; argv[0] is always "job".
	Args []string
	// Env is the whole environment of the job; nothing is inherited from the
	// provider (a native job also gets the provider's PATH unless Env sets it).
	Env map[string]string
	// Stdin is the job's standard input; empty means immediate EOF.
	Stdin []byte
	// MemoryBytes is a hard cap, required. For wasm it caps the linear memory
	// (rounded down to 64 KiB pages, at most 4 GiB).
	MemoryBytes uint64
	// Timeout is a hard cap on run time, required.
	Timeout time.Duration
	// MaxOutput caps what is kept of each of stdout and stderr, in bytes;
	// 0 means DefaultMaxOutput.
	MaxOutput int
	// Mounts grants read-only directories to a wasm or docker job: guest
	// path → host path, both absolute. Empty means no filesystem at all.
	Mounts map[string]string
	// OutputDir, if set, is a host directory the job may write: a wasm or
	// docker job sees it at /outputs, a native one in $DMS_OUTPUTS.
	OutputDir string
	// Image is the container image a docker job runs; Entrypoint, if set,
	// replaces the image's (its first word is the program, the rest comes
	// before Args).
	Image      string
	Entrypoint []string
	// CPUMilli caps a docker job's CPU, in millicores (0: no cap).
	CPUMilli uint64
	// GPUs are the device UUIDs a docker job gets (the engine needs the
	// NVIDIA runtime).
	GPUs []string
	// Deterministic, for KindWasm, fixes the clock and random source the
	// module sees, so that two runs of one job agree byte for byte; nil:
	// the real clock and crypto/rand.
	Deterministic *Determinism
}

// Determinism is a fixed start for a job's clock and a seed for its random
// bytes.
type Determinism struct {
	Seed  uint64
	Clock time.Time
}

// Result is what a job did. It is filled as far as the job got, also when
// Run returns an error (a job stopped by its timeout keeps its output).
type Result struct {
	// ExitCode is the job's exit status; -1 when it did not exit by itself
	// (trap, signal, stopped).
	ExitCode                         int
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool
	// Duration is the run time, excluding compilation.
	Duration time.Duration
	// PeakMemoryBytes is the largest linear memory of a wasm job; for a
	// native job, the peak the kernel reported (0 when unknown).
	PeakMemoryBytes uint64
	// Reason says why the job ended other than by exiting: "", "timeout",
	// "memory limit", "cancelled", "trap: ...", "signal: ...".
	Reason string
}

// Executor runs jobs of one Kind. Implementations are safe for concurrent
// Runs.
type Executor interface {
	Kind() Kind
	// Run runs spec to completion. The error is non-nil only when the job
	// could not run (invalid spec or module, not allowed) or was stopped
	// (ErrTimeout, ErrMemoryLimit, ErrCancelled); a job that exits non-zero
	// is a Result with ExitCode != 0 and a nil error. out may be nil.
	Run(ctx context.Context, spec Spec, out Output) (Result, error)
	// Close stops running jobs (they end with ErrCancelled), waits for
	// them, and frees caches. It is idempotent.
	Close(ctx context.Context) error
}

// Output receives output as the job produces it, so a requester sees it live.
// It gets exactly the bytes that end up in Result (the first MaxOutput of
// each stream). p is a fresh copy the callee may keep. Calls for one stream
// are sequential but Stdout and Stderr may be called from different
// goroutines. A slow Output slows the job down: hand chunks off, don't block.
type Output interface {
	Stdout(p []byte)
	Stderr(p []byte)
}

// Validate checks the fields every executor relies on and names the first
// field that is wrong and what it accepts. Run calls it; callers may call it
// earlier (before bidding, say) to refuse a job cheaply.
func (s *Spec) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, args...))
	}
	if s.MemoryBytes == 0 {
		return bad("MemoryBytes", "required, a hard cap in bytes > 0")
	}
	if s.Timeout <= 0 {
		return bad("Timeout", "required, a duration > 0, got %v", s.Timeout)
	}
	if s.Deterministic != nil && s.Kind != KindWasm {
		return bad("Deterministic", "only for kind wasm: a %s job's clock and randomness are its own", s.Kind)
	}
	if s.MaxOutput < 0 {
		return bad("MaxOutput", "must be >= 0 (0 means %d), got %d", DefaultMaxOutput, s.MaxOutput)
	}
	for _, k := range sortedKeys(s.Env) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad("Env", "name %q must be non-empty without '=' or NUL", k)
		}
		if strings.ContainsRune(s.Env[k], 0) {
			return bad("Env", "value of %s contains NUL", k)
		}
	}
	if s.OutputDir != "" && !filepath.IsAbs(s.OutputDir) {
		return bad("OutputDir", "host path %q must be absolute", s.OutputDir)
	}
	if s.Kind != KindDocker && (s.Image != "" || len(s.Entrypoint) > 0 || len(s.GPUs) > 0) {
		return bad("Image", "Image, Entrypoint and GPUs are for kind docker only")
	}
	checkMounts := func() error {
		for _, guest := range sortedKeys(s.Mounts) {
			host := s.Mounts[guest]
			if !path.IsAbs(guest) || path.Clean(guest) != guest || guest == "/" {
				return bad("Mounts", "guest path %q must be absolute and clean, like /data", guest)
			}
			if guest == OutputsPath || strings.HasPrefix(guest, OutputsPath+"/") {
				return bad("Mounts", "guest path %q is inside %s, which holds the job's outputs", guest, OutputsPath)
			}
			if !filepath.IsAbs(host) {
				return bad("Mounts", "host path %q for %s must be absolute", host, guest)
			}
		}
		return nil
	}
	switch s.Kind {
	case KindDocker:
		if s.Image == "" {
			return bad("Image", "required for kind docker")
		}
		if len(s.Module) != 0 || len(s.Command) != 0 {
			return bad("Module", "Module and Command are not for kind docker; give a container its arguments in Args")
		}
		for _, a := range append(slices.Clone(s.Args), s.Entrypoint...) {
			if strings.ContainsRune(a, 0) {
				return bad("Args", "argument %q contains NUL", a)
			}
		}
		if err := checkMounts(); err != nil {
			return err
		}
	case KindWasm:
		if len(s.Module) == 0 {
			return bad("Module", "required for kind wasm: the bytes of a WASI command module")
		}
		if !bytes.HasPrefix(s.Module, []byte("\x00asm")) {
			return fmt.Errorf("%w: Module: not a WebAssembly binary (no \\0asm header)", ErrInvalidModule)
		}
		if len(s.Command) != 0 {
			return bad("Command", "only for kind native; give a wasm job its arguments in Args")
		}
		if s.MemoryBytes < wasmPageSize || s.MemoryBytes > maxWasmMemory {
			return bad("MemoryBytes", "for kind wasm must be between 64 KiB and 4 GiB, got %d", s.MemoryBytes)
		}
		for _, a := range s.Args {
			if strings.ContainsRune(a, 0) {
				return bad("Args", "argument %q contains NUL", a)
			}
		}
		if err := checkMounts(); err != nil {
			return err
		}
	case KindNative:
		if len(s.Command) == 0 || s.Command[0] == "" {
			return bad("Command", "required for kind native: argv, Command[0] the program")
		}
		for _, a := range s.Command {
			if strings.ContainsRune(a, 0) {
				return bad("Command", "argument %q contains NUL", a)
			}
		}
		if len(s.Module) != 0 {
			return bad("Module", "only for kind wasm")
		}
		if len(s.Args) != 0 {
			return bad("Args", "only for kind wasm; a native job's argv is Command")
		}
		if len(s.Mounts) != 0 {
			return bad("Mounts", "only for kinds wasm and docker; a native process is not sandboxed")
		}
	default:
		return bad("Kind", "%q is not one of %q, %q, %q", s.Kind, KindWasm, KindDocker, KindNative)
	}
	return nil
}

func (s *Spec) maxOutput() int {
	if s.MaxOutput == 0 {
		return DefaultMaxOutput
	}
	return s.MaxOutput
}

// checkKind refuses a spec meant for another executor, then validates it.
func checkKind(s *Spec, k Kind) error {
	if s.Kind != k {
		return fmt.Errorf("%w: Kind: %q, but this executor runs %q", ErrInvalidSpec, s.Kind, k)
	}
	return s.Validate()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// errTimeoutCause marks a context ended by Spec.Timeout, so it is told apart
// from a caller's own deadline.
var errTimeoutCause = errors.New("spec timeout")

// runContext derives the context a job runs under: ended by the caller, by
// the executor closing (closeCtx), or by the job's own timeout (cause
// errTimeoutCause).
func runContext(ctx, closeCtx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancelClose := context.WithCancelCause(ctx)
	stop := context.AfterFunc(closeCtx, func() { cancelClose(ErrClosed) })
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, timeout, errTimeoutCause)
	return ctx, func() {
		cancelTimeout()
		stop()
		cancelClose(context.Canceled)
	}
}

// stopError classifies why a run context ended: ErrTimeout for the job's
// own timeout, ErrCancelled otherwise (with the caller's reason).
func stopError(ctx context.Context, timeout time.Duration) (reason string, err error) {
	cause := context.Cause(ctx)
	if errors.Is(cause, errTimeoutCause) {
		return "timeout", fmt.Errorf("%w: stopped after %v", ErrTimeout, timeout)
	}
	return "cancelled", fmt.Errorf("%w: %w", ErrCancelled, cause)
}
