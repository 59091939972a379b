package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/testnet"
)

// ProcsReport is the second bench mode: separate `dms run` processes, as
// a real provider runs alone, idle after joining.
type ProcsReport struct {
	Nodes   int              `json:"nodes"`
	Startup seconds.Duration `json:"startup"` // testnet up: processes started and meshed
	Window  seconds.Duration `json:"window"`  // how long CPU was sampled, idle
	RSSMean uint64           `json:"rss_mean"`
	RSSMax  uint64           `json:"rss_max"`
	// AnonMean is the processes' own memory; PSSMean their resident memory
	// with the binary's shared pages divided among them. RSS counts those
	// pages in full in every process, which a provider running alone does
	// too, but which the kernel keeps once for all N here.
	AnonMean uint64  `json:"anon_mean"`
	PSSMean  uint64  `json:"pss_mean"`
	CPUMean  float64 `json:"cpu_mean_percent"` // of one core
	CPUMax   float64 `json:"cpu_max_percent"`
}

// Procs starts a test network of n processes of the dms binary running
// this (see testnet.Up) in a temporary directory, lets it settle, samples
// each process's resident memory and CPU time over window, and stops it.
func Procs(ctx context.Context, n int, window time.Duration, log *slog.Logger, progress io.Writer) (*ProcsReport, error) {
	dir, err := os.MkdirTemp("", "dms-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cpu, mem, disk := uint64(250), uint64(256*capability.MiB), uint64(capability.GiB)
	start := time.Now()
	rec, err := testnet.Up(ctx, testnet.Options{
		Dir: dir, Nodes: n, Timeout: time.Minute + time.Duration(n)*time.Second, Log: log, Progress: progress, LogLevel: "warn",
		Offer: &api.OnboardRequest{CPU: &cpu, Memory: &mem, Disk: &disk},
	})
	if err != nil {
		return nil, err
	}
	defer testnet.Stop(rec.Nodes, 10*time.Second)
	rep := &ProcsReport{Nodes: n, Startup: seconds.Duration(time.Since(start)), Window: seconds.Duration(window)}
	// Let start-up work (DHT bootstrap, mesh grafting) finish: a provider
	// spends its life idle, and that is what this mode measures.
	select {
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	before := map[int]uint64{}
	for _, nd := range rec.Nodes {
		t, err := testnet.CPUTicks(nd.PID)
		if err != nil {
			return nil, err
		}
		before[nd.PID] = t
	}
	fmt.Fprintf(progress, "sampling %d idle node processes for %s\n", n, window)
	t0 := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	elapsed := time.Since(t0).Seconds()
	var rssSum, anonSum, pssSum uint64
	var cpuSum float64
	for _, nd := range rec.Nodes {
		t, err := testnet.CPUTicks(nd.PID)
		if err != nil {
			return nil, err
		}
		mem, err := testnet.MemoryOf(nd.PID)
		if err != nil {
			return nil, err
		}
		rss := mem.RSS
		anonSum += mem.Anon
		pssSum += mem.PSS
		pct := float64(t-before[nd.PID]) / testnet.ClockTicks / elapsed * 100
		rssSum += rss
		cpuSum += pct
		rep.RSSMax = max(rep.RSSMax, rss)
		rep.CPUMax = max(rep.CPUMax, pct)
	}
	rep.RSSMean = rssSum / uint64(n)
	rep.AnonMean, rep.PSSMean = anonSum/uint64(n), pssSum/uint64(n)
	rep.CPUMean = cpuSum / float64(n)
	return rep, nil
}
