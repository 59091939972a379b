package home

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/resources"
	"github.com/libp2p/go-libp2p/core/peer"
)

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
	// AbandonGrace is how long this node, as a provider, runs an
	// allocation whose requester stopped following it before it stops it;
	// 0 is the node's default (15s, 3s with dms run --local).
	AbandonGrace time.Duration `json:"abandon_grace,omitempty"`
	// CacheSize bounds the cache of modules and inputs this node fetched
	// as a provider; 0 is the node's default (1GiB).
	CacheSize uint64 `json:"cache_size,omitempty"`
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
var settingKeys = []string{"network", "listen", "bootstrap", "swarm_key", "reserve", "price", "log_level", "abandon_grace", "cache_size"}

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

# abandon_grace is how long an allocation this node runs for another peer
# goes on once its requester has stopped following it (killed, cut off, or
# gone elsewhere), before it is stopped and its resources freed: 1s to 24h.
# Empty: 15s.
abandon_grace =

# cache_size bounds what this node keeps of the modules and inputs it fetched
# to run others' jobs, so that running one again fetches nothing; the least
# recently used go first. 16MiB (the largest module) to 1TiB. Empty: 1GiB.
cache_size =
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
		if err := ParseNetwork(v); err != nil {
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
			if err := ParseListen(a); err != nil {
				return err
			}
		}
		s.Listen = addrs
	case "bootstrap":
		peers := splitList(v)
		for _, p := range peers {
			if err := ParseBootstrap(p); err != nil {
				return err
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
	case "abandon_grace":
		if v == "" {
			s.AbandonGrace = 0
			return nil
		}
		d, err := ParseAbandonGrace(v)
		if err != nil {
			return err
		}
		s.AbandonGrace = d
	case "cache_size":
		if v == "" {
			s.CacheSize = 0
			return nil
		}
		n, err := ParseCacheSize(v)
		if err != nil {
			return err
		}
		s.CacheSize = n
	default:
		return fmt.Errorf("unknown key %q; known keys: %s", clipText(key), strings.Join(settingKeys, ", "))
	}
	return nil
}

// ParseCacheSize reads a size of 16MiB (the largest module a job may
// send) to 1TiB.
func ParseCacheSize(v string) (uint64, error) {
	n, err := capability.ParseBytes(v)
	if err != nil || n < 16*capability.MiB || n > capability.TiB {
		return 0, fmt.Errorf("cache size %q: want a size of 16MiB to 1TiB, e.g. 1GiB or 512MiB", clipText(v))
	}
	return n, nil
}

// ParseAbandonGrace reads a duration of 1s to 24h.
func ParseAbandonGrace(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < time.Second || d > 24*time.Hour {
		return 0, fmt.Errorf("abandon grace %q: want a duration of 1s to 24h, e.g. 15s or 2m", clipText(v))
	}
	return d, nil
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

// ParseNetwork checks a network ID: 1 to 32 characters of a-z 0-9 - _ .
// (the rule is p2p's, where the ID becomes part of protocol names).
func ParseNetwork(name string) error {
	if err := p2p.ValidateNetwork(name); err != nil {
		return fmt.Errorf("network %q: want 1 to 32 characters of a-z 0-9 - _ .", clipText(name))
	}
	return nil
}

// ParseListen checks one listen address.
func ParseListen(addr string) error {
	if _, err := p2p.ParseListenAddrs(addr); err != nil {
		return fmt.Errorf("listen %q: want a multiaddr such as /ip4/0.0.0.0/tcp/4001 or /ip4/0.0.0.0/udp/4001/quic-v1", clipText(addr))
	}
	return nil
}

// ParseBootstrap checks one bootstrap peer address.
func ParseBootstrap(addr string) error {
	if _, err := peer.AddrInfoFromString(addr); err != nil {
		return fmt.Errorf("bootstrap %q: want a multiaddr ending in /p2p/<peer ID>, e.g. /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...", clipText(addr))
	}
	return nil
}

// ParseSwarmKey checks a swarm key file and returns its absolute path;
// relative paths are resolved against base (the home, or the working
// directory for a flag).
func ParseSwarmKey(path, base string) (string, error) {
	if path == "" {
		return "", errors.New("swarm key: want the path of a swarm key file")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(base, path)
	}
	if _, err := p2p.LoadSwarmKey(path); err != nil {
		return "", err
	}
	return path, nil
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

// SetConfig sets keys of the home's config file in place, keeping its
// comments and every other line: a key's line is rewritten, a key with no
// line is appended. The result must still parse. A test network records
// its network, bootstrap peers, swarm key and listen address this way, so
// that dms run on one of its homes later rejoins the same network.
func (h Home) SetConfig(kv map[string]string) error {
	data, err := os.ReadFile(h.ConfigPath())
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	done := map[string]bool{}
	for i, line := range lines {
		k, _, ok := strings.Cut(line, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if v, set := kv[k]; ok && set && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			lines[i] = k + " = " + v
			done[k] = true
		}
	}
	for _, k := range settingKeys {
		if v, set := kv[k]; set && !done[k] {
			lines = append(lines, k+" = "+v)
			done[k] = true
		}
	}
	for k := range kv {
		if !done[k] {
			return fmt.Errorf("config: unknown key %q; known keys: %s", k, strings.Join(settingKeys, ", "))
		}
	}
	out := []byte(strings.Join(lines, "\n") + "\n")
	if _, err := ParseSettings(out, h.ConfigPath()); err != nil {
		return err
	}
	tmp := h.ConfigPath() + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := os.Rename(tmp, h.ConfigPath()); err != nil {
		return errors.Join(fmt.Errorf("config: %w", err), os.Remove(tmp))
	}
	return nil
}
