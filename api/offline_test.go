package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/resources"
)

// TestOfflinePreferences: on a stopped home, onboarding records the
// preferences it sets, and stored preferences that do not decode are an
// error naming them, as they are for a running node.
func TestOfflinePreferences(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := home.Init(dir); err != nil {
		t.Fatal(err)
	}
	h, err := home.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	machine := resources.Machine{CPU: capability.CPU{MilliCores: 4000}, Memory: 8 * capability.GiB, Disk: 50 * capability.GiB, DiskFree: 40 * capability.GiB}
	o := &Offline{Home: h, Settings: home.DefaultSettings(), Machine: &machine}
	u64 := func(v uint64) *uint64 { return &v }
	long := 3 * time.Hour
	req := OnboardRequest{CPU: u64(1000), Memory: u64(capability.GiB), Disk: u64(capability.GiB), Executors: &[]string{"wasm", "native"}, MaxJobDuration: &long}
	resp, err := o.Onboard(ctx, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Executors) != 2 || resp.MaxJobDuration != long {
		t.Fatalf("response executors %v, longest job %v", resp.Executors, resp.MaxJobDuration)
	}
	if c, err := o.Capability(ctx, CapabilityRequest{}); err != nil || len(c.Executors) != 2 {
		t.Fatalf("capability: executors %v, %v", c.Executors, err)
	}

	err = o.Use(ctx, nil, func(_ *onboarding.Onboarder, l *resources.Ledger) error {
		return l.SetPreferences([]byte("not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Onboard(ctx, OnboardRequest{MaxJobDuration: &long}, nil); err == nil || !strings.Contains(err.Error(), `"not json"`) {
		t.Fatalf("onboard over undecodable preferences: %v, want an error quoting them", err)
	}
	if _, err := o.Capability(ctx, CapabilityRequest{}); err == nil || !strings.Contains(err.Error(), "do not decode") {
		t.Fatalf("capability over undecodable preferences: %v, want an error", err)
	}
}
