package capability

import (
	"strings"
	"testing"
	"time"
)

func TestParseBytes(t *testing.T) {
	cases := map[string]uint64{
		"512MiB": 512 * MiB, "4GiB": 4 * GiB, "4GB": 4_000_000_000, "1.5GiB": GiB + GiB/2,
		"1024": 1024, "10 kb": 10_000, "2Ti": 2 * TiB, "0": 0, "1gib": GiB,
	}
	for in, want := range cases {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "4XB", "GiB", "-1GiB", "1.2.3GB", "99999999999TiB", "4 G B"} {
		_, err := ParseBytes(bad)
		if err == nil {
			t.Errorf("ParseBytes(%q) accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("error %q does not name the input %q", err, bad)
		}
	}
}

func TestFormatBytesRoundTrip(t *testing.T) {
	for _, n := range []uint64{0, 100, KiB, 512 * MiB, 4 * GiB, GiB + GiB/2, 3 * TiB} {
		s := FormatBytes(n)
		back, err := ParseBytes(s)
		if err != nil || back != n {
			t.Errorf("FormatBytes(%d) = %q, parses to %d, %v", n, s, back, err)
		}
	}
}

func TestParseCPU(t *testing.T) {
	cases := map[string]uint64{"2": 2000, "1.5": 1500, "0.25": 250, "500m": 500, " 3 ": 3000}
	for in, want := range cases {
		got, err := ParseCPU(in)
		if err != nil || got != want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d", in, got, err, want)
		}
		if back, _ := ParseCPU(FormatCPU(got)); back != got {
			t.Errorf("FormatCPU(%d) = %q does not round trip", got, FormatCPU(got))
		}
	}
	for _, bad := range []string{"", "two", "-1", "1e3", "0.0001", "1.5m", "0x10"} {
		if _, err := ParseCPU(bad); err == nil {
			t.Errorf("ParseCPU(%q) accepted", bad)
		}
	}
}

func TestParseDuration(t *testing.T) {
	cases := map[string]time.Duration{
		"90m": 90 * time.Minute, "2h": 2 * time.Hour, "3d": 72 * time.Hour, "1w": 168 * time.Hour,
		"1h30m": 90 * time.Minute, "1.5d": 36 * time.Hour, "1d12h": 36 * time.Hour, "10s": 10 * time.Second,
		"250ms": 250 * time.Millisecond,
	}
	for in, want := range cases {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, err := ParseDuration(FormatDuration(got)); err != nil || back != got {
			t.Errorf("FormatDuration(%v) = %q does not round trip: %v %v", got, FormatDuration(got), back, err)
		}
	}
	for _, bad := range []string{"", "0s", "-5m", "3 days", "h", "5y", "99999999w"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"4GiB", "1.5GB", "0", "99999999999999999999TiB", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err == nil && FormatBytes(n) == "" {
			t.Fatal("empty format")
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"1h30m", "3d", "1.5w", "9999999999999d", ".d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d <= 0 {
			t.Fatalf("ParseDuration(%q) = %v without error", s, d)
		}
	})
}
