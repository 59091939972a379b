package capability

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// Byte units. Decimal (KB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB) are
// both accepted because users write both; we print binary.
const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
	TiB = 1 << 40
)

var byteUnits = map[string]uint64{
	"": 1, "b": 1,
	"k": 1000, "kb": 1000, "m": 1000 * 1000, "mb": 1000 * 1000, "g": 1000 * 1000 * 1000, "gb": 1000 * 1000 * 1000,
	"t": 1000 * 1000 * 1000 * 1000, "tb": 1000 * 1000 * 1000 * 1000,
	"ki": KiB, "kib": KiB, "mi": MiB, "mib": MiB, "gi": GiB, "gib": GiB, "ti": TiB, "tib": TiB,
}

const bytesHelp = "want a size such as 512MiB, 4GiB, 4GB, 1.5GiB or a plain number of bytes (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"

// ParseBytes reads a size such as "512MiB", "4GiB", "4GB", "1.5GiB" or "1024".
func ParseBytes(s string) (uint64, error) {
	in := strings.TrimSpace(s)
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	num, unit := in[:i], strings.ToLower(strings.TrimSpace(in[i:]))
	mult, ok := byteUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("size %q: %s", s, bytesHelp)
	}
	// big.Rat keeps "1.1GiB" exact and catches overflow without float rounding.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q: %s", s, bytesHelp)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).SetUint64(mult)))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsUint64() {
		return 0, fmt.Errorf("size %q: too large (at most %d bytes)", s, uint64(math.MaxUint64))
	}
	return n.Uint64(), nil
}

// FormatBytes prints n in the largest binary unit that keeps it readable,
// e.g. "4GiB", "1.5GiB", "512MiB", "100B".
func FormatBytes(n uint64) string {
	units := []struct {
		name string
		size uint64
	}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}}
	for _, u := range units {
		if n >= u.size {
			v := float64(n) / float64(u.size)
			return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) + u.name
		}
	}
	return strconv.FormatUint(n, 10) + "B"
}

const cpuHelp = "want a number of cores such as 2, 1.5 or 0.25, or millicores such as 500m"

// ParseCPU reads an amount of cores ("2", "1.5", "500m") into millicores.
func ParseCPU(s string) (uint64, error) {
	in := strings.TrimSpace(s)
	if strings.HasSuffix(in, "m") {
		n, err := strconv.ParseUint(strings.TrimSuffix(in, "m"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu %q: %s", s, cpuHelp)
		}
		return n, nil
	}
	if in == "" || strings.ContainsAny(in, "eEx+-") {
		return 0, fmt.Errorf("cpu %q: %s", s, cpuHelp)
	}
	r, ok := new(big.Rat).SetString(in)
	if !ok {
		return 0, fmt.Errorf("cpu %q: %s", s, cpuHelp)
	}
	r.Mul(r, big.NewRat(1000, 1))
	if !r.IsInt() {
		return 0, fmt.Errorf("cpu %q: at most three decimals (a thousandth of a core)", s)
	}
	if !r.Num().IsUint64() {
		return 0, fmt.Errorf("cpu %q: too large", s)
	}
	return r.Num().Uint64(), nil
}

// FormatCPU prints millicores as cores, e.g. "1.5".
func FormatCPU(milli uint64) string {
	if milli%1000 == 0 {
		return strconv.FormatUint(milli/1000, 10)
	}
	return strings.TrimRight(fmt.Sprintf("%d.%03d", milli/1000, milli%1000), "0")
}

const durationHelp = "want a duration such as 90s, 90m, 2h, 1h30m, 3d or 1w (units ms, s, m, h, d, w)"

// ParseDuration reads a positive duration. On top of Go's units it accepts
// d (24h) and w (7d), since jobs and offers are often counted in days.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("duration %q: %s", s, durationHelp)
	}
	var total time.Duration
	rest := in
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		var mult time.Duration
		switch unit {
		case "d":
			mult = 24 * time.Hour
		case "w":
			mult = 7 * 24 * time.Hour
		case "ms", "s", "m", "h":
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, fmt.Errorf("duration %q: %s", s, durationHelp)
			}
			if total+d < total {
				return 0, fmt.Errorf("duration %q: too long", s)
			}
			total += d
			continue
		default:
			return 0, fmt.Errorf("duration %q: %s", s, durationHelp)
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("duration %q: %s", s, durationHelp)
		}
		d := f * float64(mult)
		if d > float64(math.MaxInt64)-float64(total) {
			return 0, fmt.Errorf("duration %q: too long", s)
		}
		total += time.Duration(d)
	}
	if total <= 0 {
		return 0, fmt.Errorf("duration %q: must be more than zero", s)
	}
	return total, nil
}

// FormatDuration prints d compactly, using days where it is a whole number of them.
func FormatDuration(d time.Duration) string {
	day := 24 * time.Hour
	if d >= day && d%day == 0 {
		if d%(7*day) == 0 {
			return fmt.Sprintf("%dw", d/(7*day))
		}
		return fmt.Sprintf("%dd", d/day)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
