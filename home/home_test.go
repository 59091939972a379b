package home

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/resources"
)

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home")
	rep, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Changed() || !slices.Equal(rep.Created, []string{".", DataDir, IdentityFile, ConfigFile}) || rep.PeerID == "" {
		t.Fatalf("first init: %+v", rep)
	}
	for name, want := range map[string]fs.FileMode{".": 0o700, DataDir: 0o700, IdentityFile: 0o600, ConfigFile: 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	again, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Changed() || again.PeerID != rep.PeerID {
		t.Fatalf("second init changed something: %+v (first %+v)", again, rep)
	}
	h, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Identity(); err != nil {
		t.Fatal(err)
	}
	s, err := h.Settings(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, DefaultSettings()) {
		t.Fatalf("a fresh config reads as %+v, want the defaults", s)
	}
	store, err := h.OpenDatastore()
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := h.OpenDatastore(); !errors.Is(err, resources.ErrHomeInUse) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second open: %v", err)
	}
}

func TestInitHomeTightensAndKeeps(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	custom := "network = mynet\n"
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Tightened, []string{".", ConfigFile}) || !slices.Contains(rep.Created, IdentityFile) || slices.Contains(rep.Created, ConfigFile) {
		t.Fatalf("report = %+v", rep)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ConfigFile)); string(b) != custom {
		t.Fatalf("init replaced an existing config: %q", b)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte("netwrok = x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir); err == nil || !strings.Contains(err.Error(), "netwrok") {
		t.Fatalf("init over a broken config: %v", err)
	}
	// A key that others can read is refused, not silently used.
	if err := os.Chmod(filepath.Join(dir, IdentityFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (Home{Dir: dir}).Identity(); err == nil {
		t.Fatal("a world-readable key was loaded")
	}
}

func TestOpenHomeNotInitialised(t *testing.T) {
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), t.TempDir()} {
		_, err := Open(dir)
		if !errors.Is(err, ErrNotInitialized) || !strings.Contains(err.Error(), "dms init") {
			t.Errorf("Open(%s): %v", dir, err)
		}
	}
}

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir); err != nil {
		t.Fatal(err)
	}
	file := "network = filenet\nlog_level = debug # chatty\nswarm_key = swarm.key\nprice = cpu=1\n"
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DMS_NETWORK": "envnet", "DMS_RESERVE": "cpu=2"}
	s, err := Home{Dir: dir}.Settings(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s.Network != "envnet" || s.LogLevel != slog.LevelDebug || s.Reserve.MinCPU != 2000 || s.Price.PerCoreHour != 1 {
		t.Fatalf("settings = %+v", s)
	}
	if s.SwarmKey != filepath.Join(dir, "swarm.key") {
		t.Fatalf("swarm key %q not resolved against the home", s.SwarmKey)
	}
	env["DMS_LOG_LEVEL"] = "loud"
	if _, err := (Home{Dir: dir}).Settings(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "DMS_LOG_LEVEL") {
		t.Fatalf("bad environment value: %v", err)
	}
}

func TestParseSettingsErrors(t *testing.T) {
	for _, c := range []struct{ in, say string }{
		{"network = dms\nnetwrok = x\n", ":2: unknown key"},
		{"network = a\nnetwork = b\n", "already set on line 1"},
		{"network = Big Net\n", "network"},
		{"listen = 0.0.0.0:4001\n", "want a multiaddr"},
		{"bootstrap = /ip4/1.2.3.4/tcp/4001\n", "/p2p/"},
		{"reserve = memory=4XB\n", "reserve memory"},
		{"price = cpu=-1\n", "price"},
		{"just words\n", "want key = value"},
		{"log_level = verbose\n", "log level"},
		{"cache_size = 1MiB\n", "cache size \"1MiB\": want a size of 16MiB to 1TiB"},
		{"cache_size = lots\n", "cache size"},
	} {
		_, err := ParseSettings([]byte(c.in), "cfg")
		if err == nil || !strings.Contains(err.Error(), c.say) {
			t.Errorf("ParseSettings(%q) = %v; want an error saying %q", c.in, err, c.say)
		}
	}
	s, err := ParseSettings([]byte(`listen = "/ip4/127.0.0.1/tcp/1", /ip4/127.0.0.1/tcp/1
bootstrap = /ip4/127.0.0.1/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp
network =
cache_size = 2GiB
`), "cfg")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Listen) != 1 || len(s.Bootstrap) != 1 || s.Network != "dms" || s.CacheSize != 2<<30 {
		t.Fatalf("settings = %+v", s)
	}
}

// TestDefaultConfigFileDocumentsEveryKey: the file init writes reads back as
// the defaults, and each key has its own comment.
func TestDefaultConfigFileDocumentsEveryKey(t *testing.T) {
	f := DefaultConfigFile()
	s, err := ParseSettings(f, "default")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, DefaultSettings()) {
		t.Fatalf("default file parses to %+v", s)
	}
	for _, k := range settingKeys {
		if !strings.Contains(string(f), "\n# "+k+" ") || !strings.Contains(string(f), "\n"+k+" =") {
			t.Errorf("key %s is not documented and set in the default config", k)
		}
	}
	if DefaultSettings().Reserve != resources.DefaultReserve || !DefaultSettings().Price.IsZero() {
		t.Fatal("defaults drifted from resources.DefaultReserve or a free price list")
	}
	_ = capability.GiB
}

func FuzzParseSettings(f *testing.F) {
	f.Add(DefaultConfigFile())
	f.Add([]byte("network = x\nreserve = cpu=10%>1\n"))
	f.Add([]byte("= =\n#\n\"\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSettings(b, "fuzz")
		if err != nil {
			return
		}
		if err := ParseNetwork(s.Network); err != nil || s.Network == "" {
			t.Fatalf("accepted network %q", s.Network)
		}
		if err := s.Reserve.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := s.Price.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPIDFile(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	if _, err := h.ReadPID(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no PID file: %v", err)
	}
	started := time.Date(2026, 12, 7, 19, 0, 0, 0, time.UTC)
	if err := h.WritePID(started); err != nil {
		t.Fatal(err)
	}
	p, err := h.ReadPID()
	if err != nil || p.PID != os.Getpid() || !p.Started.Equal(started) {
		t.Fatalf("read %+v %v", p, err)
	}
	if st, _ := os.Stat(h.PIDPath()); st.Mode().Perm() != 0o600 {
		t.Fatalf("PID file mode %o", st.Mode().Perm())
	}
	for _, bad := range []string{"", "nope 2026", "-3", strings.Repeat("9", 400)} {
		os.WriteFile(h.PIDPath(), []byte(bad), 0o600)
		if _, err := h.ReadPID(); err == nil || !strings.Contains(err.Error(), "PID STARTED") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	os.WriteFile(h.PIDPath(), []byte("42\n"), 0o600) // no start time: the PID still counts
	if p, err := h.ReadPID(); err != nil || p.PID != 42 || !p.Started.IsZero() {
		t.Errorf("pid only: %+v %v", p, err)
	}
	if err := h.RemovePID(); err != nil {
		t.Fatal(err)
	}
	if err := h.RemovePID(); err != nil {
		t.Fatal("removing a missing PID file:", err)
	}
}
