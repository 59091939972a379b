package onboarding

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/orchestrator"
)

func ptr[T any](v T) *T { return &v }

// TestApplyPreferences: Apply merges the preferences a request sets into
// the stored ones and stores them with the offer; a refused request
// changes neither.
func TestApplyPreferences(t *testing.T) {
	ctx := context.Background()
	o, l := newTest(t)
	if err := l.SetPreferences([]byte(`{"min_price":1}`)); err != nil {
		t.Fatal(err)
	}
	req := Request{CPU: ptr[uint64](1000), Memory: ptr[uint64](gib), Disk: ptr[uint64](gib),
		Executors: &[]string{"native", "wasm", "native"}, MaxJobDuration: ptr(2 * time.Hour)}
	res, err := o.Apply(ctx, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Executors, []string{"native", "wasm"}) || res.MaxJobDuration != 2*time.Hour {
		t.Fatalf("result executors %v, longest job %v", res.Executors, res.MaxJobDuration)
	}
	p, err := StoredPreferences(l)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Executors(), []string{"native", "wasm"}) || p.MaxJobDuration() != 2*time.Hour || p.MinPrice != 1 {
		t.Fatalf("stored %+v: want the request's executors and longest job, the stored min price kept", p)
	}

	for name, bad := range map[string]Request{
		"executor":     {Executors: &[]string{"gpu"}},
		"no executors": {Executors: &[]string{}},
		"long job":     {MaxJobDuration: ptr(2 * MaxJobDurationLimit)},
		"short job":    {MaxJobDuration: ptr(time.Millisecond)},
		// The preferences are fine, the offer is not: neither is stored.
		"offer": {CPU: ptr[uint64](1 << 40), Executors: &[]string{"wasm"}},
	} {
		if _, err := o.Apply(ctx, bad, nil); !errors.Is(err, ErrInvalidOffer) {
			t.Errorf("%s: %v, want an invalid offer", name, err)
		}
	}
	if p2, err := StoredPreferences(l); err != nil || !slices.Equal(p2.Executors(), p.Executors()) || p2.MaxJobDuration() != p.MaxJobDuration() {
		t.Fatalf("refused requests changed the preferences: %+v, %v", p2, err)
	}
	if rec := l.Registered(); rec.CPU.MilliCores != 1000 {
		t.Fatalf("refused requests changed the offer: %+v", rec)
	}
}

// TestUndecodablePreferences: stored preferences that do not decode are an
// error naming them, for reading them and for a request that would merge
// into them; a request that changes only the offer still goes through.
func TestUndecodablePreferences(t *testing.T) {
	ctx := context.Background()
	o, l := newTest(t)
	if err := l.SetPreferences([]byte(`{"allowed_executors":"wasm"`)); err != nil {
		t.Fatal(err)
	}
	_, err := StoredPreferences(l)
	if err == nil || !strings.Contains(err.Error(), "do not decode") || !strings.Contains(err.Error(), `allowed_executors`) {
		t.Fatalf("StoredPreferences = %v, want an error quoting the stored value", err)
	}
	req := Request{CPU: ptr[uint64](1000), Memory: ptr[uint64](gib), Disk: ptr[uint64](gib), MaxJobDuration: ptr(time.Hour)}
	if _, err := o.Apply(ctx, req, nil); err == nil || !strings.Contains(err.Error(), "do not decode") {
		t.Fatalf("Apply over undecodable preferences = %v, want an error", err)
	}
	if IsOnboarded(l) {
		t.Fatal("the refused request recorded its offer")
	}
	req.MaxJobDuration = nil
	if _, err := o.Apply(ctx, req, nil); err != nil {
		t.Fatalf("an offer-only request: %v", err)
	}
}

// TestApplyLabels: labels are a preference: given, they replace the
// stored ones (empty: none); left out, they stay; a bad one is refused
// naming it, and changes nothing.
func TestApplyLabels(t *testing.T) {
	ctx := context.Background()
	o, l := newTest(t)
	labels := func(kv ...string) *orchestrator.Labels {
		m := orchestrator.Labels{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return &m
	}
	stored := func() string {
		t.Helper()
		p, err := StoredPreferences(l)
		if err != nil {
			t.Fatal(err)
		}
		return p.Labels.String()
	}
	req := Request{CPU: ptr[uint64](1000), Memory: ptr[uint64](gib), Disk: ptr[uint64](gib), Labels: labels("region", "eu-west", "tier", "gold")}
	res, err := o.Apply(ctx, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Labels.String() != "region=eu-west,tier=gold" || stored() != "region=eu-west,tier=gold" {
		t.Fatalf("result %s, stored %s: want region=eu-west,tier=gold", res.Labels, stored())
	}
	if _, err := o.Apply(ctx, Request{MaxJobDuration: ptr(time.Hour)}, nil); err != nil || stored() != "region=eu-west,tier=gold" {
		t.Fatalf("a request without labels: %v, stored %s: want them kept", err, stored())
	}
	_, err = o.Apply(ctx, Request{Labels: labels("region", "eu west")}, nil)
	var oe *OfferError
	if !errors.As(err, &oe) || oe.Field != "label" || !strings.Contains(err.Error(), `label value "eu west"`) {
		t.Fatalf("a bad label: %v, want an offer error naming it", err)
	}
	if stored() != "region=eu-west,tier=gold" {
		t.Fatalf("a refused request changed the labels to %s", stored())
	}
	if _, err := o.Apply(ctx, Request{Labels: labels("zone", "a")}, nil); err != nil || stored() != "zone=a" {
		t.Fatalf("new labels: %v, stored %s: want zone=a alone", err, stored())
	}
	if _, err := o.Apply(ctx, Request{Labels: labels()}, nil); err != nil || stored() != "" {
		t.Fatalf("no labels: %v, stored %s: want none", err, stored())
	}
}
