// Package home is the layout of a dms home ($DMS_HOME, default ~/.dms) in
// one place: the identity key, the config file and its settings, the
// datastore (whose lock is the one-node-per-home lock), the control socket,
// the compiled-module cache and the log. Settings are validated here, once,
// for the config file, the environment and the command line alike.
package home

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/resources"
)

// The files of a home ($DMS_HOME, default ~/.dms).
const (
	IdentityFile = "identity.key" // Ed25519 key, libp2p's MarshalPrivateKey format, 0600
	ConfigFile   = "config"       // settings, "key = value" lines, 0600
	DataDir      = "data"         // the datastore (pebble), 0700
	SocketFile   = "dms.sock"     // the control socket of the node running on the home, 0600
	LogFile      = "node.log"     // a test network node's stdout and stderr
)

// WasmCacheDir keeps compiled wasm modules across restarts, relative to the
// home.
var WasmCacheDir = filepath.Join("cache", "wasm")

// MaxSocketPath is the longest socket path every unix accepts (sun_path is
// 104 bytes on the BSDs and macOS, 108 on Linux, both with the NUL).
const MaxSocketPath = 103

// ErrNotInitialized means a directory is not (or not completely) a dms home.
var ErrNotInitialized = errors.New("home not initialised")

// Home is an initialised dms home directory.
type Home struct {
	Dir string
}

// DefaultDir is ~/.dms.
func DefaultDir() (string, error) {
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

// SocketPath is the control socket of the node running on the home.
func (h Home) SocketPath() string { return SocketPath(h.Dir) }

// SocketPath is the control socket of the home in dir.
func SocketPath(dir string) string { return filepath.Join(dir, SocketFile) }

// CheckSocketPath says why a unix socket cannot be made at path, if it
// cannot: its length is the only limit the home's layout imposes.
func CheckSocketPath(path string) error {
	if len(path) > MaxSocketPath {
		return fmt.Errorf("control socket path %s is %d bytes, longer than the %d a unix socket allows: use a home with a shorter path", path, len(path), MaxSocketPath)
	}
	return nil
}

// WasmCachePath is where compiled modules are kept.
func (h Home) WasmCachePath() string { return filepath.Join(h.Dir, WasmCacheDir) }

// LogPath is the log a test network node writes.
func (h Home) LogPath() string { return filepath.Join(h.Dir, LogFile) }

// InitReport says what Init did; nothing in Created and Tightened means
// the home was already complete and nothing changed.
type InitReport struct {
	Home      string   `json:"home"`
	Created   []string `json:"created,omitempty"`   // paths relative to Home
	Tightened []string `json:"tightened,omitempty"` // paths whose permissions were narrowed to the owner
	PeerID    string   `json:"peer_id"`
}

// Changed reports whether Init changed anything.
func (r InitReport) Changed() bool { return len(r.Created)+len(r.Tightened) > 0 }

// Init creates what is missing of a home in dir: the directory (0700), an
// identity key (0600), a config file with every key documented (0600) and
// the datastore directory (0700). What exists is kept; permissions that let
// group or others in are narrowed. Running it twice changes nothing.
func Init(dir string) (InitReport, error) {
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

// Open returns the home in dir, or ErrNotInitialized (with a hint to run
// dms init) when dir lacks its identity key or config file.
func Open(dir string) (Home, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Home{}, fmt.Errorf("open home %s: %w", dir, err)
	}
	h := Home{Dir: abs}
	for _, p := range []string{abs, h.IdentityPath(), h.ConfigPath()} {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return Home{}, fmt.Errorf("%s: %w (%s is missing): run dms init", abs, ErrNotInitialized, p)
		} else if errors.Is(err, fs.ErrPermission) {
			return Home{}, fmt.Errorf("open home %s: %w: it belongs to another user; run dms as that user, or pass --home with a home of your own", abs, err)
		} else if err != nil {
			return Home{}, fmt.Errorf("open home: %w", err)
		}
	}
	return h, nil
}

// Identity loads the node's private key.
func (h Home) Identity() (crypto.PrivKey, error) { return p2p.LoadIdentity(h.IdentityPath()) }

// OpenDatastore opens the home's datastore; resources.ErrHomeInUse when a
// node already has it open. The datastore's lock is the home's lock: while a
// node runs on the home, it alone writes the home's state.
func (h Home) OpenDatastore() (ds.Batching, error) {
	return resources.OpenDatastore(h.DataPath(), h.Dir)
}

// Settings reads the config file with DMS_* variables from getenv on top
// (see LoadSettings); a relative swarm_key is resolved against the home.
func (h Home) Settings(getenv func(string) string) (Settings, error) {
	s, err := LoadSettings(h.ConfigPath(), getenv)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return Settings{}, fmt.Errorf("%w: the config file belongs to another user; run dms as that user, or pass --home with a home of your own", err)
		}
		return Settings{}, &ConfigError{err: err}
	}
	if s.SwarmKey != "" && !filepath.IsAbs(s.SwarmKey) {
		s.SwarmKey = filepath.Join(h.Dir, s.SwarmKey)
	}
	return s, nil
}

// ErrBadConfig: the config file or a DMS_* variable holds a value that
// does not parse. The message names the file and line, or the variable.
var ErrBadConfig = errors.New("bad configuration")

// ConfigError is a setting that does not parse; errors.Is(err,
// ErrBadConfig) holds for it.
type ConfigError struct{ err error }

func (e *ConfigError) Error() string {
	return e.err.Error() + " (fix it in the config file or the environment)"
}
func (e *ConfigError) Unwrap() error        { return e.err }
func (e *ConfigError) Is(target error) bool { return target == ErrBadConfig }

// ShellQuote quotes s for a POSIX shell when it needs it, for the commands
// that messages suggest (dms --home DIR run).
func ShellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// PIDFile names the process of the node running on the home, and when it
// started. The datastore's lock is what keeps a second node out; this file
// is what is left to tell who held the home when a node died without
// stopping (kill -9, a crash, a power cut), since the kernel drops the lock
// with the process.
const PIDFile = "dms.pid"

// PIDPath is the node's PID file.
func (h Home) PIDPath() string { return filepath.Join(h.Dir, PIDFile) }

// NodeProcess is what the PID file says.
type NodeProcess struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// maxPIDFile bounds what ReadPID reads: the file is one short line.
const maxPIDFile = 256

// WritePID records this process as the home's node; only a node holding
// the datastore's lock calls it.
func (h Home) WritePID(started time.Time) error {
	line := fmt.Sprintf("%d %s\n", os.Getpid(), started.UTC().Format(time.RFC3339))
	tmp := h.PIDPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(line), 0o600); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := os.Rename(tmp, h.PIDPath()); err != nil {
		return errors.Join(fmt.Errorf("pid file: %w", err), os.Remove(tmp))
	}
	return nil
}

// ReadPID reads the PID file; fs.ErrNotExist when there is none.
func (h Home) ReadPID() (NodeProcess, error) {
	f, err := os.Open(h.PIDPath())
	if err != nil {
		return NodeProcess{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPIDFile))
	if err != nil {
		return NodeProcess{}, fmt.Errorf("pid file %s: %w", h.PIDPath(), err)
	}
	pidStr, when, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return NodeProcess{}, fmt.Errorf("pid file %s: %q is not \"PID STARTED\"", h.PIDPath(), clipString(string(b), 40))
	}
	p := NodeProcess{PID: pid}
	p.Started, _ = time.Parse(time.RFC3339, when) // a missing time is no reason to distrust the PID
	return p, nil
}

// RemovePID removes the PID file, if there is one.
func (h Home) RemovePID() error {
	if err := os.Remove(h.PIDPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// LockHolder is the process holding the home's datastore lock, 0 when
// none does (or the system cannot tell). It must not be asked by a process
// that has the datastore open itself: see resources.LockHolder.
func (h Home) LockHolder() int { return resources.LockHolder(h.DataPath()) }

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
