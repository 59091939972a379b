package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dms-project/dms/capability"
)

// procsReport is the second bench mode: separate `dms run` processes, as
// a real provider runs alone, idle after joining.
type procsReport struct {
	Nodes   int           `json:"nodes"`
	Startup time.Duration `json:"startup"` // testnet up: processes started and meshed
	Window  time.Duration `json:"window"`  // how long CPU was sampled, idle
	RSSMean uint64        `json:"rss_mean"`
	RSSMax  uint64        `json:"rss_max"`
	CPUMean float64       `json:"cpu_mean_percent"` // of one core
	CPUMax  float64       `json:"cpu_max_percent"`
}

// clockTicks is USER_HZ, which /proc reports CPU times in; 100 on every
// Linux this runs on.
const clockTicks = 100

// benchProcs starts a test network of n processes in a temporary
// directory, lets it settle, samples each process's resident memory and
// CPU time over window, and stops it.
func (e *env) benchProcs(ctx context.Context, n int, window time.Duration, progress io.Writer) (*procsReport, error) {
	dir, err := os.MkdirTemp("", "dms-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cpu, mem, disk := uint64(250), uint64(256*capability.MiB), uint64(capability.GiB)
	start := time.Now()
	rec, err := testnetUp(ctx, testnetOptions{
		Dir: dir, Nodes: n, Timeout: time.Minute + time.Duration(n)*time.Second, Log: e.log, Progress: progress, LogLevel: "warn",
		Offer: &OnboardRequest{CPU: &cpu, Memory: &mem, Disk: &disk},
	})
	if err != nil {
		return nil, err
	}
	defer stopNodes(rec.Nodes, 10*time.Second)
	rep := &procsReport{Nodes: n, Startup: time.Since(start), Window: window}
	// Let start-up work (DHT bootstrap, mesh grafting) finish: a provider
	// spends its life idle, and that is what this mode measures.
	select {
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	before := map[int]uint64{}
	for _, nd := range rec.Nodes {
		t, err := procCPUTicks(nd.PID)
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
	var rssSum uint64
	var cpuSum float64
	for _, nd := range rec.Nodes {
		t, err := procCPUTicks(nd.PID)
		if err != nil {
			return nil, err
		}
		rss, err := procRSS(nd.PID)
		if err != nil {
			return nil, err
		}
		pct := float64(t-before[nd.PID]) / clockTicks / elapsed * 100
		rssSum += rss
		cpuSum += pct
		rep.RSSMax = max(rep.RSSMax, rss)
		rep.CPUMax = max(rep.CPUMax, pct)
	}
	rep.RSSMean = rssSum / uint64(n)
	rep.CPUMean = cpuSum / float64(n)
	return rep, nil
}

// procCPUTicks is a process's user plus system time, in clock ticks.
func procCPUTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; fields after its ')' are
	// plain: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu time of pid %d: unexpected /proc format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time of pid %d: unexpected /proc format", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu time of pid %d: unexpected /proc format", pid)
	}
	return u + s, nil
}

// procRSS is a process's resident set size in bytes.
func procRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("memory of pid %d: no VmRSS in /proc", pid)
}
