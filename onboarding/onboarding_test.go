package onboarding

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/resources"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
)

const gib = capability.GiB

var testMachine = resources.Machine{
	CPU:    capability.CPU{MilliCores: 8000, Arch: "amd64", Model: "Test CPU", ClockMHz: 3000},
	Memory: 16 * gib, MemoryFree: 12 * gib,
	Disk: 100 * gib, DiskFree: 60 * gib, DiskPath: "/home/test/.dms",
	GPUs: []capability.GPU{
		{Vendor: "NVIDIA", Model: "NVIDIA A10", Memory: 24 * gib, Index: 0, UUID: "GPU-aaaa"},
		{Vendor: "NVIDIA", Model: "NVIDIA A10", Memory: 24 * gib, Index: 1, UUID: "GPU-bbbb"},
	},
}

func newTest(t *testing.T) (*Onboarder, *resources.Ledger) {
	t.Helper()
	l, err := resources.NewLedger(dssync.MutexWrap(datastore.NewMapDatastore()))
	if err != nil {
		t.Fatal(err)
	}
	o, err := New(l, "", WithMachine(testMachine))
	if err != nil {
		t.Fatal(err)
	}
	return o, l
}

func TestOnboard(t *testing.T) {
	o, l := newTest(t)
	if o.IsOnboarded() {
		t.Fatal("onboarded before onboarding")
	}
	price := capability.PriceInformation{PerCoreHour: 0.1, Currency: "USD"}
	rec, err := o.Onboard(context.Background(), Offer{CPU: 2000, Memory: 4 * gib, Disk: 10 * gib, GPUs: []string{"1"}, Price: price})
	if err != nil {
		t.Fatal(err)
	}
	if !o.IsOnboarded() || !IsOnboarded(l) {
		t.Fatal("not onboarded after onboarding")
	}
	r := rec.Registered
	if r.CPU.MilliCores != 2000 || r.Memory != 4*gib || r.Disk != 10*gib || r.Price != price || r.CPU.Model != "Test CPU" || r.CPU.Arch != "amd64" {
		t.Fatalf("registered = %+v", r)
	}
	if len(r.GPUs) != 1 || r.GPUs[0].UUID != "GPU-bbbb" {
		t.Fatalf("gpus = %+v", r.GPUs)
	}
	if rec.Previous != nil {
		t.Fatal("a first offer has no previous one")
	}
	// Default reserve on this machine: 0.8 core, 1.6 GiB, 10 GiB; disk also
	// limited by the 40 GiB already used.
	if rec.Limits.Max.CPU.MilliCores != 7200 || rec.Limits.Max.Disk != 60*gib {
		t.Fatalf("limits = %+v", rec.Limits.Max)
	}
	// Change the offer, by UUID this time.
	rec, err = o.Onboard(context.Background(), Offer{CPU: 1000, Memory: gib, Disk: gib, GPUs: []string{"gpu-AAAA"}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Previous == nil || rec.Previous.CPU.MilliCores != 2000 || rec.Registered.GPUs[0].Index != 0 {
		t.Fatalf("changed record = %+v", rec)
	}
}

func TestOnboardRejects(t *testing.T) {
	o, l := newTest(t)
	ok := Offer{CPU: 1000, Memory: gib, Disk: gib}
	for _, c := range []struct {
		name  string
		edit  func(*Offer)
		field string
		say   string
	}{
		{"zero cpu", func(f *Offer) { f.CPU = 0 }, "cpu", "more than zero"},
		{"zero memory", func(f *Offer) { f.Memory = 0 }, "memory", "more than zero"},
		{"zero disk", func(f *Offer) { f.Disk = 0 }, "disk", "more than zero"},
		{"all the cores", func(f *Offer) { f.CPU = 8000 }, "cpu", "at most 7.2"},
		{"too much memory", func(f *Offer) { f.Memory = 15 * gib }, "memory", "at most 14.4GiB"},
		{"used disk", func(f *Offer) { f.Disk = 70 * gib }, "disk", "60GiB free"},
		{"missing gpu", func(f *Offer) { f.GPUs = []string{"7"} }, "gpu", "no such gpu"},
		{"gpu twice", func(f *Offer) { f.GPUs = []string{"0", "GPU-aaaa"} }, "gpu", "offered twice"},
		{"negative price", func(f *Offer) { f.Price.PerGPUHour = -1 }, "price", "finite"},
	} {
		f := ok
		c.edit(&f)
		_, err := o.Onboard(context.Background(), f)
		var oe *OfferError
		if !errors.Is(err, ErrInvalidOffer) || !errors.As(err, &oe) || oe.Field != c.field || !strings.Contains(err.Error(), c.say) {
			t.Errorf("%s: err = %v; want an OfferError on %s saying %q", c.name, err, c.field, c.say)
		}
	}
	if IsOnboarded(l) {
		t.Fatal("a refused offer was recorded")
	}
}

func TestChangeBelowLockedAndOffboard(t *testing.T) {
	o, l := newTest(t)
	ctx := context.Background()
	if rep, err := o.Offboard(ctx, false); err != nil || rep.WasOnboarded {
		t.Fatalf("offboarding a node that is not onboarded: %+v, %v", rep, err)
	}
	if _, err := o.Onboard(ctx, Offer{CPU: 4000, Memory: 4 * gib, Disk: 4 * gib}); err != nil {
		t.Fatal(err)
	}
	if err := l.Lock("alloc-1", capability.Capability{CPU: capability.CPU{MilliCores: 3000}, Memory: gib}, []byte("job")); err != nil {
		t.Fatal(err)
	}
	_, err := o.Onboard(ctx, Offer{CPU: 2000, Memory: 4 * gib, Disk: 4 * gib})
	if !errors.Is(err, ErrBelowLocked) || !strings.Contains(err.Error(), "cpu") {
		t.Fatalf("change below locked: %v", err)
	}
	rep, err := o.Offboard(ctx, false)
	if !errors.Is(err, ErrActiveAllocations) || len(rep.Affected) != 1 || rep.Affected[0].ID != "alloc-1" {
		t.Fatalf("offboard while locked: %+v, %v", rep, err)
	}
	if !o.IsOnboarded() {
		t.Fatal("a refused offboarding offboarded")
	}
	rep, err = o.Offboard(ctx, true)
	if err != nil || !rep.WasOnboarded || len(rep.Affected) != 1 || string(rep.Affected[0].Meta) != "job" {
		t.Fatalf("forced offboard: %+v, %v", rep, err)
	}
	if o.IsOnboarded() || len(l.Locks()) != 0 {
		t.Fatal("still onboarded or locked after a forced offboarding")
	}
}

func TestOptions(t *testing.T) {
	l, _ := resources.NewLedger(dssync.MutexWrap(datastore.NewMapDatastore()))
	if _, err := New(nil, ""); err == nil {
		t.Error("nil ledger accepted")
	}
	if _, err := New(l, "", WithMachine(resources.Machine{})); err == nil {
		t.Error("empty machine accepted")
	}
	if _, err := New(l, "", WithReserve(resources.Reserve{CPUFraction: 2})); err == nil {
		t.Error("reserve of 200% accepted")
	}
	// A bigger reserve lowers the limit.
	o, err := New(l, "", WithMachine(testMachine), WithReserve(resources.Reserve{MinCPU: 4000}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Onboard(context.Background(), Offer{CPU: 4500, Memory: gib, Disk: gib}); !errors.Is(err, ErrInvalidOffer) {
		t.Fatalf("offer above a 4-core reserve: %v", err)
	}
}
