package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dms-project/dms/internal/poll"
)

// testJob is testdata/testjob built for wasip1 once per test binary.
var testJob []byte

// sharedWasm serves the tests that run testJob, so the 2.4 MB module is
// compiled once per test run rather than once per test. It allows mounts
// under mountRoot.
var (
	sharedWasm *Wasm
	mountRoot  string
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "executor-test-*")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// DMS_EXECUTOR_TESTJOB names a prebuilt module, for running a
		// compiled test binary on a machine without the Go toolchain.
		out := os.Getenv("DMS_EXECUTOR_TESTJOB")
		if out == "" {
			out = filepath.Join(dir, "testjob.wasm")
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/testjob")
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build testjob for wasip1: %v\n%s", err, b)
				return 1
			}
		}
		if testJob, err = os.ReadFile(out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		mountRoot = filepath.Join(dir, "mounts")
		if err := os.Mkdir(mountRoot, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if sharedWasm, err = NewWasm(WithMountRoots(mountRoot)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer sharedWasm.Close(context.Background())
		return m.Run()
	}())
}

func newWasm(t testing.TB, opts ...Option) *Wasm {
	t.Helper()
	w, err := NewWasm(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return w
}

func jobSpec(args ...string) Spec {
	return Spec{
		Kind:        KindWasm,
		Module:      testJob,
		Args:        args,
		MemoryBytes: 256 << 20,
		Timeout:     30 * time.Second,
	}
}

// --- tiny hand-written modules, for what needs no Go runtime ---

func uleb(v uint32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func vec(items ...[]byte) []byte {
	return append(uleb(uint32(len(items))), bytes.Join(items, nil)...)
}

func section(id byte, payload []byte) []byte {
	return append(append([]byte{id}, uleb(uint32(len(payload)))...), payload...)
}

func wname(s string) []byte { return append(uleb(uint32(len(s))), s...) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// rawModule builds a module with one memory of memPages exported as
// "memory", an optional import of wasi proc_exit (func 0, type (i32)->()),
// and a function exported as export (type ()->()) with the given body.
func rawModule(importExit bool, memPages uint32, export string, body ...byte) []byte {
	types := section(1, vec(
		[]byte{0x60, 0x01, 0x7f, 0x00}, // (i32) -> ()
		[]byte{0x60, 0x00, 0x00},       // () -> ()
	))
	var imports []byte
	fn := uint32(0)
	if importExit {
		imports = section(2, vec(cat(wname("wasi_snapshot_preview1"), wname("proc_exit"), []byte{0x00, 0x00})))
		fn = 1
	}
	funcs := section(3, vec([]byte{0x01}))
	mem := section(5, vec(cat([]byte{0x00}, uleb(memPages))))
	exports := section(7, vec(
		cat(wname(export), []byte{0x00}, uleb(fn)),
		cat(wname("memory"), []byte{0x02, 0x00}),
	))
	code := cat([]byte{0x00}, body, []byte{0x0b}) // no locals
	codes := section(10, vec(cat(uleb(uint32(len(code))), code)))
	return cat([]byte("\x00asm\x01\x00\x00\x00"), types, imports, funcs, mem, exports, codes)
}

var (
	// loopModule spins forever: (loop (br 0)).
	loopModule = rawModule(false, 1, "_start", 0x03, 0x40, 0x0c, 0x00, 0x0b)
	// trapModule hits unreachable.
	trapModule = rawModule(false, 1, "_start", 0x00)
	// growModule grows memory 16 pages at a time until refused, then traps.
	growModule = rawModule(false, 1, "_start",
		0x02, 0x40, 0x03, 0x40, // block loop
		0x41, 0x10, 0x40, 0x00, // i32.const 16; memory.grow 0
		0x41, 0x7f, 0x46, 0x0d, 0x01, // i32.const -1; i32.eq; br_if 1
		0x0c, 0x00, 0x0b, 0x0b, // br 0; end; end
		0x00) // unreachable
	// noStartModule is a reactor, not a command.
	noStartModule = rawModule(false, 1, "run")
)

// exitModule calls proc_exit(code).
func exitModule(code byte) []byte {
	return rawModule(true, 1, "_start", 0x41, code&0x3f, 0x10, 0x00)
}

func rawSpec(module []byte) Spec {
	return Spec{Kind: KindWasm, Module: module, MemoryBytes: 1 << 20, Timeout: 10 * time.Second}
}

// --- tests ---

func TestWasmEchoArgsEnvStdin(t *testing.T) {
	spec := jobSpec("echo", "a b", "c")
	spec.Env = map[string]string{"JOB_ID": "job-42"}
	spec.Stdin = []byte("hello stdin")
	res, err := sharedWasm.Run(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "args=a b,c\nJOB_ID=job-42\nstdin=hello stdin\n"
	if string(res.Stdout) != want || string(res.Stderr) != "to stderr\n" {
		t.Errorf("stdout %q stderr %q, want %q and %q", res.Stdout, res.Stderr, want, "to stderr\n")
	}
	if res.ExitCode != 0 || res.Reason != "" || res.Duration <= 0 || res.PeakMemoryBytes == 0 {
		t.Errorf("result %+v", res)
	}
}

func TestWasmEnvIsOnlyTheSpec(t *testing.T) {
	t.Setenv("DMS_PROVIDER_SECRET", "leak")
	spec := jobSpec("env")
	spec.Env = map[string]string{"B": "2", "A": "1"}
	res, err := sharedWasm.Run(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Stdout); got != "A=1\nB=2\n" {
		t.Errorf("guest environment %q, want exactly the spec's", got)
	}
}

func TestWasmNonZeroExitIsNotAnError(t *testing.T) {
	res, err := sharedWasm.Run(context.Background(), jobSpec("exit", "3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || string(res.Stdout) != "exiting\n" {
		t.Errorf("got exit %d stdout %q, want 3 and %q", res.ExitCode, res.Stdout, "exiting\n")
	}

	w := newWasm(t)
	res, err = w.Run(context.Background(), rawSpec(exitModule(7)), nil)
	if err != nil || res.ExitCode != 7 {
		t.Errorf("raw proc_exit(7): exit %d err %v", res.ExitCode, err)
	}
}

func TestWasmTrap(t *testing.T) {
	w := newWasm(t)
	res, err := w.Run(context.Background(), rawSpec(trapModule), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != -1 || res.Reason != "trap: unreachable" {
		t.Errorf("got exit %d reason %q, want -1 and %q", res.ExitCode, res.Reason, "trap: unreachable")
	}
}

func TestWasmTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"go loop", jobSpec("loop")},
		{"go sleep", jobSpec("sleep", "1h")},
		{"raw loop", rawSpec(loopModule)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Timeout = 300 * time.Millisecond
			res, err := sharedWasm.Run(context.Background(), tc.spec, nil)
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("err %v, want ErrTimeout", err)
			}
			if res.Reason != "timeout" || res.ExitCode != -1 {
				t.Errorf("result %+v", res)
			}
		})
	}
}

func TestWasmCancel(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"go sleep", jobSpec("sleep", "1h")},
		{"raw loop", rawSpec(loopModule)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			res, err := sharedWasm.Run(ctx, tc.spec, nil)
			if !errors.Is(err, ErrCancelled) || errors.Is(err, ErrTimeout) || res.Reason != "cancelled" {
				t.Fatalf("err %v reason %q, want ErrCancelled", err, res.Reason)
			}
		})
	}
	t.Run("caller deadline is not the job timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := sharedWasm.Run(ctx, rawSpec(loopModule), nil); !errors.Is(err, ErrCancelled) ||
			!errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want ErrCancelled wrapping the caller's deadline", err)
		}
	})
}

func TestWasmMemoryLimit(t *testing.T) {
	t.Run("go hog", func(t *testing.T) {
		spec := jobSpec("hog")
		spec.MemoryBytes = 64 << 20
		res, err := sharedWasm.Run(context.Background(), spec, nil)
		if !errors.Is(err, ErrMemoryLimit) {
			t.Fatalf("err %v (exit %d, stderr %.200q), want ErrMemoryLimit", err, res.ExitCode, res.Stderr)
		}
		if res.Reason != "memory limit" || res.PeakMemoryBytes > 64<<20 || res.PeakMemoryBytes < 32<<20 {
			t.Errorf("reason %q peak %d", res.Reason, res.PeakMemoryBytes)
		}
		if !bytes.Contains(res.Stderr, []byte("out of memory")) {
			t.Errorf("stderr %.300q, want Go's out of memory", res.Stderr)
		}
	})
	t.Run("raw grow", func(t *testing.T) {
		spec := rawSpec(growModule)
		spec.MemoryBytes = 4<<20 + 100 // rounds down to 64 pages
		res, err := sharedWasm.Run(context.Background(), spec, nil)
		if !errors.Is(err, ErrMemoryLimit) {
			t.Fatalf("err %v, want ErrMemoryLimit", err)
		}
		if res.PeakMemoryBytes != 4<<20-15*wasmPageSize {
			// 1 page, then +16 pages while it fits: 49 pages.
			t.Errorf("peak %d, want %d", res.PeakMemoryBytes, 4<<20-15*wasmPageSize)
		}
	})
	t.Run("initial memory above cap", func(t *testing.T) {
		spec := rawSpec(rawModule(false, 32, "_start"))
		spec.MemoryBytes = 16 * wasmPageSize
		if _, err := sharedWasm.Run(context.Background(), spec, nil); !errors.Is(err, ErrMemoryLimit) {
			t.Fatalf("err %v, want ErrMemoryLimit", err)
		}
	})
	t.Run("go within cap", func(t *testing.T) {
		spec := jobSpec("echo")
		spec.MemoryBytes = 64 << 20
		if _, err := sharedWasm.Run(context.Background(), spec, nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestWasmNoFilesystemWithoutGrant(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/etc/passwd", filepath.Join(dir, "secret"), "secret", "/"} {
		res, err := sharedWasm.Run(context.Background(), jobSpec("open", p), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 1 || len(res.Stdout) != 0 {
			t.Errorf("open %s: exit %d stdout %q, want refused", p, res.ExitCode, res.Stdout)
		}
	}
}

func TestWasmMounts(t *testing.T) {
	data, err := os.MkdirTemp(mountRoot, "data-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	if err := os.WriteFile(filepath.Join(data, "in.txt"), []byte("mounted"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := jobSpec("open", "/data/in.txt")
	spec.Mounts = map[string]string{"/data": data}
	res, err := sharedWasm.Run(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "mounted" {
		t.Errorf("stdout %q stderr %q, want the mounted file", res.Stdout, res.Stderr)
	}

	// Read-only: the guest cannot create files in the mount.
	write := jobSpec("write", "/data/new.txt")
	write.Mounts = spec.Mounts
	res, err = sharedWasm.Run(context.Background(), write, nil)
	if err != nil || res.ExitCode != 1 {
		t.Errorf("write into read-only mount: exit %d err %v, want exit 1", res.ExitCode, err)
	}
	if _, err := os.Stat(filepath.Join(data, "new.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("guest created a file on the host: %v", err)
	}
	outside := jobSpec("open", "/x/passwd")
	outside.Mounts = map[string]string{"/x": "/etc"}
	if _, err := sharedWasm.Run(context.Background(), outside, nil); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("mount outside roots: err %v, want ErrNotAllowed", err)
	}

	// A provider that grants no mount roots refuses any mount.
	if _, err := newWasm(t).Run(context.Background(), spec, nil); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("mount without roots: err %v, want ErrNotAllowed", err)
	}
}

// recorder is an Output that keeps what it is sent.
type recorder struct {
	mu             sync.Mutex
	stdout, stderr []byte
}

func (r *recorder) Stdout(p []byte) {
	r.mu.Lock()
	r.stdout = append(r.stdout, p...)
	r.mu.Unlock()
}

func (r *recorder) Stderr(p []byte) {
	r.mu.Lock()
	r.stderr = append(r.stderr, p...)
	r.mu.Unlock()
}

func TestWasmOutputTruncatedAndStreamed(t *testing.T) {
	spec := jobSpec("spam", "100000")
	spec.MaxOutput = 1000
	rec := &recorder{}
	res, err := sharedWasm.Run(context.Background(), spec, rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != 1000 || !res.StdoutTruncated || len(res.Stderr) != 1000 || !res.StderrTruncated {
		t.Errorf("stdout %d (truncated %v), stderr %d (truncated %v), want 1000 and true",
			len(res.Stdout), res.StdoutTruncated, len(res.Stderr), res.StderrTruncated)
	}
	if !bytes.Equal(rec.stdout, res.Stdout) || !bytes.Equal(rec.stderr, res.Stderr) {
		t.Errorf("streamed %d/%d bytes, result %d/%d: want the same bytes",
			len(rec.stdout), len(rec.stderr), len(res.Stdout), len(res.Stderr))
	}

	spec.MaxOutput = 0 // default 1 MiB: 100000 bytes fit
	res, err = sharedWasm.Run(context.Background(), spec, nil)
	if err != nil || len(res.Stdout) != 100000 || res.StdoutTruncated {
		t.Errorf("default cap: %d bytes truncated %v err %v", len(res.Stdout), res.StdoutTruncated, err)
	}
}

func TestWasmInvalidModule(t *testing.T) {
	w := newWasm(t)
	withImport := cat([]byte("\x00asm\x01\x00\x00\x00"),
		section(1, vec([]byte{0x60, 0x00, 0x00})),
		section(2, vec(cat(wname("env"), wname("launch_missiles"), []byte{0x00, 0x00}))))
	for _, tc := range []struct {
		name, module, want string
	}{
		{"not wasm", "#!/bin/sh\necho hi\n", "no \\0asm header"},
		{"truncated", string(testJob[:1500]), "compile"},
		{"garbage section", "\x00asm\x01\x00\x00\x00\x01\xff\xff\xff", "compile"},
		{"no _start", string(noStartModule), "_start"},
		{"foreign import", string(withImport), "env.launch_missiles"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.Run(context.Background(), rawSpec([]byte(tc.module)), nil)
			if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrInvalidModule mentioning %q", err, tc.want)
			}
		})
	}
	if s := w.Stats(); s.Entries != 0 {
		t.Errorf("failed compilations cached: %+v", s)
	}
}

func TestSpecValidate(t *testing.T) {
	ok := rawSpec(trapModule)
	for _, tc := range []struct {
		field string
		edit  func(*Spec)
	}{
		{"MemoryBytes", func(s *Spec) { s.MemoryBytes = 0 }},
		{"MemoryBytes", func(s *Spec) { s.MemoryBytes = 1000 }},
		{"MemoryBytes", func(s *Spec) { s.MemoryBytes = 5 << 30 }},
		{"Timeout", func(s *Spec) { s.Timeout = 0 }},
		{"MaxOutput", func(s *Spec) { s.MaxOutput = -1 }},
		{"Kind", func(s *Spec) { s.Kind = "podman" }},
		{"Image", func(s *Spec) { s.Kind = KindDocker; s.Module = nil }},
		{"Image", func(s *Spec) { s.Image = "x:1" }},
		{"Mounts", func(s *Spec) { s.Mounts = map[string]string{"/outputs/x": "/tmp"} }},
		{"OutputDir", func(s *Spec) { s.OutputDir = "out" }},
		{"Module", func(s *Spec) { s.Module = nil }},
		{"Command", func(s *Spec) { s.Command = []string{"ls"} }},
		{"Env", func(s *Spec) { s.Env = map[string]string{"A=B": "x"} }},
		{"Env", func(s *Spec) { s.Env = map[string]string{"": "x"} }},
		{"Args", func(s *Spec) { s.Args = []string{"a\x00b"} }},
		{"Mounts", func(s *Spec) { s.Mounts = map[string]string{"data": "/tmp"} }},
		{"Mounts", func(s *Spec) { s.Mounts = map[string]string{"/data": "tmp"} }},
	} {
		s := ok
		tc.edit(&s)
		err := s.Validate()
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("%s: err %v, want ErrInvalidSpec naming the field", tc.field, err)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid spec: %v", err)
	}
	native := Spec{Kind: KindNative, Command: []string{"true"}, MemoryBytes: 1, Timeout: time.Second}
	if err := native.Validate(); err != nil {
		t.Errorf("valid native spec: %v", err)
	}
	native.Args = []string{"x"}
	if err := native.Validate(); err == nil || !strings.Contains(err.Error(), "Args:") {
		t.Errorf("native with Args: %v", err)
	}
	if _, err := sharedWasm.Run(context.Background(), native, nil); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("native spec on wasm executor: %v", err)
	}
}

// A module nobody runs for the cache's age is evicted, and compiled again
// when it is asked for.
func TestWasmModuleCacheAge(t *testing.T) {
	w := newWasm(t, WithModuleCacheAge(50*time.Millisecond))
	if _, err := w.Run(context.Background(), rawSpec(exitModule(0)), nil); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the unused module to be evicted", func() bool {
		s := w.Stats()
		return s.Entries == 0 && s.Evictions == 1
	})
	if _, err := w.Run(context.Background(), rawSpec(exitModule(0)), nil); err != nil || w.Stats().Compiles != 2 {
		t.Fatalf("after eviction: %v, %+v", err, w.Stats())
	}
}

func TestWasmModuleCache(t *testing.T) {
	w := newWasm(t, WithModuleCache(2, 1<<20))
	run := func(m []byte, wantExit int) {
		t.Helper()
		res, err := w.Run(context.Background(), rawSpec(m), nil)
		if err != nil || res.ExitCode != wantExit {
			t.Fatalf("exit %d err %v, want %d", res.ExitCode, err, wantExit)
		}
	}
	run(exitModule(1), 1)
	run(exitModule(1), 1)
	if s := w.Stats(); s.Compiles != 1 || s.CacheHits != 1 || s.Entries != 1 {
		t.Errorf("after two runs of one module: %+v, want 1 compile, 1 hit", s)
	}
	run(exitModule(2), 2)
	run(exitModule(3), 3) // evicts module 1, least recently used
	run(exitModule(2), 2)
	s := w.Stats()
	if s.Compiles != 3 || s.CacheHits != 2 || s.Evictions != 1 || s.Entries != 2 {
		t.Errorf("after eviction: %+v, want 3 compiles, 2 hits, 1 eviction, 2 entries", s)
	}
	run(exitModule(1), 1)
	if s := w.Stats(); s.Compiles != 4 {
		t.Errorf("evicted module not recompiled: %+v", s)
	}
}

func TestWasmConcurrentRuns(t *testing.T) {
	w := newWasm(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			res, err := w.Run(context.Background(), rawSpec(exitModule(byte(5))), nil)
			if err != nil || res.ExitCode != 5 {
				t.Errorf("raw run %d: exit %d err %v", i, res.ExitCode, err)
			}
		})
		wg.Go(func() {
			spec := jobSpec("echo", fmt.Sprint(i))
			spec.Stdin = []byte(fmt.Sprint("in", i))
			res, err := sharedWasm.Run(context.Background(), spec, nil)
			want := fmt.Sprintf("args=%d\nJOB_ID=\nstdin=in%d\n", i, i)
			if err != nil || string(res.Stdout) != want {
				t.Errorf("go run %d: stdout %q err %v, want %q", i, res.Stdout, err, want)
			}
		})
	}
	wg.Wait()
	if s := w.Stats(); s.Compiles != 1 || s.CacheHits != 7 {
		t.Errorf("8 concurrent runs of one module: %+v, want 1 compile and 7 hits", s)
	}
}

func TestWasmCloseStopsRuns(t *testing.T) {
	w, err := NewWasm()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.Run(context.Background(), rawSpec(loopModule), nil)
		done <- err
	}()
	poll.Until(t, time.Minute, "the run to start", func() bool { return w.Stats().Runs > 0 })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrCancelled) || !errors.Is(err, ErrClosed) {
		t.Errorf("run during Close: %v, want ErrCancelled (executor closed)", err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := w.Run(context.Background(), rawSpec(trapModule), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("run after Close: %v, want ErrClosed", err)
	}
}

// helloWasm is the demo job; tests using it skip if it was not built.
func helloWasm(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../examples/hello/hello.wasm")
	if err != nil {
		t.Skipf("examples/hello/hello.wasm not built: %v", err)
	}
	return b
}

func TestHelloExample(t *testing.T) {
	spec := Spec{
		Kind: KindWasm, Module: helloWasm(t), Args: []string{"-n", "1000", "mesh"},
		Env: map[string]string{"JOB_ID": "j1"}, Stdin: []byte("ping\n"),
		MemoryBytes: 128 << 20, Timeout: 30 * time.Second,
	}
	res, err := sharedWasm.Run(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "Hello from dms, mesh!\njob id: j1\nstdin: ping\nprimes below 1000: 168\n"
	if string(res.Stdout) != want || res.ExitCode != 0 {
		t.Errorf("stdout %q exit %d, want %q", res.Stdout, res.ExitCode, want)
	}
}

// BenchmarkWasmRunCached is one run of the demo job with its module already
// compiled: what a provider pays per job after the first.
func BenchmarkWasmRunCached(b *testing.B) {
	w := newWasm(b)
	spec := Spec{Kind: KindWasm, Module: helloWasm(b), Args: []string{"-n", "100000"},
		MemoryBytes: 128 << 20, Timeout: time.Minute}
	if err := w.Compile(context.Background(), spec.Module); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if res, err := w.Run(context.Background(), spec, nil); err != nil || res.ExitCode != 0 {
			b.Fatalf("exit %d err %v", res.ExitCode, err)
		}
	}
}

// BenchmarkWasmCompileHello compares compiling the demo module from scratch
// (a fresh executor each time) with finding it in the cache.
func BenchmarkWasmCompileHello(b *testing.B) {
	module := helloWasm(b)
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			w, err := NewWasm()
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Compile(context.Background(), module); err != nil {
				b.Fatal(err)
			}
			_ = w.Close(context.Background())
		}
	})
	b.Run("cached", func(b *testing.B) {
		w := newWasm(b)
		if err := w.Compile(context.Background(), module); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := w.Compile(context.Background(), module); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzWasmRun: whatever bytes arrive as a module, Run returns an error or a
// result, never a panic.
func FuzzWasmRun(f *testing.F) {
	for _, m := range [][]byte{loopModule, trapModule, growModule, noStartModule, exitModule(0), []byte("\x00asm\x01\x00\x00\x00")} {
		f.Add(m)
	}
	w := newWasm(f, WithModuleCache(4, 1<<20))
	f.Fuzz(func(t *testing.T, module []byte) {
		spec := rawSpec(module)
		spec.Timeout = 50 * time.Millisecond
		res, err := w.Run(context.Background(), spec, nil)
		if err == nil && res.ExitCode == -1 && !strings.HasPrefix(res.Reason, "trap: ") {
			t.Errorf("no error, no exit code, reason %q", res.Reason)
		}
	})
}

// A deterministic run fixes everything a module could tell two runs apart
// by: the same seed and clock give the same bytes, another seed other
// random numbers, and without determinism the real clock shows.
func TestWasmDeterministicRunsAgreeByteForByte(t *testing.T) {
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	run := func(d *Determinism) string {
		t.Helper()
		spec := jobSpec("entropy")
		spec.Deterministic = d
		res, err := sharedWasm.Run(context.Background(), spec, nil)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("run: %v, exit %d, stderr %q", err, res.ExitCode, res.Stderr)
		}
		return string(res.Stdout)
	}
	first, second := run(&Determinism{Seed: 7, Clock: clock}), run(&Determinism{Seed: 7, Clock: clock})
	if first != second {
		t.Fatalf("two runs with one seed and clock differ:\n%s\n%s", first, second)
	}
	if !strings.Contains(first, "now=2026-01-02T03:04:05.") {
		t.Errorf("the clock does not start at the one given:\n%s", first)
	}
	other := run(&Determinism{Seed: 8, Clock: clock})
	if pick(other, "crypto=") == pick(first, "crypto=") || pick(other, "math=") == pick(first, "math=") {
		t.Errorf("another seed gives the same random numbers:\n%s\n%s", first, other)
	}
	if real := run(nil); pick(real, "now=") == pick(first, "now=") || strings.Contains(real, "now=2026-01-02T03:04:05.") {
		t.Errorf("a run that is not deterministic reads the fixed clock:\n%s", real)
	}
}

// pick returns the value of the line of out that starts with key.
func pick(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			return v
		}
	}
	return ""
}

func TestSpecDeterministicOnlyForWasm(t *testing.T) {
	spec := Spec{Kind: KindNative, Command: []string{"true"}, MemoryBytes: 1 << 20, Timeout: time.Second, Deterministic: &Determinism{Seed: 1}}
	if err := spec.Validate(); err == nil || !strings.Contains(err.Error(), "Deterministic") {
		t.Fatalf("a native spec with a fixed clock: %v, want an error naming Deterministic", err)
	}
}
