// Package node is the Node actor: it ties the ledger, the machine monitor,
// the p2p host, the bidding protocol and the executors together, and runs
// the allocations this node wins. It is created once the home is known and
// runs for as long as dms runs.
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-datastore/namespace"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/resources"
)

// Interface is the Node as the specification names it.
type Interface interface {
	ID() peer.ID
	Allocation(id string) (AllocationInfo, bool)
	AllocationStatus(id string) (orchestrator.State, error)
	RouteToAllocation(id string, msg Message) error
	BenchmarkCapability(ctx context.Context, opts ...resources.BenchmarkOption) (resources.Benchmark, error)
	SetRegisteredCapability(c capability.Capability) error
	RegisteredCapability() capability.Capability
	SetAvailableCapability(c capability.Capability)
	AvailableCapability() capability.Capability
	LockCapability(id string, c capability.Capability, until time.Time) error
	LockedCapabilities() []resources.Lock
	SetPreferences(p orchestrator.Preferences) error
	Preferences() orchestrator.Preferences
	RegisteredBids(jobID string) []orchestrator.Bid
	StartAllocation(inv *orchestrator.Invocation) (string, error)
}

var (
	_ Interface            = (*Node)(nil)
	_ orchestrator.Backend = (*Node)(nil)
)

// ErrNotFound: no allocation or job of that ID on this node.
var ErrNotFound = orchestrator.ErrNotFound

// Node is one dms node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	ledger  *resources.Ledger
	machine resources.Machine
	monitor *resources.Monitor
	host    *p2p.Host
	orch    *orchestrator.Service
	wasm    *executor.Wasm
	ownWasm bool
	native  *executor.Native
	jobs    *jobs
	prefs   atomic.Pointer[orchestrator.Preferences]
	started time.Time

	mu       sync.Mutex
	allocs   map[string]*allocation
	finished []string // ended allocation IDs, oldest first

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New starts a node. ctx bounds the start only. If New fails, nothing it
// started is left running.
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
	if cfg.Machine != nil {
		n.machine = *cfg.Machine
	} else if n.machine, err = resources.Measure(ctx, cfg.Home); err != nil {
		return nil, fmt.Errorf("measure machine: %w", err)
	}
	if err := n.recoverLocks(); err != nil {
		return nil, err
	}
	prefs := orchestrator.DefaultPreferences()
	if b := n.ledger.Preferences(); len(b) > 0 {
		if err := json.Unmarshal(b, &prefs); err != nil {
			return nil, fmt.Errorf("stored preferences: %w", err)
		}
	}
	n.prefs.Store(&prefs)
	if n.jobs, err = newJobs(ctx, cfg.Datastore, n.log); err != nil {
		return nil, err
	}
	if cfg.Wasm != nil {
		n.wasm = cfg.Wasm
	} else {
		opts := []executor.Option{executor.WithLogger(log.With("subsystem", "wasm"))}
		if cfg.WasmCacheDir != "" {
			opts = append(opts, executor.WithCompilationCacheDir(cfg.WasmCacheDir))
		}
		if n.wasm, err = executor.NewWasm(opts...); err != nil {
			return nil, err
		}
		n.ownWasm = true
	}
	if n.native, err = executor.NewNative(cfg.AllowNative); err != nil {
		return nil, err
	}
	if cfg.MonitorInterval > 0 {
		if err := n.startMonitor(ctx); err != nil {
			return nil, err
		}
	}
	opts := append(slices.Clone(cfg.P2P),
		p2p.WithPrivKey(cfg.Key),
		p2p.WithDatastore(namespace.Wrap(cfg.Datastore, dhtPrefix)),
		p2p.WithLogger(log))
	if n.host, err = p2p.New(ctx, opts...); err != nil {
		return nil, err
	}
	ocfg := cfg.Orchestrator
	ocfg.Logger = log
	if n.orch, err = orchestrator.NewService(n.host, cfg.Key, n, ocfg); err != nil {
		return nil, err
	}
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

func (n *Node) startMonitor(ctx context.Context) error {
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
	if err := m.Start(ctx); err != nil {
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
		if n.native != nil {
			errs = append(errs, n.native.Close(ctx))
		}
	})
	return errors.Join(errs...)
}

// ID is the node's libp2p peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Host is the node's p2p host.
func (n *Node) Host() *p2p.Host { return n.host }

// Addrs are the node's full addresses (with /p2p/ID).
func (n *Node) Addrs() []multiaddr.Multiaddr { return n.host.Addrs() }

// Machine is what was measured at start.
func (n *Node) Machine() resources.Machine { return n.machine }

// Ledger is the node's capability ledger.
func (n *Node) Ledger() *resources.Ledger { return n.ledger }

// Orchestrator is the bidding protocol service.
func (n *Node) Orchestrator() *orchestrator.Service { return n.orch }

// Status summarises the node for `dms status`.
type Status struct {
	ID          peer.ID               `json:"id"`
	Network     string                `json:"network"`
	Addrs       []string              `json:"addrs"`
	Peers       int                   `json:"peers"`
	TopicPeers  int                   `json:"topic_peers"`
	Onboarded   bool                  `json:"onboarded"`
	Registered  capability.Capability `json:"registered"`
	Available   capability.Capability `json:"available"`
	Allocations int                   `json:"allocations_running"`
	Jobs        int                   `json:"jobs_in_flight"`
	Uptime      time.Duration         `json:"uptime"`
}

// Status returns the node's current summary.
func (n *Node) Status() Status {
	s := Status{
		ID: n.ID(), Network: n.host.Network(), Peers: len(n.host.Peers()), TopicPeers: len(n.orch.Topic().ListPeers()),
		Onboarded: n.Onboarded(), Registered: n.ledger.Registered(), Available: n.ledger.Available(), Uptime: time.Since(n.started),
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
		if !j.Final() {
			s.Jobs++
		}
	}
	return s
}

// Onboarded reports whether the node offers anything.
func (n *Node) Onboarded() bool { return !n.ledger.Registered().IsZero() }

// Preferences returns the node's preferences.
func (n *Node) Preferences() orchestrator.Preferences { return *n.prefs.Load() }

// SetPreferences validates, persists and applies preferences.
func (n *Node) SetPreferences(p orchestrator.Preferences) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("preferences: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := n.ledger.SetPreferences(b); err != nil {
		return err
	}
	n.prefs.Store(&p)
	return nil
}

// RegisteredCapability is the node's offer.
func (n *Node) RegisteredCapability() capability.Capability { return n.ledger.Registered() }

// SetRegisteredCapability sets the offer directly (onboarding validates it
// against the machine first; see the onboarding package).
func (n *Node) SetRegisteredCapability(c capability.Capability) error { return n.ledger.Register(c) }

// AvailableCapability is what can still be held or locked.
func (n *Node) AvailableCapability() capability.Capability { return n.ledger.Available() }

// SetAvailableCapability caps what the node may hand out, as the monitor
// does when the machine gets busy.
func (n *Node) SetAvailableCapability(c capability.Capability) { n.ledger.SetCeiling(c) }

// LockCapability places the short hold a bid rests on; StartAllocation
// makes it firm.
func (n *Node) LockCapability(id string, c capability.Capability, until time.Time) error {
	return n.ledger.Hold(id, c, until)
}

// LockedCapabilities lists the firm locks.
func (n *Node) LockedCapabilities() []resources.Lock { return n.ledger.Locks() }

// BenchmarkCapability measures the machine and stores the score, which
// becomes part of every bid.
func (n *Node) BenchmarkCapability(ctx context.Context, opts ...resources.BenchmarkOption) (resources.Benchmark, error) {
	b, err := resources.BenchmarkCapability(ctx, n.cfg.Home, opts...)
	if err != nil {
		return b, err
	}
	return b, n.ledger.SetBenchmark(b)
}

// RegisteredBids are the bids this node placed for a job.
func (n *Node) RegisteredBids(jobID string) []orchestrator.Bid { return n.orch.RegisteredBids(jobID) }

// Offer implements orchestrator.Backend.
func (n *Node) Offer() (capability.Capability, capability.PriceInformation, float64) {
	reg := n.ledger.Registered()
	score := reg.CPU.Score
	if b, ok := n.ledger.Benchmark(); ok {
		score = b.Score
	}
	avail := n.ledger.Available()
	avail.CPU.Arch, avail.CPU.Model, avail.CPU.ClockMHz = n.machine.CPU.Arch, n.machine.CPU.Model, n.machine.CPU.ClockMHz
	return avail, reg.Price, score
}

// Load implements orchestrator.Backend: the share of the offer that is
// held or locked, in its tightest dimension.
func (n *Node) Load() float64 {
	s := n.ledger.Snapshot()
	used, err := s.Held.Add(s.Locked)
	if err != nil {
		return 1
	}
	frac := func(u, r uint64) float64 {
		if r == 0 {
			return 0
		}
		return float64(u) / float64(r)
	}
	return max(frac(used.CPU.MilliCores, s.Registered.CPU.MilliCores), frac(used.Memory, s.Registered.Memory), frac(used.Disk, s.Registered.Disk))
}

// Hold implements orchestrator.Backend.
func (n *Node) Hold(jobID string, need capability.Capability, expires time.Time) error {
	return n.ledger.Hold(jobID, need, expires)
}

// ReleaseHold implements orchestrator.Backend.
func (n *Node) ReleaseHold(jobID string) bool { return n.ledger.ReleaseHold(jobID) }

// Accept implements orchestrator.Backend: the hold becomes a lock and the
// allocation starts.
func (n *Node) Accept(inv *orchestrator.Invocation) (string, error) { return n.StartAllocation(inv) }

// StartAllocation turns the job's hold into a lock, written in one batch
// with the allocation record, and starts the allocation.
func (n *Node) StartAllocation(inv *orchestrator.Invocation) (string, error) {
	ex, err := n.executorFor(inv.Job.Executor)
	if err != nil {
		return "", err
	}
	spec := executor.Spec{
		Kind: ex.Kind(), Module: inv.Job.Module, Command: inv.Job.Command, Args: inv.Job.Args,
		Env: inv.Job.Env, Stdin: inv.Job.Stdin, MemoryBytes: inv.Job.Requirements.Memory, Timeout: inv.Job.Duration,
	}
	if err := spec.Validate(); err != nil {
		return "", err
	}
	if err := n.checkMachine(inv.Job.Requirements); err != nil {
		return "", err
	}
	id := "alloc-" + randomHex(8)
	a := newAllocation(id, inv, inv.Bid.Requester, time.Now())
	meta, err := json.Marshal(a.Info())
	if err != nil {
		return "", err
	}
	if err := n.ledger.Promote(inv.Bid.JobID, id, meta); err != nil {
		return "", fmt.Errorf("lock capability: %w", err)
	}
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		_ = n.ledger.Unlock(id)
		return "", errors.New("node is shutting down")
	}
	n.allocs[id] = a
	n.mu.Unlock()
	n.log.Info("allocation started", "allocation", id, "job", inv.Job.ID, "requester", inv.Bid.Requester, "capability", inv.Job.Requirements.String())
	go a.run(n.ctx, ex, spec, Supervisor{Strategy: n.cfg.Supervisor}, func(res *orchestrator.Result, stats Statistics) {
		// Locks are released whatever way the allocation ends.
		if err := n.ledger.Unlock(id); err != nil && !errors.Is(err, resources.ErrUnknownLock) {
			n.log.Error("release lock", "allocation", id, "err", err)
		}
		n.log.Info("allocation ended", "allocation", id, "state", res.State, "exit", res.ExitCode, "reason", res.Reason, "restarts", stats.Restarts)
		n.retire(id)
	})
	return id, nil
}

// checkMachine looks at the machine once more before an allocation starts:
// the monitor's ceiling may have dropped since the bid.
func (n *Node) checkMachine(need capability.Capability) error {
	snap := n.ledger.Snapshot()
	if snap.Ceiling == nil {
		return nil
	}
	room, err := snap.Ceiling.Subtract(snap.Locked)
	if err == nil {
		// This job's own hold is part of Held; everything else held competes.
		others, _ := snap.Held.Subtract(need)
		room, err = room.Subtract(others)
	}
	if err != nil || !need.Fits(room) {
		return fmt.Errorf("the machine no longer has room for %s (the host's own use grew since the bid)", need)
	}
	return nil
}

func (n *Node) executorFor(kind string) (executor.Executor, error) {
	switch kind {
	case orchestrator.ExecutorWasm:
		return n.wasm, nil
	case orchestrator.ExecutorNative:
		if !n.cfg.AllowNative {
			return nil, fmt.Errorf("%w: this provider does not run native processes", executor.ErrNotAllowed)
		}
		return n.native, nil
	}
	return nil, fmt.Errorf("executor %q: want wasm or native", kind)
}

// retire keeps an ended allocation listed, forgetting the oldest past
// KeepFinished.
func (n *Node) retire(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.finished = append(n.finished, id)
	for len(n.finished) > max(n.cfg.KeepFinished, 1) {
		delete(n.allocs, n.finished[0])
		n.finished = n.finished[1:]
	}
}

func (n *Node) allocation(id string) (*allocation, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.allocs[id]
	if !ok {
		return nil, fmt.Errorf("allocation %s: %w", id, ErrNotFound)
	}
	return a, nil
}

// Allocation returns an allocation's record.
func (n *Node) Allocation(id string) (AllocationInfo, bool) {
	a, err := n.allocation(id)
	if err != nil {
		return AllocationInfo{}, false
	}
	return a.Info(), true
}

// AllocationStatus returns an allocation's state.
func (n *Node) AllocationStatus(id string) (orchestrator.State, error) {
	a, err := n.allocation(id)
	if err != nil {
		return "", err
	}
	return a.Info().State, nil
}

// Allocations lists the allocations this node runs or ran, oldest first.
func (n *Node) Allocations() []AllocationInfo {
	n.mu.Lock()
	list := make([]*allocation, 0, len(n.allocs))
	for _, a := range n.allocs {
		list = append(list, a)
	}
	n.mu.Unlock()
	out := make([]AllocationInfo, 0, len(list))
	for _, a := range list {
		out = append(out, a.Info())
	}
	slices.SortFunc(out, func(a, b AllocationInfo) int { return a.Created.Compare(b.Created) })
	return out
}

// RouteToAllocation delivers a message to a running allocation.
func (n *Node) RouteToAllocation(id string, msg Message) error {
	a, err := n.allocation(id)
	if err != nil {
		return err
	}
	if msg.Time.IsZero() {
		msg.Time = time.Now()
	}
	return a.route(msg)
}

// Watch implements orchestrator.Backend: only the allocation's requester
// may follow it.
func (n *Node) Watch(ctx context.Context, id string, requester peer.ID) (<-chan orchestrator.Event, error) {
	a, err := n.allocation(id)
	if err != nil {
		return nil, err
	}
	if a.Info().Requester != requester {
		return nil, fmt.Errorf("allocation %s belongs to another requester", id)
	}
	return a.watch(ctx), nil
}

// Cancel implements orchestrator.Backend.
func (n *Node) Cancel(id string, requester peer.ID) error {
	a, err := n.allocation(id)
	if err != nil {
		return err
	}
	if a.Info().Requester != requester {
		return fmt.Errorf("allocation %s belongs to another requester", id)
	}
	return n.RouteToAllocation(id, Message{Kind: "cancel", From: requester})
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
