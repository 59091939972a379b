// Package seconds is the one JSON vocabulary for durations: every duration
// that dms writes as JSON (the control API, every --json output, the
// protocol's messages) is a number of seconds, such as 90 or 0.25, exact to
// the nanosecond. Scripts then never guess a unit, and the figures read
// like Prometheus's, which are in seconds too.
package seconds

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that JSON writes as a number of seconds and
// reads from a number of seconds or, for people writing requests by hand,
// a Go duration string ("1m30s").
type Duration time.Duration

// Std is d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Seconds is d in seconds.
func (d Duration) Seconds() float64 { return time.Duration(d).Seconds() }

// Round is time.Duration's Round.
func (d Duration) Round(m time.Duration) time.Duration { return time.Duration(d).Round(m) }

// String is time.Duration's: "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// Format writes d as a decimal number of seconds with no trailing zeros:
// 90, 1.5, 0.000000001. It is exact, so a value survives a round trip.
func Format(d time.Duration) string {
	neg := d < 0
	u := uint64(d)
	if neg {
		u = uint64(-(d + 1)) + 1 // no overflow at math.MinInt64
	}
	s := strconv.FormatUint(u/1e9, 10)
	if frac := u % 1e9; frac != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%09d", frac), "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// Parse reads a number of seconds (decimal, exact to the nanosecond;
// digits past the ninth decimal are dropped) or a Go duration string.
func Parse(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("duration: empty")
	}
	if d, err := time.ParseDuration(s); err == nil && strings.ContainsAny(s, "hmsuµn") {
		return d, nil
	}
	neg := false
	body := s
	if body[0] == '-' || body[0] == '+' {
		neg, body = body[0] == '-', body[1:]
	}
	whole, frac, _ := strings.Cut(body, ".")
	if whole == "" && frac == "" || !digits(whole) || !digits(frac) {
		// 1e3 and the like: not exact, but not wrong either.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.Abs(f) > math.MaxInt64/1e9 {
			return 0, fmt.Errorf("duration %q: want a number of seconds (e.g. 90 or 0.5) or a duration such as 1m30s", clip(s))
		}
		return time.Duration(math.Round(f * 1e9)), nil
	}
	if len(frac) > 9 {
		frac = frac[:9]
	}
	frac += strings.Repeat("0", 9-len(frac))
	w := uint64(0)
	if whole != "" {
		var err error
		if w, err = strconv.ParseUint(whole, 10, 64); err != nil || w > math.MaxInt64/1_000_000_000 {
			return 0, fmt.Errorf("duration %q: too long", clip(s))
		}
	}
	f, _ := strconv.ParseUint(frac, 10, 64)
	u := w*1e9 + f
	switch {
	case neg && u == 1<<63:
		return math.MinInt64, nil
	case u > math.MaxInt64:
		return 0, fmt.Errorf("duration %q: too long", clip(s))
	case neg:
		return -time.Duration(u), nil
	}
	return time.Duration(u), nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// MarshalJSON writes d as a number of seconds.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(Format(time.Duration(d))), nil }

// UnmarshalJSON reads a number of seconds or a quoted duration ("90s", or
// "90", also seconds); null leaves d as it is.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		u, err := strconv.Unquote(s)
		if err != nil {
			return fmt.Errorf("duration %s: %w", clip(s), err)
		}
		s = u
	}
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
