package resources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/disk"
	"github.com/shirou/gopsutil/v3/mem"
)

// Usage is what is in use on the whole machine, in a Capability's units.
type Usage struct {
	CPU    uint64 `json:"cpu"`    // millicores busy
	Memory uint64 `json:"memory"` // bytes
	Disk   uint64 `json:"disk"`   // bytes on the home's filesystem
}

// Sampler reads the machine's current use. HostSampler is the real one;
// tests pass a fake.
type Sampler interface {
	Sample(ctx context.Context) (Usage, error)
}

// Ceiling is the most the node may have held and locked at once right now,
// per dimension:
//
//	owner   = used − own                       (what the host uses beyond our allocations)
//	ceiling = total − max(reserve, owner)      (never below 0)
//
// The owner always keeps their reserve; once they use more than it, every bit
// more shrinks what the node may give, so it never offers what the machine no
// longer has. Where own is unknown (zero), all use counts as the owner's: the
// node then under-offers by what its own allocations use rather than
// over-commit. GPUs are not sampled; the ceiling keeps total's.
func Ceiling(total, reserve capability.Capability, used, own Usage) capability.Capability {
	part := func(tot, res, used, own uint64) uint64 {
		owner := used - min(own, used)
		take := max(res, owner)
		if take >= tot {
			return 0
		}
		return tot - take
	}
	c := cloneCap(total)
	c.CPU.MilliCores = part(total.CPU.MilliCores, reserve.CPU.MilliCores, used.CPU, own.CPU)
	c.Memory = part(total.Memory, reserve.Memory, used.Memory, own.Memory)
	c.Disk = part(total.Disk, reserve.Disk, used.Disk, own.Disk)
	return c
}

// Sample is one reading of the monitor.
type Sample struct {
	At      time.Time             `json:"at"`
	Used    Usage                 `json:"used"`
	Own     Usage                 `json:"own"`
	Ceiling capability.Capability `json:"ceiling"`
}

type monitorConfig struct {
	interval time.Duration
	own      func() Usage
	onSample func(Sample)
	log      *slog.Logger
}

// MonitorOption configures a Monitor.
type MonitorOption func(*monitorConfig) error

// DefaultMonitorInterval is how often the machine is sampled.
const DefaultMonitorInterval = 5 * time.Second

// WithInterval sets the sampling interval (default 5s, at least 1ms).
func WithInterval(d time.Duration) MonitorOption {
	return func(c *monitorConfig) error {
		if d < time.Millisecond {
			return fmt.Errorf("monitor interval %v: want at least 1ms", d)
		}
		c.interval = d
		return nil
	}
}

// WithOwnUsage tells the monitor what the node's own allocations use now
// (from the executor), so that it is not counted as the owner's.
func WithOwnUsage(f func() Usage) MonitorOption {
	return func(c *monitorConfig) error {
		if f == nil {
			return errors.New("own usage: nil")
		}
		c.own = f
		return nil
	}
}

// WithOnSample calls f with every sample, from the monitor's goroutine (and
// from Start for the first). The node passes one that calls Ledger.SetCeiling.
func WithOnSample(f func(Sample)) MonitorOption {
	return func(c *monitorConfig) error {
		if f == nil {
			return errors.New("on sample: nil")
		}
		c.onSample = f
		return nil
	}
}

// WithMonitorLogger sets the logger.
func WithMonitorLogger(l *slog.Logger) MonitorOption {
	return func(c *monitorConfig) error {
		if l == nil {
			return errors.New("logger: nil")
		}
		c.log = l
		return nil
	}
}

// Monitor samples the machine on an interval and computes the Ceiling.
type Monitor struct {
	total, reserve capability.Capability
	sampler        Sampler
	cfg            monitorConfig

	mu      sync.Mutex
	latest  Sample
	has     bool
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewMonitor prepares a monitor of a machine with the given totals and owner's
// reserve; Start starts it.
func NewMonitor(total, reserve capability.Capability, s Sampler, opts ...MonitorOption) (*Monitor, error) {
	cfg := monitorConfig{
		interval: DefaultMonitorInterval,
		own:      func() Usage { return Usage{} },
		onSample: func(Sample) {},
		log:      slog.Default().With("subsystem", "monitor"),
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("new monitor: %w", err)
		}
	}
	if s == nil {
		return nil, errors.New("new monitor: nil sampler")
	}
	return &Monitor{total: cloneCap(total), reserve: cloneCap(reserve), sampler: s, cfg: cfg}, nil
}

// Start takes a first sample, so the ceiling is known when it returns, then
// samples on the interval until Close or ctx ends.
func (m *Monitor) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("monitor: already started")
	}
	m.started = true
	m.mu.Unlock()
	if _, err := m.sampleOnce(ctx); err != nil {
		return fmt.Errorf("monitor: first sample: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	m.mu.Lock()
	m.cancel, m.done = cancel, done
	m.mu.Unlock()
	go m.loop(ctx, done)
	return nil
}

func (m *Monitor) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(m.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := m.sampleOnce(ctx); err != nil && ctx.Err() == nil {
				// Keep the last ceiling: better a stale limit than none.
				m.cfg.log.Warn("sampling the machine failed", "err", err)
			}
		}
	}
}

func (m *Monitor) sampleOnce(ctx context.Context) (Sample, error) {
	used, err := m.sampler.Sample(ctx)
	if err != nil {
		return Sample{}, err
	}
	own := m.cfg.own()
	s := Sample{At: time.Now(), Used: used, Own: own, Ceiling: Ceiling(m.total, m.reserve, used, own)}
	m.mu.Lock()
	m.latest, m.has = s, true
	m.mu.Unlock()
	m.cfg.onSample(s)
	return s, nil
}

// Latest returns the last sample, if any.
func (m *Monitor) Latest() (Sample, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.latest
	s.Ceiling = cloneCap(s.Ceiling)
	return s, m.has
}

// Close stops the monitor and waits for its goroutine. It is idempotent.
func (m *Monitor) Close() error {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	m.cancel = nil
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if done != nil {
		<-done
	}
	return nil
}

// HostSampler samples the real machine with gopsutil: CPU busy time since the
// previous sample across all cores, memory in use (total less what is
// available without swapping), and disk in use on the filesystem holding dir.
type HostSampler struct {
	dir string

	mu       sync.Mutex
	last     cpu.TimesStat
	hasLast  bool
	cpuMilli uint64
}

// NewHostSampler samples the machine, with disk use measured on dir's filesystem.
func NewHostSampler(dir string) *HostSampler { return &HostSampler{dir: dir} }

// firstCPUWindow is how long the first sample watches the CPU, having no
// earlier reading to compare with.
const firstCPUWindow = 250 * time.Millisecond

// Sample implements Sampler.
func (s *HostSampler) Sample(ctx context.Context) (Usage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cpuMilli == 0 {
		n, err := cpu.CountsWithContext(ctx, true)
		if err != nil || n <= 0 {
			return Usage{}, fmt.Errorf("sample cpu count: %w", err)
		}
		s.cpuMilli = uint64(n) * 1000
	}
	if !s.hasLast {
		t, err := cpuTimes(ctx)
		if err != nil {
			return Usage{}, err
		}
		s.last, s.hasLast = t, true
		select {
		case <-ctx.Done():
			return Usage{}, ctx.Err()
		case <-time.After(firstCPUWindow):
		}
	}
	t, err := cpuTimes(ctx)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	busy, all := busyTotal(t)
	lb, la := busyTotal(s.last)
	if all > la && busy >= lb {
		frac := min((busy-lb)/(all-la), 1)
		u.CPU = uint64(frac * float64(s.cpuMilli))
	}
	s.last = t
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("sample memory: %w", err)
	}
	u.Memory = vm.Total - min(vm.Available, vm.Total)
	du, err := disk.UsageWithContext(ctx, s.dir)
	if err != nil {
		return Usage{}, fmt.Errorf("sample disk %s: %w", s.dir, err)
	}
	u.Disk = du.Total - min(du.Free, du.Total)
	return u, nil
}

func cpuTimes(ctx context.Context) (cpu.TimesStat, error) {
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil {
		return cpu.TimesStat{}, fmt.Errorf("sample cpu times: %w", err)
	}
	if len(ts) == 0 {
		return cpu.TimesStat{}, errors.New("sample cpu times: none reported")
	}
	return ts[0], nil
}

// busyTotal counts steal as busy: time the hypervisor took is not ours to offer.
func busyTotal(t cpu.TimesStat) (busy, total float64) {
	busy = t.User + t.System + t.Nice + t.Irq + t.Softirq + t.Steal
	return busy, busy + t.Idle + t.Iowait
}
