// Package node is the Node actor: it ties the ledger, the machine monitor,
// the p2p host, the bidding protocol and the executors together, and runs
// the allocations this node wins. It is created once the home is known and
// runs for as long as dms runs.
//
// The node is the only writer of its state while it runs: the offer
// (Onboard, Offboard), the benchmark, the preferences, holds and locks all
// change through its methods, never through its ledger from outside.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-datastore/namespace"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dms-project/dms/cache"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/internal/nodehook"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/resources"
)

// ErrNotFound: no allocation or job of that ID on this node.
var ErrNotFound = orchestrator.ErrNotFound

// ErrStopping: the node is shutting down and takes no new work.
var ErrStopping = errors.New("the node is stopping")

// The protocol runs over the node's libp2p host.
var _ orchestrator.Network = (*p2p.Host)(nil)

// Node is one dms node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	ledger  *resources.Ledger
	onboard *onboarding.Onboarder
	machine resources.Machine
	monitor *resources.Monitor
	host    *p2p.Host
	orch    *orchestrator.Service
	wasm    *executor.Wasm
	ownWasm bool
	docker  *executor.Docker
	// native is made on first use: most nodes never run a host command,
	// and it probes cgroups when made.
	nativeOnce sync.Once
	native     *executor.Native
	nativeErr  error
	jobs       *jobs
	blobs      *blobCache // what this node fetched as a provider (cache.go)
	prefs      atomic.Pointer[orchestrator.Preferences]
	started    time.Time

	registry *prometheus.Registry
	metrics  *metrics

	// offerMu serialises the calls that change the offer, so that a forced
	// offboarding that waits for allocations is not overtaken by an onboard.
	offerMu sync.Mutex
	// offboarding is set (under mu) while a forced offboarding stops the
	// allocations: the node bids for nothing and starts nothing meanwhile.
	offboarding atomic.Bool

	mu       sync.Mutex
	allocs   map[string]*allocation
	finished []string // ended allocation IDs, oldest first

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New starts a node. ctx bounds the start only: what the node starts runs
// until Close. If New fails, nothing it started is left running.
func New(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	nctx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, log: log.With("subsystem", "node"), allocs: map[string]*allocation{}, ctx: nctx, cancel: cancel, started: time.Now()}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
		}
	}()

	if n.ledger, err = resources.NewLedger(cfg.Datastore, resources.WithLedgerLogger(log.With("subsystem", "ledger"))); err != nil {
		return nil, err
	}
	measureOpt := onboarding.WithLogger(log.With("subsystem", "onboarding"))
	if cfg.Machine != nil {
		n.machine = *cfg.Machine
		// In-process networks share one measurement; offers are checked
		// against it rather than a fresh one per call.
		measureOpt = onboarding.WithMachine(n.machine)
	} else if n.machine, err = resources.Measure(ctx, cfg.Home); err != nil {
		return nil, fmt.Errorf("measure machine: %w", err)
	}
	if n.docker = cfg.Docker; n.docker == nil {
		if n.docker, err = executor.NewDocker(executor.WithLogger(log.With("subsystem", "docker"))); err != nil {
			return nil, err
		}
	}
	if n.onboard, err = onboarding.New(n.ledger, cfg.Home, measureOpt, onboarding.WithReserve(cfg.Reserve), onboarding.WithDocker(n.docker),
		onboarding.WithDefaultPrice(cfg.DefaultPrice), onboarding.WithLogger(log.With("subsystem", "onboarding"))); err != nil {
		return nil, err
	}
	if err := n.recoverLocks(); err != nil {
		return nil, err
	}
	prefs, err := onboarding.StoredPreferences(n.ledger)
	if err != nil {
		return nil, err
	}
	n.prefs.Store(&prefs)
	if n.jobs, err = newJobs(ctx, cfg.Datastore, n.log); err != nil {
		return nil, err
	}
	if cfg.Wasm != nil {
		n.wasm = cfg.Wasm
	} else {
		opts := []executor.Option{executor.WithLogger(log.With("subsystem", "wasm")), executor.WithMountRoots(cfg.WorkDir)}
		if cfg.WasmCacheDir != "" {
			opts = append(opts, executor.WithCompilationCacheDir(cfg.WasmCacheDir))
		}
		if n.wasm, err = executor.NewWasm(opts...); err != nil {
			return nil, err
		}
		n.ownWasm = true
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	store, err := cache.Open(cfg.CacheDir, cfg.CacheBytes, log.With("subsystem", "cache"))
	if err != nil {
		return nil, err
	}
	n.blobs = newBlobCache(store)
	if cfg.MonitorInterval > 0 {
		if err := n.startMonitor(); err != nil {
			return nil, err
		}
	}
	opts := slices.Clone(cfg.P2P)
	if cfg.Metrics != nil {
		n.registry = cfg.Metrics
		opts = append(opts, p2p.WithMetrics(cfg.Metrics))
	} else {
		n.registry = prometheus.NewRegistry()
	}
	opts = append(opts,
		p2p.WithPrivKey(cfg.Key),
		p2p.WithDatastore(namespace.Wrap(cfg.Datastore, dhtPrefix)),
		p2p.WithLogger(log))
	if n.host, err = p2p.New(ctx, opts...); err != nil {
		return nil, err
	}
	ocfg := cfg.Orchestrator
	ocfg.Logger = log
	if ocfg.ProviderRecords, err = loadProviderRecords(ctx, cfg.Datastore, n.log); err != nil {
		return nil, err
	}
	ocfg.SaveRecord = providerRecordSaver(cfg.Datastore)
	var be orchestrator.Backend = backend{n}
	if cfg.wrapBackend != nil {
		be = cfg.wrapBackend(be, cfg.Key)
	} else if nodehook.Backend != nil {
		be = nodehook.Backend(be, cfg.Key)
	}
	if n.orch, err = orchestrator.NewService(n.host, cfg.Key, be, ocfg); err != nil {
		return nil, err
	}
	if err := n.registerMetrics(n.registry); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	// Last: nothing after it can fail, and Close waits for what it starts.
	n.resumeJobs()
	return n, nil
}

var dhtPrefix = datastoreKey("/dht")

// recoverLocks ends the allocations a previous run of the node left locked:
// their processes died with it, so each is reported failed and its lock
// released, in the same batch as its record.
func (n *Node) recoverLocks() error {
	for _, lk := range n.ledger.Locks() {
		var info AllocationInfo
		if err := json.Unmarshal(lk.Meta, &info); err != nil || info.ID == "" {
			info = AllocationInfo{ID: lk.ID, Capability: lk.Capability, Created: lk.Since}
		}
		info.State = orchestrator.StateFailed
		info.Ended = time.Now()
		info.Result = &orchestrator.Result{State: orchestrator.StateFailed, ExitCode: -1, Reason: "the node stopped while the allocation ran"}
		if err := n.ledger.Unlock(lk.ID); err != nil {
			return fmt.Errorf("release lock of %s left by the last run: %w", lk.ID, err)
		}
		a := &allocation{info: info, changed: make(chan struct{}), done: make(chan struct{}), finished: true}
		a.emitLocked(orchestrator.Event{Kind: orchestrator.EventResult, Time: info.Ended, Result: info.Result})
		close(a.done)
		n.allocs[info.ID] = a
		n.finished = append(n.finished, info.ID)
		n.log.Warn("allocation interrupted by a restart", "allocation", info.ID, "job", info.JobID)
	}
	return nil
}

// startMonitor samples the machine for the node's whole life (not the
// start's: a context that bounds New must not stop it).
func (n *Node) startMonitor() error {
	total := n.machine.Total()
	reserve := n.cfg.Reserve.Resolve(total)
	m, err := resources.NewMonitor(total, reserve, resources.NewHostSampler(n.cfg.Home),
		resources.WithInterval(n.cfg.MonitorInterval),
		// What our allocations have locked is counted as ours: an upper
		// bound of what they use, so the owner's share is never overstated.
		resources.WithOwnUsage(func() resources.Usage {
			l := n.ledger.Locked()
			return resources.Usage{CPU: l.CPU.MilliCores, Memory: l.Memory, Disk: l.Disk}
		}),
		resources.WithOnSample(func(s resources.Sample) { n.ledger.SetCeiling(s.Ceiling) }),
		resources.WithMonitorLogger(n.log.With("subsystem", "monitor")))
	if err != nil {
		return err
	}
	if err := m.Start(n.ctx); err != nil {
		return err
	}
	n.monitor = m
	return nil
}

// Close stops the node: no more bids, running allocations cancelled and
// their locks released, then the host. It waits for every goroutine it
// started. The datastore stays open: it is the caller's.
func (n *Node) Close() error {
	var errs []error
	n.closeOnce.Do(func() {
		if n.orch != nil {
			errs = append(errs, n.orch.Close())
		}
		n.cancel()
		n.mu.Lock()
		running := make([]*allocation, 0, len(n.allocs))
		for _, a := range n.allocs {
			running = append(running, a)
		}
		n.mu.Unlock()
		for _, a := range running {
			<-a.done
		}
		n.wg.Wait()
		if n.host != nil {
			errs = append(errs, n.host.Close())
		}
		if n.monitor != nil {
			errs = append(errs, n.monitor.Close())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if n.wasm != nil && n.ownWasm {
			errs = append(errs, n.wasm.Close(ctx))
		}
		n.nativeOnce.Do(func() {}) // no native executor is made from here on
		if n.native != nil {
			errs = append(errs, n.native.Close(ctx))
		}
		if n.docker != nil && n.cfg.Docker == nil {
			errs = append(errs, n.docker.Close(ctx))
		}
	})
	return errors.Join(errs...)
}

// Stopping reports whether Close has begun.
func (n *Node) Stopping() bool { return n.ctx.Err() != nil }

// ID is the node's libp2p peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Network is the ID of the network the node belongs to.
func (n *Node) Network() string { return n.host.Network() }

// Addrs are the node's full addresses (with /p2p/ID).
func (n *Node) Addrs() []multiaddr.Multiaddr { return n.host.Addrs() }

// AddrInfo is the node's ID and addresses, for another node to bootstrap
// from.
func (n *Node) AddrInfo() peer.AddrInfo { return n.host.AddrInfo() }

// Machine is what was measured at start.
func (n *Node) Machine() resources.Machine { return n.machine }

// PeerInfo is one peer the node holds a connection to.
type PeerInfo struct {
	ID peer.ID `json:"peer_id"`
	// Addrs are the remote ends of our connections to it.
	Addrs []string `json:"addrs"`
	// Direction says who dialled the oldest connection: "inbound" (the
	// peer), "outbound" (we) or "unknown".
	Direction string `json:"direction"`
	// OnTopic is set when the peer has joined the bid-request topic, so it
	// hears our jobs and we hear its.
	OnTopic bool `json:"on_topic"`
	// Latency is libp2p's moving average of ping times; 0 if none yet.
	Latency seconds.Duration `json:"latency,omitempty"`
}

// Peers lists the connected peers, by ID.
func (n *Node) Peers() []PeerInfo {
	onTopic := map[peer.ID]bool{}
	for _, p := range n.orch.Topic().ListPeers() {
		onTopic[p] = true
	}
	out := []PeerInfo{}
	for _, p := range n.host.Peers() {
		addrs, dir, latency := n.host.ConnInfo(p)
		out = append(out, PeerInfo{ID: p, Addrs: addrs, Direction: dir, OnTopic: onTopic[p], Latency: seconds.Duration(latency)})
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	return out
}

// Status summarises the node for `dms status`.
type Status struct {
	ID          peer.ID               `json:"peer_id"`
	Network     string                `json:"network"`
	Addrs       []string              `json:"addrs"`
	Peers       int                   `json:"peers"`
	TopicPeers  int                   `json:"topic_peers"`
	Onboarded   bool                  `json:"onboarded"`
	Registered  capability.Capability `json:"registered"`
	Available   capability.Capability `json:"available"`
	Allocations int                   `json:"allocations_running"`
	Jobs        int                   `json:"jobs_in_flight"`
	Uptime      seconds.Duration      `json:"uptime"`
	// Bootstrap is how many bootstrap peers the node was started with; 0
	// means it started a network of its own and waits to be dialled.
	Bootstrap int `json:"bootstrap_peers"`
	// RequestsSeen counts the bid requests (probes included) this node
	// has heard on gossip.
	RequestsSeen int64 `json:"requests_seen"`
}

// Status returns the node's current summary.
func (n *Node) Status() Status {
	s := Status{
		ID: n.ID(), Network: n.host.Network(), Peers: len(n.host.Peers()), TopicPeers: n.topicPeers(),
		Onboarded: n.Onboarded(), Registered: n.ledger.Registered(), Available: n.ledger.Available(), Uptime: seconds.Duration(time.Since(n.started)),
		Bootstrap:    len(n.host.Bootstrap()),
		RequestsSeen: n.orch.Stats().RequestsSeen,
	}
	for _, a := range n.host.Addrs() {
		s.Addrs = append(s.Addrs, a.String())
	}
	for _, a := range n.Allocations() {
		if !a.State.Final() {
			s.Allocations++
		}
	}
	for _, j := range n.jobs.list() {
		if !j.State.Final() {
			s.Jobs++
		}
	}
	return s
}
