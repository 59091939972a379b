package resources

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is where a container sees its own cgroup. gopsutil reports the
// host's cores and memory even inside a container; the cgroup says what this
// process may really use.
const cgroupRoot = "/sys/fs/cgroup"

func cgroupCPUQuotaMilli() (uint64, bool) { return cpuQuotaMilliAt(cgroupRoot) }

func cgroupMemory() (limit, used uint64, ok bool) { return memoryLimitAt(cgroupRoot) }

// cpuQuotaMilliAt reads a CPU quota as millicores: cgroup v2 "cpu.max"
// ("max 100000" or "150000 100000"), else v1 cfs_quota_us / cfs_period_us.
func cpuQuotaMilliAt(root string) (uint64, bool) {
	if f := strings.Fields(readSmall(filepath.Join(root, "cpu.max"))); len(f) == 2 {
		return quotaMilli(f[0], f[1])
	}
	return quotaMilli(readSmall(filepath.Join(root, "cpu", "cpu.cfs_quota_us")), readSmall(filepath.Join(root, "cpu", "cpu.cfs_period_us")))
}

func quotaMilli(quota, period string) (uint64, bool) {
	q, err1 := strconv.ParseInt(strings.TrimSpace(quota), 10, 64)
	p, err2 := strconv.ParseInt(strings.TrimSpace(period), 10, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false // "max", -1 or unreadable: no quota
	}
	return uint64(q) * 1000 / uint64(p), true
}

// memoryLimitAt reads cgroup v2 memory.max/memory.current, else v1
// memory.limit_in_bytes/memory.usage_in_bytes. v1 reports "no limit" as a
// huge number, which the caller's min() against the total discards.
func memoryLimitAt(root string) (limit, used uint64, ok bool) {
	lim, cur := filepath.Join(root, "memory.max"), filepath.Join(root, "memory.current")
	if _, err := os.Stat(lim); err != nil {
		lim, cur = filepath.Join(root, "memory", "memory.limit_in_bytes"), filepath.Join(root, "memory", "memory.usage_in_bytes")
	}
	l, err := strconv.ParseUint(strings.TrimSpace(readSmall(lim)), 10, 64)
	if err != nil || l == 0 {
		return 0, 0, false
	}
	u, _ := strconv.ParseUint(strings.TrimSpace(readSmall(cur)), 10, 64)
	return l, u, true
}

// readSmall reads at most 4 KiB of a pseudo-file; errors read as "".
func readSmall(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 4096)
	n, _ := f.Read(buf)
	return string(buf[:n])
}
