package resources

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/disk"
	"github.com/shirou/gopsutil/v3/host"
	"github.com/shirou/gopsutil/v3/mem"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
)

// Machine is what Measure found: the totals an offer is validated against and
// what was free at the time.
type Machine struct {
	// CPU holds the usable cores (logical cores, or fewer where a cgroup
	// quota or the CPU affinity says so) with model, clock and architecture.
	CPU           capability.CPU   `json:"cpu"`
	LogicalCores  int              `json:"logical_cores"`
	PhysicalCores int              `json:"physical_cores,omitempty"`
	Memory        uint64           `json:"memory"`      // bytes, total (or the cgroup limit)
	MemoryFree    uint64           `json:"memory_free"` // bytes available without swapping
	Disk          uint64           `json:"disk"`        // bytes, filesystem holding DiskPath
	DiskFree      uint64           `json:"disk_free"`   // bytes an unprivileged user may still write
	DiskPath      string           `json:"disk_path"`
	GPUs          []capability.GPU `json:"gpus,omitempty"`
	Host          HostInfo         `json:"host"`
	MeasuredAt    time.Time        `json:"measured_at"`
}

// HostInfo describes the operating system, for display and for bids that
// care about the platform.
type HostInfo struct {
	Hostname        string           `json:"hostname,omitempty"`
	OS              string           `json:"os"`
	Platform        string           `json:"platform,omitempty"`
	PlatformVersion string           `json:"platform_version,omitempty"`
	KernelVersion   string           `json:"kernel_version,omitempty"`
	Virtualization  string           `json:"virtualization,omitempty"`
	Uptime          seconds.Duration `json:"uptime,omitempty"`
}

// Total returns the machine's totals as a capability: all cores, all memory,
// the whole filesystem and every GPU.
func (m Machine) Total() capability.Capability {
	return capability.Capability{
		CPU:    m.CPU,
		Memory: m.Memory,
		Disk:   m.Disk,
		GPUs:   append([]capability.GPU(nil), m.GPUs...),
	}
}

// Free returns what was free when the machine was measured. CPU is reported
// as the total: how busy the cores are is the monitor's business.
func (m Machine) Free() capability.Capability {
	c := m.Total()
	c.Memory = m.MemoryFree
	c.Disk = m.DiskFree
	return c
}

type measureConfig struct {
	gpus   func(context.Context) ([]capability.GPU, error)
	logger *slog.Logger
}

// MeasureOption changes how Measure works.
type MeasureOption func(*measureConfig) error

// WithGPUDetector replaces nvidia-smi detection, for tests and for other
// vendors' tools.
func WithGPUDetector(f func(context.Context) ([]capability.GPU, error)) MeasureOption {
	return func(c *measureConfig) error {
		if f == nil {
			return fmt.Errorf("gpu detector: nil")
		}
		c.gpus = f
		return nil
	}
}

// WithMeasureLogger sets the logger.
func WithMeasureLogger(l *slog.Logger) MeasureOption {
	return func(c *measureConfig) error {
		if l == nil {
			return fmt.Errorf("logger: nil")
		}
		c.logger = l
		return nil
	}
}

// Measure reads the machine: cores, model, clock and architecture, memory,
// the filesystem that holds dir, the host, and NVIDIA GPUs. A cgroup limit
// (container) lowers the cores and memory reported, since that is all the
// node may use.
func Measure(ctx context.Context, dir string, opts ...MeasureOption) (Machine, error) {
	cfg := measureConfig{
		gpus:   func(ctx context.Context) ([]capability.GPU, error) { return DetectGPUs(ctx) },
		logger: slog.Default().With("subsystem", "resources"),
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return Machine{}, fmt.Errorf("measure: %w", err)
		}
	}
	m := Machine{DiskPath: dir, MeasuredAt: time.Now().UTC()}

	logical, err := cpu.CountsWithContext(ctx, true)
	if err != nil || logical <= 0 {
		logical = runtime.NumCPU()
	}
	if physical, err := cpu.CountsWithContext(ctx, false); err == nil {
		m.PhysicalCores = physical
	}
	m.LogicalCores = logical
	milli := uint64(min(logical, runtime.NumCPU())) * 1000
	if q, ok := cgroupCPUQuotaMilli(); ok && q < milli {
		milli = q
	}
	m.CPU.MilliCores = milli
	m.CPU.Arch = runtime.GOARCH
	if infos, err := cpu.InfoWithContext(ctx); err == nil && len(infos) > 0 {
		m.CPU.Model = strings.TrimSpace(infos[0].ModelName)
		if mhz := infos[0].Mhz; mhz > 0 && !math.IsInf(mhz, 0) && !math.IsNaN(mhz) {
			m.CPU.ClockMHz = math.Round(mhz)
		}
	} else if err != nil {
		cfg.logger.Debug("cpu info unavailable", "err", err)
	}

	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return Machine{}, fmt.Errorf("measure memory: %w", err)
	}
	m.Memory, m.MemoryFree = vm.Total, vm.Available
	if limit, used, ok := cgroupMemory(); ok && limit < m.Memory {
		m.Memory = limit
		m.MemoryFree = min(m.MemoryFree, limit-min(used, limit))
	}

	du, err := disk.UsageWithContext(ctx, dir)
	if err != nil {
		return Machine{}, fmt.Errorf("measure disk of %s: %w", dir, err)
	}
	m.Disk, m.DiskFree = du.Total, du.Free

	if hi, err := host.InfoWithContext(ctx); err == nil {
		m.Host = HostInfo{
			Hostname: hi.Hostname, OS: hi.OS, Platform: hi.Platform, PlatformVersion: hi.PlatformVersion,
			KernelVersion: hi.KernelVersion, Virtualization: hi.VirtualizationSystem, Uptime: seconds.Duration(time.Duration(hi.Uptime) * time.Second),
		}
	} else {
		m.Host.OS = runtime.GOOS
		cfg.logger.Debug("host info unavailable", "err", err)
	}

	gpus, err := cfg.gpus(ctx)
	if err != nil {
		// A GPU tool that misbehaves must not stop a CPU-only node.
		cfg.logger.Warn("gpu detection failed; reporting no gpus", "err", err)
		gpus = nil
	}
	m.GPUs = gpus
	return m, nil
}
