package capability

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dms-project/dms/internal/seconds"
)

// PriceInformation is a provider's price list, per hour of use.
type PriceInformation struct {
	Currency         string  `json:"currency,omitempty"`
	PerCoreHour      float64 `json:"per_core_hour,omitempty"`
	PerGiBMemoryHour float64 `json:"per_gib_memory_hour,omitempty"`
	PerGiBDiskHour   float64 `json:"per_gib_disk_hour,omitempty"`
	PerGPUHour       float64 `json:"per_gpu_hour,omitempty"`
}

// DefaultCurrency is used where a price list names none.
const DefaultCurrency = "DMS"

// Quote prices c for d at these rates. A partial hour is charged pro rata.
func (p PriceInformation) Quote(c Capability, d time.Duration) float64 {
	hours := d.Hours()
	perHour := p.PerCoreHour*c.CPU.Cores() +
		p.PerGiBMemoryHour*float64(c.Memory)/GiB +
		p.PerGiBDiskHour*float64(c.Disk)/GiB +
		p.PerGPUHour*float64(len(c.GPUs))
	return perHour * hours
}

// IsZero reports whether the price list is empty (everything free).
func (p PriceInformation) IsZero() bool { return p == PriceInformation{} }

// Validate rejects negative, NaN or infinite rates.
func (p PriceInformation) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"cpu", p.PerCoreHour}, {"memory", p.PerGiBMemoryHour}, {"disk", p.PerGiBDiskHour}, {"gpu", p.PerGPUHour}} {
		if math.IsNaN(r.v) || math.IsInf(r.v, 0) || r.v < 0 {
			return fmt.Errorf("price %s=%v: want a finite number >= 0", r.name, r.v)
		}
	}
	if len(p.Currency) > 16 {
		return fmt.Errorf("currency %q: at most 16 characters", p.Currency)
	}
	return nil
}

// String prints the list in the form ParsePrice reads.
func (p PriceInformation) String() string {
	cur := p.Currency
	if cur == "" {
		cur = DefaultCurrency
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	return fmt.Sprintf("cpu=%s,memory=%s,disk=%s,gpu=%s,currency=%s", f(p.PerCoreHour), f(p.PerGiBMemoryHour), f(p.PerGiBDiskHour), f(p.PerGPUHour), cur)
}

const priceHelp = "want comma-separated key=value pairs with keys cpu (per core-hour), memory (per GiB-hour), disk (per GiB-hour), gpu (per GPU-hour), currency, e.g. cpu=0.02,memory=0.005,currency=USD"

// ParsePrice reads a price list such as "cpu=0.02,memory=0.005,gpu=0.5,currency=USD".
// Keys not given are zero.
func ParsePrice(s string) (PriceInformation, error) {
	var p PriceInformation
	s = strings.TrimSpace(s)
	if s == "" {
		return p, fmt.Errorf("price %q: empty; %s", s, priceHelp)
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return PriceInformation{}, fmt.Errorf("price %q: bad pair %q; %s", s, kv, priceHelp)
		}
		if seen[k] {
			return PriceInformation{}, fmt.Errorf("price %q: %s given twice", s, k)
		}
		seen[k] = true
		if k == "currency" {
			p.Currency = v
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return PriceInformation{}, fmt.Errorf("price %q: %s=%q is not a finite number >= 0", s, k, v)
		}
		switch k {
		case "cpu":
			p.PerCoreHour = f
		case "memory":
			p.PerGiBMemoryHour = f
		case "disk":
			p.PerGiBDiskHour = f
		case "gpu":
			p.PerGPUHour = f
		default:
			return PriceInformation{}, fmt.Errorf("price %q: unknown key %q; %s", s, k, priceHelp)
		}
	}
	return p, p.Validate()
}

// TimeInformation says for how long a capability is offered or needed.
type TimeInformation struct {
	// Units is the unit prices and durations are shown in: hours, days or weeks.
	Units       string           `json:"units,omitempty"`
	MaxDuration seconds.Duration `json:"max_duration,omitempty"`
}

// Validate checks the unit name and that the duration is not negative.
func (t TimeInformation) Validate() error {
	switch t.Units {
	case "", "hours", "days", "weeks":
	default:
		return fmt.Errorf("time units %q: want hours, days or weeks", t.Units)
	}
	if t.MaxDuration < 0 {
		return fmt.Errorf("max duration %v: must not be negative", t.MaxDuration)
	}
	return nil
}
