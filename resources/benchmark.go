package resources

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
)

// Benchmark is the result of BenchmarkCapability. Throughputs are per second.
type Benchmark struct {
	// SingleCore and AllCore are MiB of SHA-256 hashed per second on one core
	// and on Threads cores at once: a fixed, allocation-free integer workload
	// that is the same on every machine.
	SingleCore float64 `json:"single_core_mib_s"`
	AllCore    float64 `json:"all_core_mib_s"`
	Threads    int     `json:"threads"`
	// MemoryBandwidth is bytes copied per second between two buffers larger
	// than any cache.
	MemoryBandwidth float64 `json:"memory_bytes_s"`
	// DiskWrite is bytes written and fsynced per second in the home's
	// filesystem.
	DiskWrite float64 `json:"disk_write_bytes_s"`
	// Score is what bids carry (capability.CPU.Score); see score.
	Score    float64          `json:"score"`
	Duration seconds.Duration `json:"duration"`
	At       time.Time        `json:"at"`
}

// Validate rejects a benchmark that could not have been measured.
func (b Benchmark) Validate() error {
	for _, f := range []float64{b.SingleCore, b.AllCore, b.MemoryBandwidth, b.DiskWrite, b.Score} {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return fmt.Errorf("benchmark: %v is not a finite number >= 0", f)
		}
	}
	if b.Score == 0 {
		return errors.New("benchmark: score is zero")
	}
	return nil
}

// Reference figures of a score of 100: one core of a 2020-era x86 server
// without SHA extensions hashing 500 MiB/s, copying memory at 10 GiB/s.
const (
	RefSingleCoreMiBs = 500
	RefMemoryBytesS   = 10 * capability.GiB
)

// score says how fast one core of the machine is: the single-core figure
// weighted 0.8 and memory bandwidth 0.2 (a geometric mean, so neither can make
// up for the other being very low). Core count and disk are not in it: the
// capability counts cores itself and disk speed says nothing of the cores.
func score(singleCoreMiBs, memBytesS float64) float64 {
	if singleCoreMiBs <= 0 || memBytesS <= 0 {
		return 0
	}
	s := 100 * math.Pow(singleCoreMiBs/RefSingleCoreMiBs, 0.8) * math.Pow(memBytesS/RefMemoryBytesS, 0.2)
	return math.Round(s*10) / 10
}

// Progress reports one step of the benchmark: once when it starts (Result
// empty) and once when it ends.
type Progress struct {
	Step   int    `json:"step"`
	Steps  int    `json:"steps"`
	Name   string `json:"name"`
	Result string `json:"result,omitempty"`
	Done   bool   `json:"done"`
}

// ProgressPrinter writes progress as one aligned line per step, for a terminal.
func ProgressPrinter(w io.Writer) func(Progress) {
	return func(p Progress) {
		if !p.Done {
			fmt.Fprintf(w, "[%d/%d] %-22s ", p.Step, p.Steps, p.Name)
			return
		}
		fmt.Fprintln(w, p.Result)
	}
}

type benchConfig struct {
	total    time.Duration
	threads  int
	progress func(Progress)
}

// BenchmarkOption configures BenchmarkCapability.
type BenchmarkOption func(*benchConfig) error

// Benchmark limits.
const (
	DefaultBenchmarkDuration = 3 * time.Second
	MaxBenchmarkDuration     = 10 * time.Second
	MinBenchmarkDuration     = 40 * time.Millisecond
)

// WithBenchmarkDuration sets the total time (default 3s, at most 10s).
func WithBenchmarkDuration(d time.Duration) BenchmarkOption {
	return func(c *benchConfig) error {
		if d < MinBenchmarkDuration || d > MaxBenchmarkDuration {
			return fmt.Errorf("benchmark duration %v: want %v to %v", d, MinBenchmarkDuration, MaxBenchmarkDuration)
		}
		c.total = d
		return nil
	}
}

// WithThreads sets how many cores the all-core step uses (default GOMAXPROCS).
func WithThreads(n int) BenchmarkOption {
	return func(c *benchConfig) error {
		if n < 1 || n > 4096 {
			return fmt.Errorf("benchmark threads %d: want 1 to 4096", n)
		}
		c.threads = n
		return nil
	}
}

// WithProgress reports each step as it starts and ends.
func WithProgress(f func(Progress)) BenchmarkOption {
	return func(c *benchConfig) error {
		if f == nil {
			return errors.New("progress: nil")
		}
		c.progress = f
		return nil
	}
}

// BenchmarkCapability measures the machine for a few seconds: SHA-256 on one
// core and on all cores, a memory copy, and writes with fsync to a temporary
// file in dir (the home, so the disk measured is the one offered). The time is
// split 30/30/20/20 between the steps, and a step that overruns takes the
// excess from the next ones, so the whole stays within the configured total
// (10 s at most) but for the last fsync.
func BenchmarkCapability(ctx context.Context, dir string, opts ...BenchmarkOption) (Benchmark, error) {
	cfg := benchConfig{total: DefaultBenchmarkDuration, threads: runtime.GOMAXPROCS(0), progress: func(Progress) {}}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return Benchmark{}, fmt.Errorf("benchmark: %w", err)
		}
	}
	start := time.Now()
	b := Benchmark{Threads: cfg.threads, At: start.UTC()}
	// Plan 95% of the total: buffer set-up and the final fsync come on top.
	planned := cfg.total * 95 / 100
	deadline := start.Add(planned)
	slice := func(pct int) time.Duration { return planned * time.Duration(pct) / 100 }
	steps := []struct {
		name string
		dur  time.Duration
		run  func(time.Duration) (string, error)
	}{
		{"cpu, one core", slice(30), func(d time.Duration) (string, error) {
			b.SingleCore = hashThroughput(ctx, 1, d)
			return fmt.Sprintf("%.0f MiB/s", b.SingleCore), ctx.Err()
		}},
		{fmt.Sprintf("cpu, %d threads", cfg.threads), slice(30), func(d time.Duration) (string, error) {
			b.AllCore = hashThroughput(ctx, cfg.threads, d)
			return fmt.Sprintf("%.0f MiB/s", b.AllCore), ctx.Err()
		}},
		{"memory copy", slice(20), func(d time.Duration) (string, error) {
			b.MemoryBandwidth = memoryThroughput(ctx, d)
			return capability.FormatBytes(uint64(b.MemoryBandwidth)) + "/s", ctx.Err()
		}},
		{"disk write + fsync", slice(20), func(d time.Duration) (string, error) {
			var err error
			b.DiskWrite, err = diskThroughput(ctx, dir, d)
			return capability.FormatBytes(uint64(b.DiskWrite)) + "/s", err
		}},
	}
	for i, s := range steps {
		cfg.progress(Progress{Step: i + 1, Steps: len(steps), Name: s.name})
		// A step that overran takes its excess from the ones after it.
		var later time.Duration
		for _, n := range steps[i+1:] {
			later += n.dur
		}
		d := max(min(s.dur, time.Until(deadline)-later), s.dur/4)
		res, err := s.run(d)
		if err != nil {
			cfg.progress(Progress{Step: i + 1, Steps: len(steps), Name: s.name, Result: "failed", Done: true})
			return Benchmark{}, fmt.Errorf("benchmark %s: %w", s.name, err)
		}
		cfg.progress(Progress{Step: i + 1, Steps: len(steps), Name: s.name, Result: res, Done: true})
	}
	b.Score = score(b.SingleCore, b.MemoryBandwidth)
	b.Duration = seconds.Duration(time.Since(start).Round(time.Millisecond))
	return b, nil
}

const hashChunk = 16 << 10

// rounds splits a CPU or memory step into short rounds and keeps the best:
// on a shared machine other work only ever slows a round down, so the best
// round is the closest to what the machine can do, and the score is steadier.
const rounds = 5

func bestOf(d time.Duration, f func(time.Duration) float64) float64 {
	var best float64
	for range rounds {
		best = max(best, f(d/rounds))
	}
	return best
}

// hashThroughput hashes on n goroutines for d and returns MiB/s in total,
// the best of a few rounds.
func hashThroughput(ctx context.Context, n int, d time.Duration) float64 {
	return bestOf(d, func(d time.Duration) float64 { return hashRound(ctx, n, d) })
}

func hashRound(ctx context.Context, n int, d time.Duration) float64 {
	buf := make([]byte, hashChunk)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	deadline := start.Add(d)
	var mu sync.Mutex
	var total uint64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var done uint64
			var sum [32]byte
			for ctx.Err() == nil && time.Now().Before(deadline) {
				sum = sha256.Sum256(buf)
				done += hashChunk
			}
			_ = sum
			mu.Lock()
			total += done
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(total) / capability.MiB / time.Since(start).Seconds()
}

// memBufSize is larger than the last-level cache of any machine we expect,
// and small enough for the smallest one we accept.
const memBufSize = 32 << 20

// memoryThroughput copies between two buffers for d and returns bytes/s,
// the best of a few rounds.
func memoryThroughput(ctx context.Context, d time.Duration) float64 {
	src, dst := make([]byte, memBufSize), make([]byte, memBufSize)
	for i := 0; i < len(src); i += 4096 {
		src[i] = byte(i) // touch every page before timing
	}
	copy(dst, src)
	return bestOf(d, func(d time.Duration) float64 { return copyRound(ctx, src, dst, d) })
}

func copyRound(ctx context.Context, src, dst []byte, d time.Duration) float64 {
	const piece = 1 << 20 // check the clock every MiB so a short d is honoured
	var copied uint64
	start := time.Now()
	deadline := start.Add(d)
	for off := 0; ctx.Err() == nil && time.Now().Before(deadline); off = (off + piece) % memBufSize {
		copy(dst[off:off+piece], src[off:off+piece])
		copied += piece
	}
	return float64(copied) / time.Since(start).Seconds()
}

const (
	diskChunk     = 1 << 20
	diskSyncEvery = 8 << 20
	diskMaxBytes  = 2 << 30 // never write more than this, however fast the disk
)

// diskThroughput writes to a temporary file in dir for d, fsyncing every 8
// MiB and at the end, and returns bytes/s. The file is removed.
func diskThroughput(ctx context.Context, dir string, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, ".dms-benchmark-*")
	if err != nil {
		return 0, fmt.Errorf("create test file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	chunk := make([]byte, diskChunk)
	r := rand.NewChaCha8([32]byte{'d', 'm', 's'})
	_, _ = r.Read(chunk) // incompressible, so a compressing filesystem is not flattered
	var written, sinceSync uint64
	start := time.Now()
	deadline := start.Add(d)
	for written < diskMaxBytes && ctx.Err() == nil && (written == 0 || time.Now().Before(deadline)) {
		if _, err := f.Write(chunk); err != nil {
			return 0, fmt.Errorf("write test file: %w", err)
		}
		written += diskChunk
		if sinceSync += diskChunk; sinceSync >= diskSyncEvery {
			if err := f.Sync(); err != nil {
				return 0, fmt.Errorf("fsync test file: %w", err)
			}
			sinceSync = 0
		}
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("fsync test file: %w", err)
	}
	return float64(written) / time.Since(start).Seconds(), nil
}
