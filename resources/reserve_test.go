package resources

import (
	"testing"

	"github.com/dms-project/dms/capability"
)

func TestReserveResolve(t *testing.T) {
	small := capability.Capability{CPU: capability.CPU{MilliCores: 2000}, Memory: 2 * capability.GiB, Disk: 20 * capability.GiB}
	got := DefaultReserve.Resolve(small)
	if got.CPU.MilliCores != 500 || got.Memory != 512*capability.MiB || got.Disk != 2*capability.GiB {
		t.Fatalf("small machine reserve = %v", got)
	}
	big := capability.Capability{CPU: capability.CPU{MilliCores: 64000}, Memory: 256 * capability.GiB, Disk: 4 * capability.TiB}
	got = DefaultReserve.Resolve(big)
	if got.CPU.MilliCores != 6400 || got.Memory != 256*capability.GiB/10+1 && got.Memory != 256*capability.GiB/10 {
		t.Fatalf("big machine reserve = %v", got)
	}
	tiny := capability.Capability{CPU: capability.CPU{MilliCores: 300}, Memory: 100 * capability.MiB}
	got = DefaultReserve.Resolve(tiny)
	if got.CPU.MilliCores != 300 || got.Memory != 100*capability.MiB || got.Disk != 0 {
		t.Fatalf("reserve must be capped at the total, got %v", got)
	}
}

func TestParseReserve(t *testing.T) {
	r, err := ParseReserve("cpu=1, memory=20%, disk=5%>10GiB")
	if err != nil {
		t.Fatal(err)
	}
	want := Reserve{CPUFraction: 0, MinCPU: 1000, MemoryFraction: 0.2, MinMemory: 0, DiskFraction: 0.05, MinDisk: 10 * capability.GiB}
	if r != want {
		t.Fatalf("parsed %+v, want %+v", r, want)
	}
	back, err := ParseReserve(r.String())
	if err != nil || back != r {
		t.Fatalf("round trip %q: %+v, %v", r.String(), back, err)
	}
	if d, err := ParseReserve(DefaultReserve.String()); err != nil || d != DefaultReserve {
		t.Fatalf("default round trip %q: %+v, %v", DefaultReserve.String(), d, err)
	}
	if d, err := ParseReserve("  "); err != nil || d != DefaultReserve {
		t.Fatalf("empty: %+v, %v", d, err)
	}
	partial, err := ParseReserve("disk=0")
	if err != nil || partial.MinDisk != 0 || partial.DiskFraction != 0 || partial.MinCPU != DefaultReserve.MinCPU {
		t.Fatalf("partial: %+v, %v", partial, err)
	}
	for _, bad := range []string{"cpu", "gpu=1", "cpu=1,cpu=2", "memory=101%", "memory=-1%", "memory=4XB", "disk=10%<1GiB", "cpu=abc"} {
		if _, err := ParseReserve(bad); err == nil {
			t.Errorf("ParseReserve(%q) accepted", bad)
		}
	}
}
