package testnet

// The record of a process test network, DIR/testnet.json: what `status`
// and `down` find the network by, and what claims DIR while it runs.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dms-project/dms/home"
)

// Files of a test network directory.
const (
	RecordFile   = "testnet.json" // the record: network, nodes, pids, addresses
	SwarmKeyFile = "swarm.key"
)

// DefaultDir is $TMPDIR/dms-testnet-<uid>: one per user, so users of one
// machine do not collide.
func DefaultDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("dms-testnet-%d", os.Getuid()))
}

// ErrNotUp: DIR holds no record of a test network.
var ErrNotUp = errors.New("no test network is up")

// Record is DIR/testnet.json.
type Record struct {
	Network  string    `json:"network"`
	Dir      string    `json:"dir"`
	SwarmKey string    `json:"swarm_key"`
	Binary   string    `json:"binary"`
	Started  time.Time `json:"started"`
	Nodes    []Process `json:"nodes"`
	// UpPID is the `dms testnet up` still starting the network; 0 once it
	// is up. A live UpPID claims DIR as much as a live node does.
	UpPID int `json:"up_pid,omitempty"`
	// Containers: each node runs in a container of Image on the Docker
	// network DockerNetwork, with an address of its own.
	Containers    bool   `json:"containers,omitempty"`
	DockerNetwork string `json:"docker_network,omitempty"`
	Image         string `json:"image,omitempty"`
}

// Process is one node process of a test network.
type Process struct {
	Name   string   `json:"name"`
	Home   string   `json:"home"`
	Log    string   `json:"log"`
	PID    int      `json:"pid"`
	PeerID string   `json:"peer_id,omitempty"`
	Addrs  []string `json:"addrs,omitempty"`
	// Container is the node's container, in a container network.
	Container string `json:"container,omitempty"`
}

// RecordPath is the record of the test network in dir.
func RecordPath(dir string) string { return filepath.Join(dir, RecordFile) }

// Read reads DIR's record; ErrNotUp when there is none.
func Read(dir string) (*Record, error) {
	b, err := os.ReadFile(RecordPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNotUp, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("test network record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("test network record %s: %w", RecordPath(dir), err)
	}
	return &r, nil
}

// write replaces the record atomically, so a reader never sees half of it.
func (r *Record) write() error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(r.Dir, ".testnet-*.json")
	if err != nil {
		return fmt.Errorf("test network record: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	err = errors.Join(err, tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), RecordPath(r.Dir))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("test network record: %w", err)
	}
	return nil
}

// Live returns the nodes whose process still runs.
func (r *Record) Live() []Process {
	var out []Process
	for _, n := range r.Nodes {
		if nodeAlive(n.PID, n.Home) {
			out = append(out, n)
		}
	}
	return out
}

// claimed reports whether a live process holds DIR: a node, or an `up`
// still starting them.
func (r *Record) claimed() bool {
	return len(r.Live()) > 0 || (r.UpPID > 0 && r.UpPID != os.Getpid() && ProcessAlive(r.UpPID))
}

// claimTestnetDir makes sure no test network runs in dir and claims it by
// creating the record (exclusively, so two `up` cannot both win).
func claimTestnetDir(dir string) (*Record, error) {
	old, err := Read(dir)
	switch {
	case err == nil && old.claimed():
		return nil, fmt.Errorf("a test network is already up in %s (network %s, %d of %d nodes running); stop it first with: dms testnet down --dir %s",
			dir, old.Network, len(old.Live()), len(old.Nodes), home.ShellQuote(dir))
	case err == nil:
		// Left by a network whose processes are all gone (a reboot, a kill).
		if err := os.Remove(RecordPath(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	case !errors.Is(err, ErrNotUp):
		return nil, err
	}
	rec := &Record{Dir: dir, Started: time.Now().UTC(), UpPID: os.Getpid()}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(RecordPath(dir), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("another dms testnet up is starting a network in %s", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("test network record: %w", err)
	}
	_, err = f.Write(b)
	return rec, errors.Join(err, f.Close())
}
