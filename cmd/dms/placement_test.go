package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnboardLabels: --label is stored with the offer, shown by
// capability (and its --json), replaced by a later --label, and refused
// naming what a label may hold.
func TestOnboardLabels(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	onboard := func(args ...string) result {
		return dms(t, append([]string{"--home", h, "onboard", "--skip-benchmark"}, args...)...)
	}
	onboard("--cpu", "1", "--memory", "1GiB", "--disk", "1GiB", "--label", "region=eu-west", "--label", "tier=gold").
		want(t, 0, "labels:    region=eu-west,tier=gold")
	dms(t, "--home", h, "capability").want(t, 0, "labels:     region=eu-west,tier=gold")
	if l := capabilityJSON(t, h).Labels; len(l) != 2 || l["region"] != "eu-west" || l["tier"] != "gold" {
		t.Fatalf("capability --json labels %v", l)
	}
	// An offer changed without --label keeps them.
	onboard("--cpu", "0.5").want(t, 0)
	if l := capabilityJSON(t, h).Labels; l.String() != "region=eu-west,tier=gold" {
		t.Fatalf("labels after a change without --label: %v", l)
	}
	for _, c := range []struct{ label, says string }{
		{"region", `invalid value "region" for --label: want KEY=VALUE`},
		{"region=eu west", `label value "eu west": character ' ' not allowed: want letters, digits`},
		{"-x=1", "must start and end with a letter or digit"},
		{"region=" + strings.Repeat("a", 64), "want 1 to 63 characters"},
	} {
		onboard("--label", c.label).want(t, 2, c.says, "--label")
	}
	onboard("--label", "a=1", "--label", "a=2").want(t, 2, "a is given twice")
	if l := capabilityJSON(t, h).Labels; l.String() != "region=eu-west,tier=gold" {
		t.Fatalf("refused labels changed them to %v", l)
	}
	onboard("--label", "zone=b").want(t, 0, "Offer unchanged: cpu=0.5", "labels:    zone=b")
	onboard("--label", "none").want(t, 0, "labels:    none")
	if l := capabilityJSON(t, h).Labels; len(l) != 0 {
		t.Fatalf("labels after --label none: %v", l)
	}
}

// TestJobPlacementFlags: constraints and preferences come from the flags
// or the job file (one string or a list); a bad one exits 2, before
// anything reaches a node, naming where it came from and what is accepted.
func TestJobPlacementFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	wasm := filepath.Join(dir, "job.wasm")
	if err := os.WriteFile(wasm, []byte("\x00asm\x01\x00\x00\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "job.yaml")
	spec := "wasm: job.wasm\ncpu: 0.5\nmemory: 64MiB\nduration: 1m\nconstraints: [region=eu-west, \"tier in (gold, silver)\", \"!gpu\"]\nprefer: tier=gold\n"
	if err := os.WriteFile(file, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := readJobFile(file)
	if err != nil {
		t.Fatal(err)
	}
	req, err := f.request()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range req.Job.Constraints {
		got = append(got, c.String())
	}
	if strings.Join(got, "; ") != "region=eu-west; tier in (gold,silver); !gpu" {
		t.Errorf("constraints from the file: %q", got)
	}
	if len(req.Job.Prefer) != 1 || req.Job.Prefer[0].String() != "tier=gold" {
		t.Errorf("preferences from the file: %v", req.Job.Prefer)
	}

	h := newHome(t)
	submit := func(args ...string) result {
		return dms(t, append([]string{"--home", h, "job", "submit", "--wasm", wasm, "--cpu", "0.5", "--memory", "64MiB", "--duration", "1m"}, args...)...)
	}
	submit("--constraint", "region near (eu)").want(t, 2, `invalid value "region near (eu)" for --constraint`, `operator "near"`, "KEY in (A,B)")
	submit("--prefer", "tier=").want(t, 2, `for --prefer`, `label value ""`)
	many := []string{}
	for range 17 {
		many = append(many, "--constraint", "a=b")
	}
	submit(many...).want(t, 2, "--constraint: 17 constraints, a job takes at most 16")
	if err := os.WriteFile(file, []byte("constraints: [region in eu]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dms(t, "--home", h, "job", "submit", "-f", file, "--wasm", wasm, "--cpu", "0.5", "--memory", "64MiB", "--duration", "1m").
		want(t, 2, `for constraints in job.yaml`, "want a list in parentheses")
}
