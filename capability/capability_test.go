package capability

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func genGPU(t *rapid.T, label string) GPU {
	return GPU{
		Vendor: rapid.SampledFrom([]string{"nvidia", "amd"}).Draw(t, label+"vendor"),
		Model:  rapid.SampledFrom([]string{"H100", "A10", "MI300"}).Draw(t, label+"model"),
		Memory: rapid.Uint64Range(0, 200*GiB).Draw(t, label+"mem"),
		Index:  rapid.IntRange(0, 7).Draw(t, label+"idx"),
		// Unique UUIDs make Subtract take exactly the GPUs that Add appended.
		UUID: label + rapid.StringMatching(`[a-f0-9]{8}`).Draw(t, label+"uuid"),
	}
}

func genCap(label string, max uint64) *rapid.Generator[Capability] {
	return rapid.Custom(func(t *rapid.T) Capability {
		c := Capability{
			CPU:    CPU{MilliCores: rapid.Uint64Range(0, max).Draw(t, "cpu")},
			Memory: rapid.Uint64Range(0, max).Draw(t, "mem"),
			Disk:   rapid.Uint64Range(0, max).Draw(t, "disk"),
		}
		n := rapid.IntRange(0, 3).Draw(t, "ngpu")
		for i := range n {
			c.GPUs = append(c.GPUs, genGPU(t, label+string(rune('a'+i))))
		}
		return c
	})
}

func TestPropertyAddSubtractRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genCap("a", math.MaxUint64/2).Draw(t, "a")
		b := genCap("b", math.MaxUint64/2).Draw(t, "b")
		sum, err := a.Add(b)
		if err != nil {
			t.Fatalf("add within range failed: %v", err)
		}
		back, err := sum.Subtract(b)
		if err != nil {
			t.Fatalf("subtract of what was added failed: %v", err)
		}
		if !back.Equal(a) {
			t.Fatalf("a+b-b = %+v, want %+v", back, a)
		}
	})
}

func TestPropertyFitsAgreesWithSubtract(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genCap("a", 1<<12).Draw(t, "a")
		b := genCap("a", 1<<12).Draw(t, "b") // same label: GPUs may or may not match
		_, err := a.Subtract(b)
		if b.Fits(a) != (err == nil) {
			t.Fatalf("Fits=%v but Subtract err=%v", b.Fits(a), err)
		}
		if err != nil && !errors.Is(err, ErrInsufficient) {
			t.Fatalf("subtract error %v is not ErrInsufficient", err)
		}
	})
}

func TestPropertyNoOverflow(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genCap("a", math.MaxUint64).Draw(t, "a")
		b := genCap("b", math.MaxUint64).Draw(t, "b")
		sum, err := a.Add(b)
		if err != nil {
			if !errors.Is(err, ErrOverflow) {
				t.Fatalf("add error %v is not ErrOverflow", err)
			}
			return
		}
		// A successful sum never wrapped around.
		if sum.CPU.MilliCores < a.CPU.MilliCores || sum.Memory < a.Memory || sum.Disk < a.Disk {
			t.Fatalf("sum %+v wrapped below %+v", sum, a)
		}
	})
}

func TestPropertyCompareDominatesMeansFits(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genCap("a", 1<<20).Draw(t, "a")
		b := a
		b.GPUs = nil
		b.CPU.MilliCores = rapid.Uint64Range(0, a.CPU.MilliCores).Draw(t, "cpu")
		b.Memory = rapid.Uint64Range(0, a.Memory).Draw(t, "mem")
		if !a.Compare(b).Dominates() || !b.Fits(a) {
			t.Fatalf("a=%v should dominate and hold b=%v", a, b)
		}
	})
}

func TestSubtractInsufficientNamesDimension(t *testing.T) {
	a := Capability{CPU: CPU{MilliCores: 1000}, Memory: GiB}
	_, err := a.Subtract(Capability{Memory: 2 * GiB})
	if !errors.Is(err, ErrInsufficient) || !strings.Contains(err.Error(), "memory") || !strings.Contains(err.Error(), "2GiB") {
		t.Fatalf("err = %v, want ErrInsufficient naming memory and 2GiB", err)
	}
	_, err = a.Subtract(Capability{GPUs: []GPU{{Vendor: "nvidia"}}})
	if !errors.Is(err, ErrInsufficient) || !strings.Contains(err.Error(), "gpu") {
		t.Fatalf("err = %v, want ErrInsufficient naming gpu", err)
	}
}

func TestGPURequirementMatching(t *testing.T) {
	have := Capability{GPUs: []GPU{
		{Vendor: "NVIDIA", Model: "NVIDIA A10", Memory: 24 * GiB, Index: 0, UUID: "GPU-a"},
		{Vendor: "NVIDIA", Model: "NVIDIA H100 80GB HBM3", Memory: 80 * GiB, Index: 1, UUID: "GPU-b"},
	}}
	need := Capability{GPUs: []GPU{{Vendor: "nvidia", Memory: 40 * GiB}}}
	left, err := have.Subtract(need)
	if err != nil {
		t.Fatal(err)
	}
	if len(left.GPUs) != 1 || left.GPUs[0].UUID != "GPU-a" {
		t.Fatalf("left %+v, want only GPU-a", left.GPUs)
	}
	if (Capability{GPUs: []GPU{{Model: "h100"}, {Model: "h100"}}}).Fits(have) {
		t.Fatal("two H100s should not fit where there is one")
	}
}

func TestQuote(t *testing.T) {
	p := PriceInformation{PerCoreHour: 1, PerGiBMemoryHour: 0.5, PerGiBDiskHour: 0.1, PerGPUHour: 10}
	c := Capability{CPU: CPU{MilliCores: 1500}, Memory: 2 * GiB, Disk: 10 * GiB, GPUs: []GPU{{}}}
	got := p.Quote(c, 30*time.Minute)
	want := (1.5 + 1 + 1 + 10) / 2
	if math.Abs(got-want) > 1e-9 {
		t.Fatalf("quote = %v, want %v", got, want)
	}
}

func TestParsePrice(t *testing.T) {
	p, err := ParsePrice("cpu=0.02, memory=0.005,gpu=1,currency=USD")
	if err != nil {
		t.Fatal(err)
	}
	if p.PerCoreHour != 0.02 || p.PerGiBMemoryHour != 0.005 || p.PerGPUHour != 1 || p.Currency != "USD" {
		t.Fatalf("parsed %+v", p)
	}
	back, err := ParsePrice(p.String())
	if err != nil || back != p {
		t.Fatalf("round trip %q -> %+v, %v", p.String(), back, err)
	}
	for _, bad := range []string{"", "cpu", "cpu=-1", "cpu=NaN", "cpu=1,cpu=2", "ram=1", "cpu=abc"} {
		if _, err := ParsePrice(bad); err == nil {
			t.Errorf("ParsePrice(%q) accepted", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := (Capability{CPU: CPU{ClockMHz: math.NaN()}}).Validate(); err == nil {
		t.Error("NaN clock accepted")
	}
	if err := (Capability{Price: PriceInformation{PerCoreHour: -1}}).Validate(); err == nil {
		t.Error("negative price accepted")
	}
	if err := (Capability{Time: TimeInformation{Units: "fortnights"}}).Validate(); err == nil {
		t.Error("unknown time unit accepted")
	}
	if err := (Capability{CPU: CPU{MilliCores: 1000}, Memory: GiB}).Validate(); err != nil {
		t.Errorf("plain capability rejected: %v", err)
	}
}

func TestGPUModelsMatchAsWholeWords(t *testing.T) {
	for _, c := range []struct {
		model, want string
		ok          bool
	}{
		{"NVIDIA H100 80GB HBM3", "H100", true},
		{"NVIDIA H100 80GB HBM3", "h100 80gb", true},
		{"NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3", true},
		{"NVIDIA A100-SXM4-80GB", "A100", true},
		{"NVIDIA A100-SXM4-80GB", "A10", false},
		{"NVIDIA A10", "A100", false},
		{"NVIDIA A10", "A10", true},
		{"NVIDIA H200", "H20", false},
	} {
		g := GPU{Model: c.model}
		if got := g.Satisfies(GPU{Model: c.want}); got != c.ok {
			t.Errorf("%q satisfies model %q: %v, want %v", c.model, c.want, got, c.ok)
		}
	}
}
