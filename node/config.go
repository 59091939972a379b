package node

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/resources"
)

// Config is everything New needs. Start from DefaultConfig or LocalConfig.
type Config struct {
	// Home is the node's directory: disk is measured on its filesystem and
	// the benchmark writes there. Required.
	Home string
	// Datastore holds the ledger, jobs and DHT records. The caller opens and
	// closes it (resources.OpenDatastore for a real node, a map datastore for
	// in-process networks). Required.
	Datastore ds.Batching
	// Key is the node's identity. Required.
	Key crypto.PrivKey
	// P2P options, applied after the preset's (p2p.DefaultConfig or
	// p2p.LocalConfig).
	P2P []p2p.Option
	// Orchestrator tunes bidding on both sides.
	Orchestrator orchestrator.Config
	// Machine, if set, is used instead of measuring the machine at start
	// (in-process networks share one measurement).
	Machine *resources.Machine
	// Reserve is what the owner keeps; offers and the monitor respect it.
	Reserve resources.Reserve
	// DefaultPrice is the price of a first offer that names none (the
	// config file's price).
	DefaultPrice capability.PriceInformation
	// MonitorInterval is how often machine use is sampled; 0 turns the
	// monitor off (in-process networks, where every node is the same machine).
	MonitorInterval time.Duration
	// Wasm, if set, is a sandbox shared with other in-process nodes, so a
	// module is compiled once per process rather than once per node. The
	// node does not close it.
	Wasm *executor.Wasm
	// WasmCacheDir keeps compiled modules on disk across restarts ("" : in
	// memory only). Unused when Wasm is set.
	WasmCacheDir string
	// CacheDir keeps the modules and inputs this node fetched as a
	// provider, by sha256, so a job it runs again fetches none of them; ""
	// is Home/cache/blobs. CacheBytes bounds it (least recently used go
	// first); 0 is DefaultCacheBytes.
	CacheDir   string
	CacheBytes int64
	// WorkDir holds each allocation's files while it runs (its inputs and
	// /outputs); "" is Home/work.
	WorkDir string
	// OutputsDir keeps the outputs of the jobs this node submitted, one
	// directory per job; "" is Home/outputs.
	OutputsDir string
	// MaxOutputBytes caps what one job may leave in /outputs (0:
	// orchestrator.MaxOutputSize, which is also the most it may be).
	MaxOutputBytes int64
	// Docker, if set, is the container executor (tests pass one with a fake
	// binary); nil makes one that uses the docker command line. A node
	// runs containers only once its preferences allow the docker executor.
	Docker *executor.Docker
	// Supervisor restarts failed allocations.
	Supervisor SupervisorStrategy
	// KeepFinished is how many ended allocations stay listed.
	KeepFinished int
	// KeepResults is how long a provider keeps an ended allocation's
	// result and outputs for its requester, beyond KeepFinished (up to four
	// times as many): a requester that was away (restarted, cut off)
	// collects them when it is back. 0 is DefaultKeepResults.
	KeepResults time.Duration
	// Metrics, if set, is the registry the node reports its metrics to,
	// with libp2p's and gossipsub's (see NewRegistry); nil gives the node a
	// registry of its own with only the node's metrics (in-process
	// networks, whose libp2p metrics would be shared process-wide).
	Metrics *prometheus.Registry
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger

	// wrapBackend, when set, stands between the bidding protocol and the
	// node: tests put a provider built to cheat there (export_test.go,
	// internal/cheat). Unexported, so that nothing outside the node's own
	// tests can make a node cheat.
	wrapBackend func(orchestrator.Backend, crypto.PrivKey) orchestrator.Backend
}

// DefaultConfig is for a real node on its own machine.
func DefaultConfig(home string) Config {
	return Config{
		Home:            home,
		Orchestrator:    orchestrator.DefaultConfig(),
		Reserve:         resources.DefaultReserve,
		MonitorInterval: resources.DefaultMonitorInterval,
		Supervisor:      DefaultSupervisorStrategy(),
		KeepFinished:    256,
		KeepResults:     DefaultKeepResults,
	}
}

// DefaultCacheBytes bounds the cache of fetched modules and inputs: 64 of
// the largest modules, or 16 of the largest inputs.
const DefaultCacheBytes = 1 << 30

// DefaultKeepResults: long enough for a requester's restart or a short
// outage, short next to the jobs a provider runs in a day.
const DefaultKeepResults = 10 * time.Minute

// LocalConfig is for nodes of a test network on one machine: loopback
// addresses, server-mode DHT, short bidding windows, no monitor (all nodes
// share the machine, so one node's job would shrink every other's offer).
func LocalConfig(home string) Config {
	c := DefaultConfig(home)
	c.P2P = []p2p.Option{p2p.WithConfig(p2p.LocalConfig())}
	c.Orchestrator = orchestrator.LocalConfig()
	c.MonitorInterval = 0
	return c
}

// Validate checks what New cannot start without.
func (c *Config) Validate() error {
	var errs []error
	if c.Home == "" {
		errs = append(errs, errors.New("home: required"))
	}
	if c.WorkDir == "" && c.Home != "" {
		c.WorkDir = filepath.Join(c.Home, "work")
	}
	if c.OutputsDir == "" && c.Home != "" {
		c.OutputsDir = filepath.Join(c.Home, "outputs")
	}
	if c.CacheDir == "" && c.Home != "" {
		c.CacheDir = filepath.Join(c.Home, "cache", "blobs")
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.CacheBytes < orchestrator.MaxModuleSize {
		errs = append(errs, fmt.Errorf("cache bytes %d: want 0 (the default, %d) or at least %d, the largest module", c.CacheBytes, DefaultCacheBytes, orchestrator.MaxModuleSize))
	}
	if c.Datastore == nil {
		errs = append(errs, errors.New("datastore: required"))
	}
	if c.Key == nil {
		errs = append(errs, errors.New("key: required"))
	}
	if err := c.Reserve.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("reserve: %w", err))
	}
	if c.MaxOutputBytes < 0 || c.MaxOutputBytes > orchestrator.MaxOutputSize {
		errs = append(errs, fmt.Errorf("max output bytes %d: want 0 to %d", c.MaxOutputBytes, orchestrator.MaxOutputSize))
	}
	if c.KeepResults == 0 {
		c.KeepResults = DefaultKeepResults
	}
	if c.KeepResults < 0 {
		errs = append(errs, fmt.Errorf("keep results %v: want 0 (the default, %v) or more", c.KeepResults, DefaultKeepResults))
	}
	if c.MonitorInterval < 0 {
		errs = append(errs, fmt.Errorf("monitor interval %v: want 0 (off) or more", c.MonitorInterval))
	}
	if c.Supervisor.MaxRestarts < 0 || c.Supervisor.Window < 0 || c.Supervisor.Backoff < 0 {
		errs = append(errs, fmt.Errorf("supervisor strategy %+v: no negative values", c.Supervisor))
	}
	return errors.Join(errs...)
}
