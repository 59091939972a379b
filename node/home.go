package node

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/resources"
)

// The files of a home ($DMS_HOME, default ~/.dms).
const (
	IdentityFile = "identity.key" // Ed25519 key, libp2p's MarshalPrivateKey format, 0600
	ConfigFile   = "config"       // settings, "key = value" lines, 0600
	DataDir      = "data"         // the datastore (pebble), 0700
)

// ErrNotInitialized means a directory is not (or not completely) a dms home.
var ErrNotInitialized = errors.New("home not initialised")

// Home is an initialised dms home directory.
type Home struct {
	Dir string
}

// DefaultHomeDir is ~/.dms.
func DefaultHomeDir() (string, error) {
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("default home: %w (set DMS_HOME or --home)", err)
	}
	return filepath.Join(h, ".dms"), nil
}

// IdentityPath is the node's private key file.
func (h Home) IdentityPath() string { return filepath.Join(h.Dir, IdentityFile) }

// ConfigPath is the settings file.
func (h Home) ConfigPath() string { return filepath.Join(h.Dir, ConfigFile) }

// DataPath is the datastore directory.
func (h Home) DataPath() string { return filepath.Join(h.Dir, DataDir) }

// InitReport says what InitHome did; nothing in Created and Tightened means
// the home was already complete and nothing changed.
type InitReport struct {
	Home      string   `json:"home"`
	Created   []string `json:"created,omitempty"`   // paths relative to Home
	Tightened []string `json:"tightened,omitempty"` // paths whose permissions were narrowed to the owner
	PeerID    string   `json:"peer_id"`
}

// Changed reports whether InitHome changed anything.
func (r InitReport) Changed() bool { return len(r.Created)+len(r.Tightened) > 0 }

// InitHome creates what is missing of a home in dir: the directory (0700), an
// identity key (0600), a config file with every key documented (0600) and
// the datastore directory (0700). What exists is kept; permissions that let
// group or others in are narrowed. Running it twice changes nothing.
func InitHome(dir string) (InitReport, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return InitReport{}, fmt.Errorf("init home %s: %w", dir, err)
	}
	h := Home{Dir: abs}
	rep := InitReport{Home: abs}
	for _, d := range []string{"", DataDir} {
		created, tightened, err := ensureDir(filepath.Join(abs, d))
		if err != nil {
			return rep, fmt.Errorf("init home: %w", err)
		}
		name := d
		if name == "" {
			name = "."
		}
		if created {
			rep.Created = append(rep.Created, name)
		}
		if tightened {
			rep.Tightened = append(rep.Tightened, name)
		}
	}
	key, created, err := p2p.LoadOrCreateIdentity(h.IdentityPath())
	if err != nil {
		return rep, fmt.Errorf("init home: %w", err)
	}
	if created {
		rep.Created = append(rep.Created, IdentityFile)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return rep, fmt.Errorf("init home: peer id: %w", err)
	}
	rep.PeerID = id.String()

	switch st, err := os.Stat(h.ConfigPath()); {
	case errors.Is(err, fs.ErrNotExist):
		if err := writeNewFile(h.ConfigPath(), DefaultConfigFile()); err != nil {
			return rep, fmt.Errorf("init home: %w", err)
		}
		rep.Created = append(rep.Created, ConfigFile)
	case err != nil:
		return rep, fmt.Errorf("init home: %w", err)
	default:
		// Keep the user's file, but say now if it would not load.
		if _, err := h.Settings(func(string) string { return "" }); err != nil {
			return rep, fmt.Errorf("init home: existing %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(h.ConfigPath(), 0o600); err != nil {
				return rep, fmt.Errorf("init home: %w", err)
			}
			rep.Tightened = append(rep.Tightened, ConfigFile)
		}
	}
	return rep, nil
}

// ensureDir creates dir with 0700, or narrows an existing one to 0700.
func ensureDir(dir string) (created, tightened bool, err error) {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, false, err
		}
		return true, false, os.Chmod(dir, 0o700) // MkdirAll is subject to the umask
	case err != nil:
		return false, false, err
	case !st.IsDir():
		return false, false, fmt.Errorf("%s exists and is not a directory", dir)
	case st.Mode().Perm()&0o077 != 0:
		return false, true, os.Chmod(dir, 0o700)
	}
	return false, false, nil
}

// writeNewFile creates path with 0600; it never replaces an existing file.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return errors.Join(err, f.Close())
	}
	if err := f.Sync(); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}

// OpenHome returns the home in dir, or ErrNotInitialized (with a hint to run
// dms init) when dir lacks its identity key or config file.
func OpenHome(dir string) (Home, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Home{}, fmt.Errorf("open home %s: %w", dir, err)
	}
	h := Home{Dir: abs}
	for _, p := range []string{abs, h.IdentityPath(), h.ConfigPath()} {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return Home{}, fmt.Errorf("%s: %w (%s is missing): run dms init", abs, ErrNotInitialized, p)
		} else if err != nil {
			return Home{}, fmt.Errorf("open home: %w", err)
		}
	}
	return h, nil
}

// Identity loads the node's private key.
func (h Home) Identity() (crypto.PrivKey, error) { return p2p.LoadIdentity(h.IdentityPath()) }

// OpenDatastore opens the home's datastore; resources.ErrHomeInUse when a
// node already has it open.
func (h Home) OpenDatastore() (ds.Batching, error) {
	return resources.OpenDatastore(h.DataPath(), h.Dir)
}

// Settings reads the config file with DMS_* variables from getenv on top
// (see LoadSettings); a relative swarm_key is resolved against the home.
func (h Home) Settings(getenv func(string) string) (Settings, error) {
	s, err := LoadSettings(h.ConfigPath(), getenv)
	if err != nil {
		return Settings{}, err
	}
	if s.SwarmKey != "" && !filepath.IsAbs(s.SwarmKey) {
		s.SwarmKey = filepath.Join(h.Dir, s.SwarmKey)
	}
	return s, nil
}

// Settings are the values of the config file. Precedence, highest first:
// command-line flags (applied by the command line), DMS_* environment
// variables, the config file, the defaults.
type Settings struct {
	Network   string                      `json:"network"`
	Listen    []string                    `json:"listen"`
	Bootstrap []string                    `json:"bootstrap,omitempty"`
	SwarmKey  string                      `json:"swarm_key,omitempty"` // "" for a public network
	Reserve   resources.Reserve           `json:"reserve"`
	Price     capability.PriceInformation `json:"price,omitzero"`
	LogLevel  slog.Level                  `json:"log_level"`
}

// DefaultSettings are used for every key the file and environment leave out.
func DefaultSettings() Settings {
	return Settings{
		Network:  p2p.DefaultNetwork,
		Listen:   []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"},
		Reserve:  resources.DefaultReserve,
		LogLevel: slog.LevelInfo,
	}
}

// settingKeys are the config keys in file order; each also reads from
// DMS_<KEY> in the environment.
var settingKeys = []string{"network", "listen", "bootstrap", "swarm_key", "reserve", "price", "log_level"}

// EnvVar is the environment variable that overrides a config key.
func EnvVar(key string) string { return "DMS_" + strings.ToUpper(key) }

// DefaultConfigFile is what dms init writes: every key with its default and
// what it means.
func DefaultConfigFile() []byte {
	d := DefaultSettings()
	return []byte(`# dms configuration.
#
# One "key = value" per line; "#" starts a comment. A key that is left out,
# commented out or empty takes its default (shown below). Every key can also
# be set with an environment variable DMS_<KEY> (e.g. DMS_LOG_LEVEL=debug),
# and some with a command-line flag. Precedence, highest first: flags,
# environment, this file, defaults.

# network names the network this node belongs to. Its DHT, gossip topics and
# protocols all carry the name, so nodes of different networks never mix.
# 1 to 32 characters of a-z 0-9 - _ .
network = ` + d.Network + `

# listen is a comma-separated list of multiaddrs to listen on (TCP, TCP with
# /ws, QUIC v1).
listen = ` + strings.Join(d.Listen, ", ") + `

# bootstrap is a comma-separated list of peers to dial at start, each a
# multiaddr ending in /p2p/<peer ID>, e.g.
# /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW... Empty: none.
bootstrap =

# swarm_key is the path of a pre-shared key file (32 bytes), relative to this
# home unless absolute. Set it to join a private network; only nodes with the
# same key can connect, over TCP only (QUIC refuses a pre-shared key).
# Empty: a public network.
swarm_key =

# reserve is what the machine's owner keeps: never offered, and the owner's own
# use only shrinks what the node offers once it goes beyond it. Keys cpu,
# memory, disk; each an amount ("cpu=1", "memory=2GiB"), a percentage of the
# machine ("disk=10%"), or a percentage with a floor ("memory=10%>512MiB").
# Keys left out keep their default.
reserve = ` + d.Reserve.String() + `

# price is the price list dms onboard records when --price is not given, per
# hour: cpu per core, memory and disk per GiB, gpu per GPU, and a currency,
# e.g. cpu=0.02,memory=0.005,disk=0.0001,gpu=0.5,currency=USD.
# Empty: free.
price =

# log_level is the least severe level logged: debug, info, warn or error.
log_level = ` + strings.ToLower(d.LogLevel.String()) + `
`)
}

// LoadSettings reads the config file at path over the defaults, then the
// DMS_* variables from getenv over that. A missing file is an error.
func LoadSettings(path string, getenv func(string) string) (Settings, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Settings{}, fmt.Errorf("config: %w", err)
	}
	s, err := ParseSettings(data, path)
	if err != nil {
		return Settings{}, err
	}
	return s.WithEnv(getenv)
}

// maxConfigFile bounds the config file; it is a few KiB.
const maxConfigFile = 1 << 20

// ParseSettings reads a config file's content over the defaults. Errors name
// source and line.
func ParseSettings(data []byte, source string) (Settings, error) {
	s := DefaultSettings()
	if len(data) > maxConfigFile {
		return Settings{}, fmt.Errorf("config %s: larger than %d bytes", source, maxConfigFile)
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxConfigFile)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !ok || k == "" {
			return Settings{}, fmt.Errorf("config %s:%d: want key = value, got %q", source, n, clipText(line))
		}
		if prev, dup := seen[k]; dup {
			return Settings{}, fmt.Errorf("config %s:%d: %s already set on line %d", source, n, k, prev)
		}
		seen[k] = n
		if err := s.set(k, unquote(v)); err != nil {
			return Settings{}, fmt.Errorf("config %s:%d: %w", source, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Settings{}, fmt.Errorf("config %s: %w", source, err)
	}
	return s, nil
}

// WithEnv returns s with every DMS_<KEY> that getenv reports non-empty
// applied over it.
func (s Settings) WithEnv(getenv func(string) string) (Settings, error) {
	if getenv == nil {
		return s, nil
	}
	for _, k := range settingKeys {
		if v := strings.TrimSpace(getenv(EnvVar(k))); v != "" {
			if err := s.set(k, v); err != nil {
				return Settings{}, fmt.Errorf("environment %s: %w", EnvVar(k), err)
			}
		}
	}
	return s, nil
}

// set parses one key's value into s; an empty value restores the default.
func (s *Settings) set(key, v string) error {
	d := DefaultSettings()
	switch key {
	case "network":
		if v == "" {
			s.Network = d.Network
			return nil
		}
		if err := checkNetwork(v); err != nil {
			return err
		}
		s.Network = v
	case "listen":
		if v == "" {
			s.Listen = d.Listen
			return nil
		}
		addrs := splitList(v)
		for _, a := range addrs {
			if _, err := multiaddr.NewMultiaddr(a); err != nil {
				return fmt.Errorf("listen %q: not a multiaddr such as /ip4/0.0.0.0/tcp/4001: %v", clipText(a), err)
			}
		}
		s.Listen = addrs
	case "bootstrap":
		peers := splitList(v)
		for _, p := range peers {
			if _, err := peer.AddrInfoFromString(p); err != nil {
				return fmt.Errorf("bootstrap %q: want a multiaddr ending in /p2p/<peer ID>: %v", clipText(p), err)
			}
		}
		s.Bootstrap = peers
	case "swarm_key":
		s.SwarmKey = v
	case "reserve":
		r, err := resources.ParseReserve(v)
		if err != nil {
			return err
		}
		s.Reserve = r
	case "price":
		if v == "" {
			s.Price = capability.PriceInformation{}
			return nil
		}
		p, err := capability.ParsePrice(v)
		if err != nil {
			return err
		}
		s.Price = p
	case "log_level":
		if v == "" {
			s.LogLevel = d.LogLevel
			return nil
		}
		l, err := ParseLogLevel(v)
		if err != nil {
			return err
		}
		s.LogLevel = l
	default:
		return fmt.Errorf("unknown key %q; known keys: %s", clipText(key), strings.Join(settingKeys, ", "))
	}
	return nil
}

// ParseLogLevel reads debug, info, warn (warning) or error.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", clipText(s))
}

func checkNetwork(name string) error {
	if len(name) > 32 || strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return fmt.Errorf("network %q: want 1 to 32 characters of a-z 0-9 - _ .", clipText(name))
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = unquote(strings.TrimSpace(p)); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// unquote strips one pair of surrounding double quotes, for those who write
// key = "value".
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
