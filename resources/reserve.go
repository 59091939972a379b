package resources

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/dms-project/dms/capability"
)

// Reserve is what the machine's owner keeps for themselves: it is never
// offered, and the owner's own use only shrinks what is available once it
// goes beyond it. Each dimension is a fraction of the machine's total with a
// floor, so that a small machine still leaves its owner something usable and a
// large one is not left mostly idle.
type Reserve struct {
	CPUFraction    float64 `json:"cpu_fraction"`
	MinCPU         uint64  `json:"min_cpu"` // millicores
	MemoryFraction float64 `json:"memory_fraction"`
	MinMemory      uint64  `json:"min_memory"` // bytes
	DiskFraction   float64 `json:"disk_fraction"`
	MinDisk        uint64  `json:"min_disk"` // bytes
}

// DefaultReserve leaves the owner 10% of each dimension, and at least half a
// core, 512 MiB of memory and 1 GiB of disk: enough for a desktop session and
// the node itself to stay responsive.
var DefaultReserve = Reserve{
	CPUFraction: 0.10, MinCPU: 500,
	MemoryFraction: 0.10, MinMemory: 512 * capability.MiB,
	DiskFraction: 0.10, MinDisk: capability.GiB,
}

// Resolve returns the reserve of a machine with the given totals, each
// dimension capped at the total.
func (r Reserve) Resolve(total capability.Capability) capability.Capability {
	part := func(tot uint64, frac float64, floor uint64) uint64 {
		v := uint64(math.Ceil(float64(tot) * frac))
		return min(max(v, floor), tot)
	}
	return capability.Capability{
		CPU:    capability.CPU{MilliCores: part(total.CPU.MilliCores, r.CPUFraction, r.MinCPU)},
		Memory: part(total.Memory, r.MemoryFraction, r.MinMemory),
		Disk:   part(total.Disk, r.DiskFraction, r.MinDisk),
	}
}

// Validate rejects fractions outside [0, 1].
func (r Reserve) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"cpu", r.CPUFraction}, {"memory", r.MemoryFraction}, {"disk", r.DiskFraction}} {
		if math.IsNaN(f.v) || f.v < 0 || f.v > 1 {
			return fmt.Errorf("reserve %s: fraction %v: want 0%% to 100%%", f.name, f.v)
		}
	}
	return nil
}

// String prints the reserve in the form ParseReserve reads.
func (r Reserve) String() string {
	part := func(frac float64, floor string) string {
		switch {
		case frac == 0:
			return floor
		case floor == "0" || floor == "0B":
			return strconv.FormatFloat(frac*100, 'g', -1, 64) + "%"
		}
		return strconv.FormatFloat(frac*100, 'g', -1, 64) + "%>" + floor
	}
	return fmt.Sprintf("cpu=%s,memory=%s,disk=%s",
		part(r.CPUFraction, capability.FormatCPU(r.MinCPU)),
		part(r.MemoryFraction, capability.FormatBytes(r.MinMemory)),
		part(r.DiskFraction, capability.FormatBytes(r.MinDisk)))
}

// ReserveHelp says what ParseReserve accepts, for flag and config messages.
const ReserveHelp = `want comma-separated key=value pairs with keys cpu, memory, disk; each value an amount ("cpu=1", "memory=2GiB"), a percentage of the machine ("disk=10%"), or a percentage with a floor ("memory=10%>512MiB"); keys left out keep the default ` + "(cpu=10%>0.5,memory=10%>512MiB,disk=10%>1GiB)"

// ParseReserve reads a reserve such as "cpu=1,memory=10%,disk=10%>5GiB".
// Keys left out keep DefaultReserve's values; "" is DefaultReserve.
func ParseReserve(s string) (Reserve, error) {
	r := DefaultReserve
	s = strings.TrimSpace(s)
	if s == "" {
		return r, nil
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !ok || v == "" {
			return Reserve{}, fmt.Errorf("reserve %q: bad pair %q; %s", s, kv, ReserveHelp)
		}
		if seen[k] {
			return Reserve{}, fmt.Errorf("reserve %q: %s given twice", s, k)
		}
		seen[k] = true
		var parse func(string) (uint64, error)
		var frac *float64
		var floor *uint64
		switch k {
		case "cpu":
			parse, frac, floor = capability.ParseCPU, &r.CPUFraction, &r.MinCPU
		case "memory":
			parse, frac, floor = capability.ParseBytes, &r.MemoryFraction, &r.MinMemory
		case "disk":
			parse, frac, floor = capability.ParseBytes, &r.DiskFraction, &r.MinDisk
		default:
			return Reserve{}, fmt.Errorf("reserve %q: unknown key %q; %s", s, k, ReserveHelp)
		}
		pct, fl, hasPct := strings.Cut(v, "%")
		if !hasPct {
			n, err := parse(v)
			if err != nil {
				return Reserve{}, fmt.Errorf("reserve %s: %w", k, err)
			}
			*frac, *floor = 0, n
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || math.IsNaN(f) || f < 0 || f > 100 {
			return Reserve{}, fmt.Errorf("reserve %s=%q: percentage must be 0 to 100; %s", k, v, ReserveHelp)
		}
		*frac, *floor = f/100, 0
		if fl = strings.TrimSpace(fl); fl != "" {
			rest, ok := strings.CutPrefix(fl, ">")
			if !ok {
				return Reserve{}, fmt.Errorf("reserve %s=%q: after the percentage, want >FLOOR; %s", k, v, ReserveHelp)
			}
			n, err := parse(strings.TrimSpace(rest))
			if err != nil {
				return Reserve{}, fmt.Errorf("reserve %s: %w", k, err)
			}
			*floor = n
		}
	}
	return r, r.Validate()
}
