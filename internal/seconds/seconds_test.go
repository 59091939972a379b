package seconds

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", 90 * time.Second: "90", 1500 * time.Millisecond: "1.5", time.Nanosecond: "0.000000001",
		-250 * time.Millisecond: "-0.25", math.MinInt64: "-9223372036.854775808", math.MaxInt64: "9223372036.854775807",
	} {
		if got := Format(d); got != want {
			t.Errorf("Format(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90": 90 * time.Second, "0.5": 500 * time.Millisecond, ".25": 250 * time.Millisecond, "1m30s": 90 * time.Second,
		"-1.5": -1500 * time.Millisecond, "1e3": 1000 * time.Second, "0.0000000019": time.Nanosecond, "2h": 2 * time.Hour,
	} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "1.2.3", "1e400", "NaN", "99999999999999999999", "9223372036.9"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

// Every duration survives JSON exactly.
func TestRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d := Duration(rapid.Int64().Draw(t, "ns"))
		b, err := json.Marshal(struct{ D Duration }{d})
		if err != nil {
			t.Fatal(err)
		}
		var back struct{ D Duration }
		if err := json.Unmarshal(b, &back); err != nil || back.D != d {
			t.Fatalf("%d -> %s -> %d (%v)", d, b, back.D, err)
		}
	})
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{"90", `"1m"`, "-0.5", "null", `"x"`, "1e9"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Duration
		if json.Unmarshal(b, &d) != nil {
			return
		}
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var again Duration
		if err := json.Unmarshal(out, &again); err != nil || again != d {
			t.Fatalf("%s -> %d -> %s -> %d", b, d, out, again)
		}
	})
}
