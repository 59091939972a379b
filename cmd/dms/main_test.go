package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/resources"
)

type result struct {
	code           int
	stdout, stderr string
}

// dms runs the command line in-process, as a user would type it.
func dms(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"dms"}, args...), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func (r result) want(t *testing.T, code int, says ...string) {
	t.Helper()
	for _, s := range says {
		if !strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("output does not say %q", s)
		}
	}
	if r.code != code || t.Failed() {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

// newHome makes an initialised home (TestMain keeps DMS_* variables of
// the environment the tests run in out).
func newHome(t *testing.T) string {
	t.Helper()
	h := filepath.Join(t.TempDir(), "home")
	dms(t, "--home", h, "init").want(t, 0, "Initialised dms home", "identity.key")
	return h
}

func capabilityJSON(t *testing.T, home string) api.CapabilityResponse {
	t.Helper()
	r := dms(t, "--home", home, "capability", "--json")
	r.want(t, 0)
	var resp api.CapabilityResponse
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("capability --json is not JSON: %v\n%s", err, r.stdout)
	}
	return resp
}

func TestInitTwice(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	r := dms(t, "--home", h, "init")
	r.want(t, 0, "already a dms home; nothing changed")
	// The global flag works after the command too.
	dms(t, "init", "--home", h).want(t, 0, "nothing changed")
	err := filepath.WalkDir(h, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := os.Stat(p)
		if err == nil && st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: readable by others", p, st.Mode().Perm())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOnboardCapabilityRestart(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	dms(t, "--home", h, "onboard", "--cpu", "1", "--memory", "1GiB", "--disk", "1GiB", "--skip-benchmark", "--price", "cpu=0.02,currency=USD").
		want(t, 0, "Onboarded: offering cpu=1 memory=1GiB disk=1GiB", "cpu=0.02")
	resp := capabilityJSON(t, h)
	reg := resp.Registered
	if !resp.Onboarded || reg.CPU.MilliCores != 1000 || reg.Memory != capability.GiB || reg.Disk != capability.GiB || reg.Price.PerCoreHour != 0.02 {
		t.Fatalf("capability after onboarding: %+v", resp)
	}
	if resp.Machine.CPU.MilliCores == 0 || resp.MaxOffer.CPU.MilliCores == 0 || resp.Available.CPU.MilliCores > 1000 {
		t.Fatalf("machine/limits/available: %+v", resp)
	}
	// Every command opens and closes the datastore, so this is a restart;
	// reading the datastore directly is another.
	again := capabilityJSON(t, h)
	if !again.Registered.Equal(reg) || again.Registered.Price != reg.Price {
		t.Fatalf("after restart: %+v, want %+v", again.Registered, reg)
	}
	hm, err := home.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	store, err := hm.OpenDatastore()
	if err != nil {
		t.Fatal(err)
	}
	l, err := resources.NewLedger(store)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Registered().Equal(reg) {
		t.Fatalf("ledger holds %v", l.Registered())
	}
	store.Close()
	// The table names every row.
	dms(t, "--home", h, "capability").want(t, 0, "machine", "owner reserve", "registered", "locked", "held", "available", "onboarded:  yes")
	// A changed offer keeps what it does not name.
	dms(t, "--home", h, "onboard", "--cpu", "0.5", "--skip-benchmark").want(t, 0, "Offer changed from cpu=1 memory=1GiB disk=1GiB", "to cpu=0.5 memory=1GiB disk=1GiB")
	if c := capabilityJSON(t, h).Registered; c.CPU.MilliCores != 500 || c.Price.PerCoreHour != 0.02 {
		t.Fatalf("changed offer: %+v", c)
	}
}

func TestOnboardUsageErrors(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	for _, c := range []struct {
		args []string
		says []string
	}{
		{[]string{"--memory", "4XB", "--cpu", "1", "--disk", "1GiB"}, []string{`invalid value "4XB" for --memory: want a size such as 512MiB, 4GiB`, "Run 'dms onboard --help'"}},
		{[]string{"--cpu", "two", "--memory", "1GiB", "--disk", "1GiB"}, []string{`invalid value "two" for --cpu: want a number of cores`}},
		{[]string{"--cpu", "1000", "--memory", "1GiB", "--disk", "1GiB", "--skip-benchmark"}, []string{"invalid value 1000 for --cpu: more than this machine can offer: at most"}},
		{[]string{"--cpu", "1", "--memory", "1PiB", "--disk", "1GiB"}, []string{"--memory"}},
		{[]string{"--cpu", "1", "--memory", "1TiB", "--disk", "1GiB", "--skip-benchmark"}, []string{"for --memory: more than this machine can offer"}},
		{[]string{"--cpu", "0", "--memory", "1GiB", "--disk", "1GiB", "--skip-benchmark"}, []string{"for --cpu: must be more than zero"}},
		{[]string{"--cpu", "1", "--memory", "1GiB", "--disk", "1GiB", "--gpu", "3", "--skip-benchmark"}, []string{`invalid value "3" for --gpu: no such gpu`}},
		{[]string{"--cpu", "1"}, []string{"missing required flag --memory and --disk"}},
		{[]string{"--cpu", "1", "--memory", "1GiB", "--disk", "1GiB", "--price", "cpu=-1"}, []string{`invalid value "cpu=-1" for --price`}},
		{[]string{"--cpu", "1", "--memory", "1GiB", "--disk", "1GiB", "--reserve", "cpu=lots"}, []string{`invalid value "cpu=lots" for --reserve`}},
		{[]string{"--cpu", "1", "--memory", "1GiB", "--disk", "1GiB", "--benchmark-duration", "1m"}, []string{"for --benchmark-duration: want 40ms to 10s"}},
		{[]string{"--bogus"}, []string{"unknown flag --bogus", "Run 'dms onboard --help'"}},
		{[]string{"--cpu"}, []string{"flag --cpu needs a value"}},
		{[]string{"--cpu", "1", "extra"}, []string{`unexpected argument "extra"`}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			dms(t, append([]string{"--home", h, "onboard"}, c.args...)...).want(t, 2, c.says...)
		})
	}
	if capabilityJSON(t, h).Onboarded {
		t.Fatal("a refused offer was recorded")
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	missing := filepath.Join(t.TempDir(), "nohome")
	for _, c := range []struct {
		args []string
		says []string
	}{
		{[]string{"--home", missing, "capability"}, []string{"home not initialised", "run dms init"}},
		{[]string{"--home", missing, "onboard", "--cpu", "1", "--memory", "1GiB", "--disk", "1GiB"}, []string{"run dms init"}},
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`}},
		{[]string{"--nope", "capability"}, []string{"unknown flag --nope"}},
		{[]string{"--home", h, "--log-level", "loud", "capability"}, []string{`invalid value "loud" for --log-level: want debug, info, warn or error`}},
		{[]string{"--home", h, "benchmark", "--duration", "20s"}, []string{"for --duration: want 40ms to 10s"}},
		{[]string{"--home", h, "benchmark", "--duration", "soon"}, []string{`invalid value "soon" for --duration`}},
		{[]string{"--home", h, "offboard", "now"}, []string{`unexpected argument "now"`}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			dms(t, c.args...).want(t, 2, c.says...)
		})
	}
}

// lock places a lock through the ledger directly, as a running node would.
func lock(t *testing.T, dir, id string) {
	t.Helper()
	h, err := home.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := h.OpenDatastore()
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l, err := resources.NewLedger(store)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Lock(id, capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: 256 * capability.MiB}, []byte(`{"job":"j"}`)); err != nil {
		t.Fatal(err)
	}
}

func TestOffboard(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	dms(t, "--home", h, "offboard").want(t, 0, "Not onboarded; nothing to do.")
	dms(t, "--home", h, "onboard", "--cpu", "1", "--memory", "1GiB", "--disk", "1GiB", "--skip-benchmark").want(t, 0)
	lock(t, h, "alloc-1")
	dms(t, "--home", h, "capability").want(t, 0, "alloc-1", "(1 allocations)")
	dms(t, "--home", h, "onboard", "--cpu", "0.25", "--skip-benchmark").want(t, 1, "below what is locked now", "cpu")
	dms(t, "--home", h, "offboard").want(t, 1, "offboard refused: 1 allocation(s) hold locks", "alloc-1", "--force")
	if !capabilityJSON(t, h).Onboarded {
		t.Fatal("a refused offboarding offboarded")
	}
	dms(t, "--home", h, "offboard", "--force").want(t, 0, "Offboarded (forced)", "alloc-1")
	resp := capabilityJSON(t, h)
	if resp.Onboarded || len(resp.Locks) != 0 {
		t.Fatalf("after forced offboarding: %+v", resp)
	}
	dms(t, "--home", h, "onboard", "--cpu", "1", "--memory", "1GiB", "--disk", "1GiB", "--skip-benchmark").want(t, 0)
	dms(t, "--home", h, "offboard", "--json").want(t, 0, `"was_onboarded": true`)
}

func TestHomeInUse(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	hm, err := home.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	store, err := hm.OpenDatastore()
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	dms(t, "--home", h, "capability").want(t, 1, "a dms node is already running on "+hm.Dir, "pid")
}

func TestBenchmarkAndScore(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	dms(t, "--home", h, "benchmark", "--duration", "200ms").want(t, 0, "[1/4] cpu, one core", "[4/4] disk write + fsync", "score", "Not onboarded yet")
	first := capabilityJSON(t, h).Benchmark
	if first == nil || first.Score <= 0 {
		t.Fatalf("benchmark not stored: %+v", first)
	}
	// Onboarding after a benchmark carries its score and runs no other.
	r := dms(t, "--home", h, "onboard", "--cpu", "1", "--memory", "1GiB", "--disk", "1GiB")
	r.want(t, 0, "benchmark: score")
	if strings.Contains(r.stderr, "[1/4]") {
		t.Fatal("onboarding benchmarked again although a benchmark is stored")
	}
	if got := capabilityJSON(t, h).Registered.CPU.Score; got != first.Score {
		t.Fatalf("registered score %v, want the benchmark's %v", got, first.Score)
	}
	// A first onboarding without a stored benchmark runs one.
	h2 := newHome(t)
	r = dms(t, "--home", h2, "onboard", "--cpu", "1", "--memory", "1GiB", "--disk", "1GiB", "--benchmark-duration", "100ms", "--json")
	r.want(t, 0)
	var resp api.OnboardResponse
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.Benchmark == nil || resp.Record.Registered.CPU.Score != resp.Benchmark.Score {
		t.Fatalf("onboard --json: %v\n%s", err, r.stdout)
	}
	if !strings.Contains(r.stderr, "[4/4]") {
		t.Fatalf("no benchmark progress on stderr:\n%s", r.stderr)
	}
}

func TestSettingsPrecedence(t *testing.T) {
	h := newHome(t)
	cfg := filepath.Join(h, home.ConfigFile)
	if err := os.WriteFile(cfg, []byte("price = cpu=3\nreserve = cpu=1.9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The config's reserve leaves at most 0.1 core on a 2-core machine...
	resp := capabilityJSON(t, h)
	if resp.Reserve.CPU.MilliCores != min(1900, resp.Machine.CPU.MilliCores) {
		t.Fatalf("config reserve not applied: %+v", resp.Reserve)
	}
	// ...the environment beats the config, and a flag beats the environment.
	t.Setenv("DMS_RESERVE", "cpu=0")
	if got := capabilityJSON(t, h).Reserve.CPU.MilliCores; got != 0 {
		t.Fatalf("DMS_RESERVE not applied: %d", got)
	}
	r := dms(t, "--home", h, "capability", "--json", "--reserve", "cpu=0.1")
	r.want(t, 0, `"millicores": 100`)
	// The config's price is the default for a first offer.
	dms(t, "--home", h, "onboard", "--cpu", "0.5", "--memory", "1GiB", "--disk", "1GiB", "--skip-benchmark").want(t, 0, "cpu=3")
	// DMS_HOME names the home; --home beats it.
	t.Setenv("DMS_HOME", filepath.Join(t.TempDir(), "elsewhere"))
	dms(t, "capability").want(t, 2, "run dms init")
	dms(t, "--home", h, "capability").want(t, 0)
	dms(t, "capability", "--home", h).want(t, 0)
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	newHome(t)
	dms(t, "--help").want(t, 0, "init", "onboard", "offboard", "capability", "benchmark", "version", "--home", "--log-level", "Exit status")
	dms(t).want(t, 0, "USAGE")
	for cmd, flags := range map[string][]string{
		"init":       {"--home"},
		"onboard":    {"--cpu", "--memory", "--disk", "--gpu", "--price", "--reserve", "--skip-benchmark", "--json"},
		"offboard":   {"--force", "--json"},
		"capability": {"--json", "--reserve"},
		"benchmark":  {"--duration", "--json"},
		"version":    {"--home"},
	} {
		dms(t, cmd, "--help").want(t, 0, append(flags, "dms "+cmd)...)
	}
	dms(t, "version").want(t, 0, "dms ", "commit:", "go:")
}
