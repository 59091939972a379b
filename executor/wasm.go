package executor

import (
	"bytes"
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/dms-project/dms/internal/procmem"
)

// Wasm runs WASI preview 1 command modules in a wazero sandbox: no network
// (preview 1 has none), no filesystem unless a mount is granted, linear
// memory capped per job, run time capped per job.
//
// One runtime serves every job. Compiled modules are cached by the sha256 of
// their bytes, so a module is compiled once however many jobs run it; the
// per-job memory cap is enforced by a memory allocator installed per
// instantiation, which needs no runtime (and no compilation) per limit.
type Wasm struct {
	log        *slog.Logger
	runtime    wazero.Runtime
	cache      wazero.CompilationCache
	wasiFuncs  map[string]api.FunctionDefinition
	mountRoots []string

	lifecycle

	mu      sync.Mutex // guards everything below
	modules map[[32]byte]*moduleEntry
	lru     *list.List // of *moduleEntry, most recently used first
	maxN    int
	maxB    int64
	maxAge  time.Duration
	bytes   int64
	stats   WasmStats
}

var _ Executor = (*Wasm)(nil)

// WasmStats counts what the module cache did, for tests and the bench
// command.
type WasmStats struct {
	// Compiles is how many times a module was compiled (cache misses).
	Compiles uint64
	// CacheHits is how many runs found their module compiled already.
	CacheHits uint64
	// Evictions is how many compiled modules were dropped to stay in bounds.
	Evictions uint64
	// Entries and CachedBytes describe the cache now (CachedBytes counts
	// wasm input bytes).
	Entries     int
	CachedBytes int64
	// CompileTime is the total time spent compiling; LastCompile the latest.
	CompileTime, LastCompile time.Duration
	// Runs is how many jobs were started.
	Runs uint64
}

// moduleEntry is one compiled module, shared by the runs using it. An entry
// evicted while in use is closed by its last user.
type moduleEntry struct {
	key      [32]byte
	size     int64
	ready    chan struct{} // closed once compiled or err is set
	compiled wazero.CompiledModule
	minMem   uint64 // bytes of linear memory the module starts with
	err      error
	refs     int
	evicted  bool
	elem     *list.Element
	lastUsed time.Time
	idle     *time.Timer // evicts the entry once unused for maxAge
}

// NewWasm starts the WebAssembly executor. Close it to free compiled code.
func NewWasm(opts ...Option) (*Wasm, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("new wasm executor: %w", err)
	}
	var cache wazero.CompilationCache
	if cfg.cacheDir != "" {
		if cache, err = wazero.NewCompilationCacheWithDir(cfg.cacheDir); err != nil {
			return nil, fmt.Errorf("new wasm executor: compilation cache: %w", err)
		}
	} else {
		cache = wazero.NewCompilationCache()
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithCompilationCache(cache))
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return nil, errors.Join(fmt.Errorf("new wasm executor: instantiate WASI: %w", err),
			rt.Close(ctx), cache.Close(ctx))
	}
	w := &Wasm{
		log:        cfg.logger.With("executor", KindWasm),
		runtime:    rt,
		cache:      cache,
		wasiFuncs:  rt.Module(wasi_snapshot_preview1.ModuleName).ExportedFunctionDefinitions(),
		mountRoots: cfg.mountRoots,
		modules:    make(map[[32]byte]*moduleEntry),
		lru:        list.New(),
		maxN:       cfg.cacheEntries,
		maxB:       cfg.cacheBytes,
		maxAge:     cfg.cacheAge,
	}
	w.lifecycle = newLifecycle()
	return w, nil
}

// Kind implements Executor.
func (w *Wasm) Kind() Kind { return KindWasm }

// Stats returns a snapshot of the module cache counters.
func (w *Wasm) Stats() WasmStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Entries = len(w.modules)
	s.CachedBytes = w.bytes
	return s
}

// Close stops running jobs, waits for them and frees all compiled code.
func (w *Wasm) Close(ctx context.Context) error {
	first, err := w.close(ctx)
	if !first {
		return nil
	}
	if err != nil {
		// Closing the runtime below stops the stragglers anyway.
		w.log.Warn("close: jobs still running", "err", err)
	}
	return errors.Join(w.runtime.Close(ctx), w.cache.Close(ctx))
}

// Compile compiles module into the cache ahead of a run (when a bid is won,
// say), so the job's own run starts at once. It validates like Run does.
func (w *Wasm) Compile(ctx context.Context, module []byte) error {
	if err := w.enter(); err != nil {
		return fmt.Errorf("compile wasm module: %w", err)
	}
	defer w.leave()
	e, err := w.acquire(ctx, module)
	if err != nil {
		return fmt.Errorf("compile wasm module: %w", err)
	}
	w.release(e)
	return nil
}

// Run implements Executor.
func (w *Wasm) Run(ctx context.Context, spec Spec, out Output) (Result, error) {
	res := Result{ExitCode: -1}
	if err := checkKind(&spec, KindWasm); err != nil {
		return res, fmt.Errorf("run wasm job: %w", err)
	}
	fsConfig, err := w.mounts(spec.Mounts, spec.OutputDir)
	if err != nil {
		return res, fmt.Errorf("run wasm job: %w", err)
	}
	if err := w.enter(); err != nil {
		return res, fmt.Errorf("run wasm job: %w", err)
	}
	defer w.leave()

	e, err := w.acquire(ctx, spec.Module)
	if err != nil {
		return res, fmt.Errorf("run wasm job: %w", err)
	}
	defer w.release(e)
	log := w.log.With("module", hex.EncodeToString(e.key[:6]))

	limit := spec.MemoryBytes / wasmPageSize * wasmPageSize
	if e.minMem > limit {
		res.Reason = "memory limit"
		return res, fmt.Errorf("run wasm job: %w: the module starts with %d bytes of memory, the cap is %d",
			ErrMemoryLimit, e.minMem, limit)
	}

	runCtx, cancel := runContext(ctx, w.closeCtx, spec.Timeout)
	defer cancel()
	mem := &limitedMemory{limit: limit}
	stdout, stderr := captures(spec.maxOutput(), out)

	mc := wazero.NewModuleConfig().
		WithName(""). // anonymous: many instances of one module may run at once
		WithArgs(append([]string{"job"}, spec.Args...)...).
		WithStdin(bytes.NewReader(spec.Stdin)).
		WithStdout(stdout).
		WithStderr(stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(func(ns int64) { sleepCtx(runCtx, time.Duration(ns)) }).
		WithRandSource(rand.Reader)
	if d := spec.Deterministic; d != nil {
		mc = deterministic(mc, d, runCtx)
	}
	for _, k := range sortedKeys(spec.Env) {
		mc = mc.WithEnv(k, spec.Env[k])
	}
	if fsConfig != nil {
		mc = mc.WithFSConfig(fsConfig)
	}

	w.mu.Lock()
	w.stats.Runs++
	w.mu.Unlock()

	start := time.Now()
	mod, runErr := w.instantiate(experimental.WithMemoryAllocator(runCtx, mem), e.compiled, mc)
	res.Duration = time.Since(start)
	if mod != nil {
		_ = mod.Close(context.Background())
	}
	mem.release()
	res.Stdout, res.StdoutTruncated = stdout.result()
	res.Stderr, res.StderrTruncated = stderr.result()
	res.PeakMemoryBytes = mem.peak.Load()

	err = w.classify(runCtx, spec.Timeout, runErr, mem, &res)
	log.Debug("wasm job finished", "exit", res.ExitCode, "reason", res.Reason,
		"duration", res.Duration, "peak_memory", res.PeakMemoryBytes, "err", err)
	if err != nil {
		return res, fmt.Errorf("run wasm job: %w", err)
	}
	return res, nil
}

// instantiate runs the module's _start. A panic inside the runtime becomes an
// error: one bad job must not take the node down.
func (w *Wasm) instantiate(ctx context.Context, c wazero.CompiledModule, mc wazero.ModuleConfig) (mod api.Module, err error) {
	defer func() {
		if r := recover(); r != nil {
			mod, err = nil, fmt.Errorf("%w: runtime panic: %v", ErrInvalidModule, r)
		}
	}()
	return w.runtime.InstantiateModule(ctx, c, mc)
}

// classify turns how the instance ended into Result fields and Run's error.
func (w *Wasm) classify(runCtx context.Context, timeout time.Duration, runErr error, mem *limitedMemory, res *Result) error {
	var exit *sys.ExitError
	switch {
	case runErr == nil:
		res.ExitCode = 0
		return nil
	case errors.As(runErr, &exit) &&
		(exit.ExitCode() == sys.ExitCodeDeadlineExceeded || exit.ExitCode() == sys.ExitCodeContextCanceled):
		var err error
		res.Reason, err = stopError(runCtx, timeout)
		return err
	case errors.Is(runErr, ErrInvalidModule):
		if mem.denied.Load() {
			// A memory the module never exports started above the cap.
			res.Reason = "memory limit"
			return fmt.Errorf("%w: initial memory above %d bytes", ErrMemoryLimit, mem.limit)
		}
		return runErr
	case errors.As(runErr, &exit):
		res.ExitCode = int(exit.ExitCode())
		if mem.denied.Load() {
			// The job asked for memory past its cap and then failed (Go's
			// runtime throws "out of memory" and exits 2): the cap stopped it.
			res.Reason = "memory limit"
			return fmt.Errorf("%w: exit code %d after memory grow past %d bytes was refused",
				ErrMemoryLimit, res.ExitCode, mem.limit)
		}
		return nil
	}
	msg := runErr.Error()
	i := strings.Index(msg, "wasm error: ")
	if i < 0 {
		// Failed before _start ran: a link error, so the module is not a
		// WASI command this executor can run.
		return fmt.Errorf("%w: instantiate: %w", ErrInvalidModule, runErr)
	}
	trap := msg[i+len("wasm error: "):]
	if j := strings.IndexByte(trap, '\n'); j >= 0 {
		trap = trap[:j]
	}
	if mem.denied.Load() {
		res.Reason = "memory limit"
		return fmt.Errorf("%w: trap %q after memory grow past %d bytes was refused", ErrMemoryLimit, trap, mem.limit)
	}
	res.Reason = "trap: " + trap
	return nil
}

// mounts builds the filesystem a spec asks for: read-only directories, and
// the output directory writable at /outputs. Host paths outside the
// provider's mount roots are refused.
func (w *Wasm) mounts(m map[string]string, outputDir string) (wazero.FSConfig, error) {
	if len(m) == 0 && outputDir == "" {
		return nil, nil
	}
	fc := wazero.NewFSConfig()
	check := func(field, guest, dir string) (string, error) {
		host, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %s: %w", ErrInvalidSpec, field, guest, err)
		}
		if fi, err := os.Stat(host); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("%w: %s: %s: host path %s is not a directory", ErrInvalidSpec, field, guest, host)
		}
		if !underAny(host, w.mountRoots) {
			return "", fmt.Errorf("%w: %s: %s: host path %s is outside the provider's mount roots %q",
				ErrNotAllowed, field, guest, host, w.mountRoots)
		}
		return host, nil
	}
	for _, guest := range sortedKeys(m) {
		host, err := check("Mounts", guest, m[guest])
		if err != nil {
			return nil, err
		}
		fc = fc.WithReadOnlyDirMount(host, guest)
	}
	if outputDir != "" {
		host, err := check("OutputDir", OutputsPath, outputDir)
		if err != nil {
			return nil, err
		}
		fc = fc.WithDirMount(host, OutputsPath)
	}
	return fc, nil
}

func underAny(p string, roots []string) bool {
	for _, r := range roots {
		if rr, err := filepath.EvalSymlinks(r); err == nil {
			r = rr
		}
		rel, err := filepath.Rel(r, p)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// acquire returns the compiled module for these bytes, compiling it at most
// once however many runs ask at the same time. Pair with release.
func (w *Wasm) acquire(ctx context.Context, module []byte) (*moduleEntry, error) {
	key := sha256.Sum256(module)
	w.mu.Lock()
	if e, ok := w.modules[key]; ok {
		e.refs++
		w.lru.MoveToFront(e.elem)
		w.stats.CacheHits++
		w.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			w.release(e)
			return nil, fmt.Errorf("%w: waiting for compilation: %w", ErrCancelled, context.Cause(ctx))
		}
		if e.err != nil {
			w.release(e)
			return nil, e.err
		}
		return e, nil
	}
	e := &moduleEntry{key: key, size: int64(len(module)), ready: make(chan struct{}), refs: 1}
	e.elem = w.lru.PushFront(e)
	w.modules[key] = e
	w.bytes += e.size
	w.stats.Compiles++
	w.mu.Unlock()

	start := time.Now()
	compiled, minMem, err := w.compile(ctx, module)
	took := time.Since(start)
	w.log.Debug("compiled wasm module", "module", hex.EncodeToString(key[:6]), "bytes", len(module),
		"took", took, "err", err)

	w.mu.Lock()
	w.stats.CompileTime += took
	w.stats.LastCompile = took
	e.compiled, e.minMem, e.err = compiled, minMem, err
	close(e.ready)
	if err != nil {
		// Do not keep failures: the entry goes once its waiters have seen it.
		w.dropLocked(e)
	}
	w.evictLocked()
	w.mu.Unlock()
	if err != nil {
		w.release(e)
		return nil, err
	}
	return e, nil
}

// release ends one use of an entry, closing it if it was evicted meanwhile;
// an entry left unused for maxAge is evicted then.
func (w *Wasm) release(e *moduleEntry) {
	w.mu.Lock()
	e.refs--
	e.lastUsed = time.Now()
	closeIt := e.evicted && e.refs == 0 && e.compiled != nil
	if e.refs == 0 && !e.evicted && w.maxAge > 0 {
		if e.idle == nil {
			e.idle = time.AfterFunc(w.maxAge, func() { w.expire(e) })
		} else {
			e.idle.Reset(w.maxAge)
		}
	}
	w.mu.Unlock()
	if closeIt {
		_ = e.compiled.Close(context.Background())
	}
}

// expire evicts an entry nobody used for maxAge: compiled code of a module
// that ran once is tens of MiB of a provider's memory for nothing. The
// memory goes back to the system at once rather than at the scavenger's
// pace, so an idle provider's footprint returns to idle.
func (w *Wasm) expire(e *moduleEntry) {
	if w.isClosed() {
		return
	}
	w.mu.Lock()
	if e.refs > 0 || e.evicted || time.Since(e.lastUsed) < w.maxAge {
		w.mu.Unlock()
		return
	}
	w.dropLocked(e)
	w.stats.Evictions++
	compiled := e.compiled
	w.mu.Unlock()
	if compiled != nil {
		_ = compiled.Close(context.Background())
	}
	debug.FreeOSMemory()
	// Running the module paged in much of the binary (wazero's compiler,
	// the executor, the runtime); like the start-up trim of dms run, let
	// the idle node give those pages back too: 33 MiB resident after a
	// 2 MiB module's eviction without this, 14 MiB idle.
	_, _ = procmem.ReleaseExecutable()
}

// dropLocked removes e from the cache; its last user closes it.
func (w *Wasm) dropLocked(e *moduleEntry) {
	if e.evicted {
		return
	}
	if e.idle != nil {
		e.idle.Stop()
	}
	e.evicted = true
	w.lru.Remove(e.elem)
	delete(w.modules, e.key)
	w.bytes -= e.size
}

// evictLocked drops least recently used compiled modules until the cache is
// within bounds. Modules still compiling are kept.
func (w *Wasm) evictLocked() {
	for el := w.lru.Back(); el != nil && (w.lru.Len() > w.maxN || w.bytes > w.maxB); {
		e := el.Value.(*moduleEntry)
		el = el.Prev()
		select {
		case <-e.ready:
		default:
			continue
		}
		w.dropLocked(e)
		w.stats.Evictions++
		if e.refs == 0 && e.compiled != nil {
			_ = e.compiled.Close(context.Background())
		}
	}
}

// compile compiles and checks that the module is a WASI command this
// executor can run: it imports only WASI preview 1 functions with the right
// signatures, imports no memory, and exports _start.
func (w *Wasm) compile(ctx context.Context, module []byte) (c wazero.CompiledModule, minMem uint64, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, minMem, err = nil, 0, fmt.Errorf("%w: compiler panic: %v", ErrInvalidModule, r)
		}
	}()
	c, err = w.runtime.CompileModule(ctx, module)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: compile: %w", ErrInvalidModule, err)
	}
	if err := w.checkModule(c); err != nil {
		return nil, 0, errors.Join(err, c.Close(ctx))
	}
	for _, m := range c.ExportedMemories() {
		minMem = max(minMem, uint64(m.Min())*wasmPageSize)
	}
	return c, minMem, nil
}

func (w *Wasm) checkModule(c wazero.CompiledModule) error {
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		want, ok := w.wasiFuncs[name]
		if mod != wasi_snapshot_preview1.ModuleName || !ok {
			return fmt.Errorf("%w: imports %s.%s; only %s functions are provided",
				ErrInvalidModule, mod, name, wasi_snapshot_preview1.ModuleName)
		}
		if !sameTypes(f.ParamTypes(), want.ParamTypes()) || !sameTypes(f.ResultTypes(), want.ResultTypes()) {
			return fmt.Errorf("%w: imports %s.%s with the wrong signature", ErrInvalidModule, mod, name)
		}
	}
	for _, m := range c.ImportedMemories() {
		mod, name, _ := m.Import()
		return fmt.Errorf("%w: imports memory %s.%s; a job must define its own", ErrInvalidModule, mod, name)
	}
	if _, ok := c.ExportedFunctions()["_start"]; !ok {
		return fmt.Errorf("%w: exports no _start function (a WASI command module is expected, e.g. GOOS=wasip1 go build)",
			ErrInvalidModule)
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	return bytes.Equal(a, b)
}

// limitedMemory backs one instance's linear memory and refuses to grow past
// limit, so memory.grow returns -1 inside the guest. It also records the
// peak and whether a grow was refused, which is how a job killed by its own
// allocator failure is told apart from one that merely failed.
//
// Where it can, it reserves the whole cap as address space up front (mmap,
// no commit): growing is then free, pages cost only when touched, and the
// guest's memory stays out of the Go heap. Otherwise it grows a slice, as
// wazero does, copying on each reallocation.
type limitedMemory struct {
	limit    uint64
	reserved []byte // the mapping, released by release; nil when slice-backed
	buf      []byte
	peak     atomic.Uint64
	denied   atomic.Bool
}

// Allocate implements experimental.MemoryAllocator.
func (m *limitedMemory) Allocate(capacity, _ uint64) experimental.LinearMemory {
	if r, ok := reserveMemory(m.limit); ok {
		m.reserved = r
	} else {
		m.buf = make([]byte, 0, min(capacity, m.limit))
	}
	return m
}

// Reallocate implements experimental.LinearMemory. It is called from the
// guest's goroutine only; linear memory never shrinks.
func (m *limitedMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.denied.Store(true)
		return nil
	}
	switch {
	case m.reserved != nil:
		m.buf = m.reserved[:size:size]
	case size <= uint64(cap(m.buf)):
		m.buf = m.buf[:size]
	default:
		// append grows capacity geometrically and zeroes the slack.
		m.buf = append(m.buf, make([]byte, int(size)-len(m.buf))...)
	}
	if size > m.peak.Load() {
		m.peak.Store(size)
	}
	return m.buf
}

// Free implements experimental.LinearMemory. wazero may call it while the
// guest is still running (when the runtime closes), so the mapping is only
// released by release, once the instance has returned.
func (m *limitedMemory) Free() {}

// release unmaps the reservation; call it only after the guest has stopped.
func (m *limitedMemory) release() {
	if m.reserved != nil {
		releaseMemory(m.reserved)
		m.reserved, m.buf = nil, nil
	}
}

// sleepCtx sleeps for d or until ctx ends, so a guest sleeping in
// poll_oneoff cannot outlive its timeout.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// deterministic gives a module a clock and a random source that depend on
// nothing but d and what the module itself does, so that two honest runs of
// one job print the same bytes (replicated runs compare them). The clock
// starts at d.Clock and moves on by clockStep at each reading and by what
// the module sleeps; the random bytes are ChaCha8's from d.Seed.
func deterministic(mc wazero.ModuleConfig, d *Determinism, runCtx context.Context) wazero.ModuleConfig {
	var elapsed atomic.Int64 // nanoseconds since d.Clock
	start := d.Clock.UnixNano()
	read := func() int64 { return elapsed.Add(int64(clockStep)) }
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], d.Seed)
	return mc.
		WithWalltime(func() (int64, int32) {
			t := start + read()
			return t / 1e9, int32(t % 1e9)
		}, sys.ClockResolution(clockStep)).
		WithNanotime(read, sys.ClockResolution(clockStep)).
		WithNanosleep(func(ns int64) {
			sleepCtx(runCtx, time.Duration(ns))
			elapsed.Add(max(ns, 0))
		}).
		WithRandSource(mrand.NewChaCha8(seed))
}

// clockStep is how far a deterministic clock moves at each reading: a
// module that waits for the clock to move sees it move.
const clockStep = time.Microsecond
