// Package testnet starts test networks on one machine: in one process
// (StartLocal: tests, dms demo, dms bench) or as dms run processes, one home
// each (Up: dms testnet up). Both hand back a network that has delivered a
// message to every node, not merely one whose nodes are connected.
package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/internal/randid"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/resources"
)

// LocalConfig describes a private network of nodes in one process on
// 127.0.0.1: the demo, the bench and integration tests use it.
type LocalConfig struct {
	Nodes int
	// Network is the network ID; "" picks a random one so runs never mix.
	Network string
	// Offer is what each provider registers; zero gives each node 1 core,
	// 1 GiB of memory and 1 GiB of disk.
	Offer capability.Capability
	// Requesters are node indexes that offer nothing (node 1 in the demo).
	Requesters []int
	// Configure, if set, adjusts each node's config before it starts.
	Configure func(i int, cfg *node.Config)
	// Wasm, if set, is a sandbox shared with other networks of the process
	// (each module is then compiled once per process); nil gives the network
	// its own.
	Wasm *executor.Wasm
	// Machine, if set, is what every node is checked against instead of a
	// fresh measurement.
	Machine *resources.Machine
	// Logger for every node; nil discards their logs.
	Logger *slog.Logger
}

// Local is a running in-process network.
type Local struct {
	Nodes   []*node.Node
	Network string
	PSK     pnet.PSK // the network's key, for nodes started later
	root    string
	wasm    *executor.Wasm
	ownWasm bool
	machine resources.Machine
}

// StartLocal starts cfg.Nodes nodes, onboards the providers, and returns
// once every node has peers on the bid-request topic and a probe from node
// 0 reached them all (bounded by ctx). A private network key is generated,
// so nothing outside the process can join. On failure nothing is left
// running.
func StartLocal(ctx context.Context, cfg LocalConfig) (_ *Local, err error) {
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("local network: %d nodes: want at least 1", cfg.Nodes)
	}
	if cfg.Network == "" {
		cfg.Network = "local-" + randid.Hex(4)
	}
	offer := cfg.Offer
	if offer.IsZero() {
		offer = capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB, Disk: capability.GiB}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root, err := os.MkdirTemp("", "dms-localnet-")
	if err != nil {
		return nil, err
	}
	ln := &Local{Network: cfg.Network, root: root}
	defer func() {
		if err != nil {
			err = errors.Join(err, ln.Close())
		}
	}()
	keyText, err := p2p.GenerateSwarmKey()
	if err != nil {
		return nil, err
	}
	psk, err := p2p.DecodeSwarmKey(bytes.NewReader(keyText))
	if err != nil {
		return nil, err
	}
	ln.PSK = psk
	if cfg.Machine != nil {
		ln.machine = *cfg.Machine
	} else if ln.machine, err = MeasureOnce(ctx); err != nil {
		return nil, err
	}
	if ln.wasm = cfg.Wasm; ln.wasm == nil {
		if ln.wasm, err = executor.NewWasm(executor.WithLogger(log), executor.WithMountRoots(root)); err != nil {
			return nil, err
		}
		ln.ownWasm = true
	}
	requester := map[int]bool{}
	for _, i := range cfg.Requesters {
		requester[i] = true
	}
	ln.Nodes = make([]*node.Node, cfg.Nodes)
	start := func(i int) error {
		var boot []peer.AddrInfo
		for _, j := range bootstrapPeers(i) {
			boot = append(boot, ln.Nodes[j].AddrInfo())
		}
		n, err := ln.StartNode(ctx, cfg.Logger, boot, func(c *node.Config) {
			if cfg.Configure != nil {
				cfg.Configure(i, c)
			}
		})
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		ln.Nodes[i] = n
		if !requester[i] {
			if err := Onboard(ctx, n, offer); err != nil {
				return fmt.Errorf("node %d: %w", i, err)
			}
		}
		return nil
	}
	// Nodes start in waves, each bootstrapping from nodes of earlier waves
	// (bootstrap.go), as in a process network; a wave's nodes start at once.
	for first := 0; first < cfg.Nodes; {
		last := min(cfg.Nodes, nextWave(first))
		var wg sync.WaitGroup
		errs := make([]error, last-first)
		for i := first; i < last; i++ {
			wg.Go(func() { errs[i-first] = start(i) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		first = last
	}
	if err := waitForMesh(ctx, localMesh{ln}, localPoll, localProbeRound); err != nil {
		return nil, fmt.Errorf("local network: %w", err)
	}
	return ln, nil
}

// StartNode starts one more node of the network (not onboarded) that
// bootstraps from boot; configure, if set, adjusts its config first. The
// caller closes it.
func (ln *Local) StartNode(ctx context.Context, log *slog.Logger, boot []peer.AddrInfo, configure func(*node.Config)) (*node.Node, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	home, err := os.MkdirTemp(ln.root, "node-")
	if err != nil {
		return nil, err
	}
	c := node.LocalConfig(home)
	c.Datastore, c.Key, c.Machine, c.Wasm, c.Logger = node.MemoryDatastore(), key, &ln.machine, ln.wasm, log
	// Every node is the same machine: an owner's reserve per node would
	// leave nothing to offer, and a test network overcommits by design.
	c.Reserve = resources.Reserve{}
	c.P2P = append(c.P2P, p2p.WithNetwork(ln.Network), p2p.WithPSK(ln.PSK))
	if len(boot) > 0 {
		c.P2P = append(c.P2P, p2p.WithBootstrap(boot...))
	}
	if configure != nil {
		configure(&c)
	}
	return node.New(ctx, c)
}

// Onboard offers c on n, as dms onboard would, without a benchmark.
func Onboard(ctx context.Context, n *node.Node, c capability.Capability) error {
	cpu, mem, disk := c.CPU.MilliCores, c.Memory, c.Disk
	req := onboarding.Request{CPU: &cpu, Memory: &mem, Disk: &disk, Price: &c.Price}
	if _, err := n.Onboard(ctx, req, nil); err != nil {
		return fmt.Errorf("onboard: %w", err)
	}
	return nil
}

var (
	measureOnce sync.Once
	measured    resources.Machine
	measureErr  error
)

// MeasureOnce measures this machine once per process, without GPUs: the
// nodes of in-process networks all stand on it.
func MeasureOnce(ctx context.Context) (resources.Machine, error) {
	measureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dms-measure-")
		if err != nil {
			measureErr = err
			return
		}
		defer os.RemoveAll(dir)
		measured, measureErr = resources.Measure(ctx, dir, resources.WithGPUDetector(func(context.Context) ([]capability.GPU, error) { return nil, nil }))
	})
	return measured, measureErr
}

// localPoll is how often an in-process network's readiness is polled:
// a poll reads counters, no call crosses a process.
const localPoll = 20 * time.Millisecond

// localProbeRound is how long a probe has to reach an in-process network
// before the next one goes out. A probe sent before gossipsub grafted its
// meshes may miss a node for good; a later one then reaches it, and a
// round this short keeps the wait for it short.
const localProbeRound = time.Second

// localMesh is an in-process network as its readiness check sees it.
type localMesh struct{ ln *Local }

var _ meshNodes = localMesh{}

func (m localMesh) names() []string {
	out := make([]string, len(m.ln.Nodes))
	for i := range out {
		out[i] = fmt.Sprintf("node %d", i)
	}
	return out
}

func (m localMesh) statuses(context.Context) []meshStatus {
	out := make([]meshStatus, len(m.ln.Nodes))
	for i, n := range m.ln.Nodes {
		out[i] = meshStatus{topicPeers: n.Diagnostics().TopicPeers(), requestsSeen: n.Diagnostics().Stats().RequestsSeen}
		out[i].peers = len(n.Peers()) // only for the errors, which name a node that falls short
	}
	return out
}

func (m localMesh) probe(ctx context.Context) error {
	return m.ln.Nodes[0].Diagnostics().Probe(ctx, "")
}

func (localMesh) exited() error { return nil } // a node in this process does not exit on its own

// closeAtOnce bounds how many nodes Close stops at a time. Each node that
// goes tells every peer it leaves, and each of those peers then looks for
// a replacement: hundreds leaving at once on a small machine turned into
// a storm of disconnections and re-dials that slowed every close.
const closeAtOnce = 16

// Close stops every node and removes their homes.
func (ln *Local) Close() error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	slots := make(chan struct{}, closeAtOnce)
	for _, n := range ln.Nodes {
		if n == nil {
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := n.Close(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ln.wasm != nil && ln.ownWasm {
		errs = append(errs, ln.wasm.Close(context.Background()))
	}
	if ln.root != "" {
		errs = append(errs, os.RemoveAll(ln.root))
	}
	return errors.Join(errs...)
}
