package resources

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/dms-project/dms/capability"
)

func TestMeasure(t *testing.T) {
	gpu := capability.GPU{Vendor: "NVIDIA", Model: "Fake", Index: 0, UUID: "GPU-fake"}
	m, err := Measure(context.Background(), t.TempDir(), WithGPUDetector(func(context.Context) ([]capability.GPU, error) {
		return []capability.GPU{gpu}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if m.CPU.MilliCores == 0 || m.CPU.MilliCores > uint64(runtime.NumCPU())*1000 || m.CPU.Arch != runtime.GOARCH {
		t.Errorf("cpu = %+v", m.CPU)
	}
	if m.Memory == 0 || m.MemoryFree > m.Memory || m.Disk == 0 || m.DiskFree > m.Disk {
		t.Errorf("memory %d/%d disk %d/%d", m.MemoryFree, m.Memory, m.DiskFree, m.Disk)
	}
	if m.Host.OS == "" {
		t.Error("no host os")
	}
	if len(m.GPUs) != 1 || m.GPUs[0] != gpu || len(m.Total().GPUs) != 1 {
		t.Errorf("gpus = %+v", m.GPUs)
	}
	if err := m.Total().Validate(); err != nil {
		t.Error(err)
	}
	// A failing detector is not fatal: the node runs without GPUs.
	m, err = Measure(context.Background(), t.TempDir(), WithGPUDetector(func(context.Context) ([]capability.GPU, error) {
		return nil, errors.New("wedged")
	}))
	if err != nil || m.GPUs != nil {
		t.Fatalf("failing detector: %v, %+v", err, m.GPUs)
	}
	if _, err := Measure(context.Background(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing directory measured")
	}
}

func TestCgroupLimits(t *testing.T) {
	v2 := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(v2, "cpu.max"), "150000 100000\n")
	write(filepath.Join(v2, "memory.max"), "2147483648\n")
	write(filepath.Join(v2, "memory.current"), "1073741824\n")
	if q, ok := cpuQuotaMilliAt(v2); !ok || q != 1500 {
		t.Errorf("v2 cpu quota = %d, %v", q, ok)
	}
	if l, u, ok := memoryLimitAt(v2); !ok || l != 2*gib || u != gib {
		t.Errorf("v2 memory = %d, %d, %v", l, u, ok)
	}
	write(filepath.Join(v2, "cpu.max"), "max 100000\n")
	if _, ok := cpuQuotaMilliAt(v2); ok {
		t.Error("'max' read as a quota")
	}
	v1 := t.TempDir()
	write(filepath.Join(v1, "cpu", "cpu.cfs_quota_us"), "-1\n")
	write(filepath.Join(v1, "cpu", "cpu.cfs_period_us"), "100000\n")
	write(filepath.Join(v1, "memory", "memory.limit_in_bytes"), "536870912\n")
	if _, ok := cpuQuotaMilliAt(v1); ok {
		t.Error("-1 read as a quota")
	}
	if l, _, ok := memoryLimitAt(v1); !ok || l != 512*capability.MiB {
		t.Errorf("v1 memory = %d, %v", l, ok)
	}
	if _, _, ok := memoryLimitAt(t.TempDir()); ok {
		t.Error("no cgroup files read as a limit")
	}
}
