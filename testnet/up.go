package testnet

// The process test network behind `dms testnet`: a private network of
// `dms run --local` processes on this machine, one home each, recorded in
// DIR/testnet.json so that `status` and `down` find them again.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/internal/randid"
	"github.com/dms-project/dms/p2p"
)

// MaxNodes bounds a test network. A node needs a few connections, not one
// to every other (each bootstraps from up to three earlier nodes and the
// DHT finds it more, within the connection manager's limits); what bounds
// a network on one machine is its memory, about 50 MiB per node.
const MaxNodes = 256

// Options is what `dms testnet up` was asked for.
type Options struct {
	Dir   string
	Nodes int
	// Offer is each node's offer; nil leaves the nodes not onboarded
	// (they join and submit jobs, but do not bid).
	Offer    *api.OnboardRequest
	Timeout  time.Duration // for the nodes to start and see each other
	LogLevel string        // passed to the nodes; "" for their default
	Log      *slog.Logger
	Progress io.Writer // a line per step, for the terminal
	// Containers runs each node in a container of its own, on a Docker
	// network of the test network's own (see containers.go).
	Containers bool
	// AbandonGrace, if set, is passed to the nodes (dms run --abandon-grace).
	AbandonGrace time.Duration
}

// Up starts a test network in opts.Dir and returns its record once the
// network delivers (waitForMesh): every node has peers on the bid-request
// topic and has heard a probe from node-0. The nodes are not connected to
// every other: each bootstraps from up to three earlier ones
// (bootstrap.go) and finds more through the DHT. On failure (or ctx
// ending) it stops what it started.
func Up(ctx context.Context, opts Options) (_ *Record, err error) {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("test network directory: %w", err)
	}
	rec, err := claimTestnetDir(dir)
	if err != nil {
		return nil, err
	}
	var started []*child
	defer func() {
		if err == nil {
			return
		}
		nodes := make([]Process, 0, len(started))
		for _, p := range started {
			nodes = append(nodes, p.node)
		}
		if serr := Stop(nodes, 10*time.Second); serr != nil {
			err = errors.Join(err, fmt.Errorf("tearing down: %w", serr))
		}
		if rerr := os.Remove(RecordPath(dir)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}()
	if rec.Binary, err = testnetBinary(dir); err != nil {
		return nil, err
	}
	rec.Network = "testnet-" + randid.Hex(4)
	rec.SwarmKey = filepath.Join(dir, SwarmKeyFile)
	// Any key here is left by an earlier network of this directory, which
	// is down (claimTestnetDir checked): a new network gets a new key.
	if err := os.Remove(rec.SwarmKey); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		return nil, err
	}
	if err := p2p.WriteSwarmKey(rec.SwarmKey, key); err != nil {
		return nil, err
	}

	progress(opts.Progress, "Preparing %d %s in %s", opts.Nodes, plural(opts.Nodes, "home", "homes"), dir)
	homes, err := prepareTestnetHomes(ctx, dir, opts)
	if err != nil {
		return nil, err
	}
	rec.Nodes = make([]Process, len(homes))
	for i, h := range homes {
		rec.Nodes[i] = Process{Name: filepath.Base(h), Home: h, Log: filepath.Join(h, home.LogFile)}
	}

	var docker *containers
	if opts.Containers {
		progress(opts.Progress, "Building the node image (FROM scratch, the static dms binary)")
		if docker, err = newContainers(ctx, rec); err != nil {
			return nil, err
		}
		rec.Containers, rec.DockerNetwork, rec.Image = true, docker.network, docker.image
		defer func() {
			if err != nil {
				err = errors.Join(err, docker.removeNetwork(context.WithoutCancel(ctx)))
			}
		}()
	}
	args := func(i int) []string {
		a := []string{"--home", rec.Nodes[i].Home}
		if opts.LogLevel != "" {
			a = append(a, "--log-level", opts.LogLevel)
		}
		listen := "/ip4/127.0.0.1/tcp/0"
		if docker != nil {
			listen = "/ip4/0.0.0.0/tcp/4001" // each container has an address of its own
		}
		a = append(a, "run", "--local", "--network", rec.Network, "--swarm-key", rec.SwarmKey, "--listen", listen)
		if opts.AbandonGrace > 0 {
			a = append(a, "--abandon-grace", opts.AbandonGrace.String())
		}
		for _, addr := range bootstrapAddrs(rec.Nodes, i, docker != nil) {
			a = append(a, "--bootstrap", addr)
		}
		return a
	}
	start := func(i int) (*child, error) {
		if docker != nil {
			return docker.start(ctx, args(i), rec.Nodes[i])
		}
		return startNodeProcess(rec.Binary, args(i), rec.Nodes[i], dir)
	}
	// --timeout bounds the nodes' start and meeting, not the preparation.
	ctx, cancel := context.WithTimeoutCause(ctx, opts.Timeout, fmt.Errorf("--timeout %v passed", opts.Timeout))
	defer cancel()
	// Nodes start in waves, each bootstrapping from nodes of earlier waves
	// (bootstrap.go); a wave's nodes start together, then are waited for.
	progress(opts.Progress, "Starting %s (network %s)", rec.Nodes[0].Name, rec.Network)
	for first := 0; first < len(rec.Nodes); {
		last := min(len(rec.Nodes), nextWave(first))
		switch {
		case first == 0:
		case last-first == 1:
			progress(opts.Progress, "Starting %s", rec.Nodes[first].Name)
		default:
			progress(opts.Progress, "Starting %s to %s", rec.Nodes[first].Name, rec.Nodes[last-1].Name)
		}
		wave := make([]*child, 0, last-first)
		for i := first; i < last; i++ {
			p, err := start(i)
			if err != nil {
				return nil, err
			}
			started = append(started, p)
			wave = append(wave, p)
			rec.Nodes[i] = p.node
		}
		if err := rec.write(); err != nil { // pids first, so a crash here leaves them findable
			return nil, err
		}
		for k, p := range wave {
			if rec.Nodes[first+k], err = p.waitReady(ctx); err != nil {
				return nil, err
			}
		}
		first = last
	}
	if err := rec.write(); err != nil {
		return nil, err
	}
	if err := recordNetwork(rec); err != nil {
		return nil, err
	}
	progress(opts.Progress, "Waiting for every node to have topic peers and to hear a probe from %s", rec.Nodes[0].Name)
	if err := waitForProcesses(ctx, rec, started); err != nil {
		return nil, err
	}
	rec.UpPID = 0
	return rec, rec.write()
}

// Add starts one more node in the test network that is up in opts.Dir
// (opts.Nodes is ignored): a new home node-N, onboarded with opts.Offer,
// its config recording the network, swarm key and node-0 as bootstrap peer,
// and a dms run --local process. It returns the updated record once the
// grown network delivers as Up's does (waitForMesh), the new node included;
// on failure the new node is stopped and left out of the record.
func Add(ctx context.Context, opts Options) (_ *Record, err error) {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	rec, err := Read(dir)
	if err != nil {
		return nil, err
	}
	if len(rec.Live()) == 0 || len(rec.Nodes) == 0 || !nodeAlive(rec.Nodes[0].PID, rec.Nodes[0].Home) {
		return nil, fmt.Errorf("%w in %s: its bootstrap node, node-0, is not running; start a network with dms testnet up --dir %s", ErrNotUp, dir, home.ShellQuote(dir))
	}
	if len(rec.Nodes) >= MaxNodes {
		return nil, fmt.Errorf("the test network in %s has %d nodes, the most there can be", dir, len(rec.Nodes))
	}
	opts.Nodes = 1
	i := len(rec.Nodes)
	progress(opts.Progress, "Preparing node-%d in %s", i, dir)
	homes, err := prepareHomesFrom(ctx, dir, opts, i)
	if err != nil {
		return nil, err
	}
	n := Process{Name: filepath.Base(homes[0]), Home: homes[0], Log: filepath.Join(homes[0], home.LogFile)}
	h, err := home.Open(n.Home)
	if err != nil {
		return nil, err
	}
	if err := h.SetConfig(map[string]string{"network": rec.Network, "swarm_key": rec.SwarmKey, "bootstrap": strings.Join(rec.Nodes[0].Addrs, ", ")}); err != nil {
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	args := []string{"--home", n.Home}
	if opts.LogLevel != "" {
		args = append(args, "--log-level", opts.LogLevel)
	}
	args = append(args, "run", "--local", "--listen", "/ip4/127.0.0.1/tcp/0")
	ctx, cancel := context.WithTimeoutCause(ctx, opts.Timeout, fmt.Errorf("--timeout %v passed", opts.Timeout))
	defer cancel()
	progress(opts.Progress, "Starting %s, bootstrapping from %s", n.Name, rec.Nodes[0].Name)
	p, err := startNodeProcess(rec.Binary, args, n, dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if serr := Stop([]Process{p.node}, 10*time.Second); serr != nil {
				err = errors.Join(err, serr)
			}
		}
	}()
	if p.node, err = p.waitReady(ctx); err != nil {
		return nil, err
	}
	grown := *rec
	grown.Nodes = append(append([]Process(nil), rec.Nodes...), p.node)
	progress(opts.Progress, "Waiting for every node to see %s", n.Name)
	if err := waitForProcesses(ctx, &grown, []*child{p}); err != nil {
		return nil, err
	}
	return &grown, grown.write()
}

// recordNetwork writes the network into every home's config: its ID, its
// swarm key, node-0's address as the others' bootstrap peer and as node-0's
// own listen address (the port it was given), so that a plain dms run on
// any of the homes later rejoins this network rather than the default one.
func recordNetwork(rec *Record) error {
	var listen string
	for _, a := range rec.Nodes[0].Addrs {
		if t, _, ok := strings.Cut(a, "/p2p/"); ok && strings.Contains(t, "/tcp/") {
			listen = t
			break
		}
	}
	for i, n := range rec.Nodes {
		h, err := home.Open(n.Home)
		if err != nil {
			return err
		}
		kv := map[string]string{"network": rec.Network, "swarm_key": rec.SwarmKey}
		if i == 0 {
			if listen != "" {
				kv["listen"] = listen
			}
		} else {
			kv["bootstrap"] = strings.Join(rec.Nodes[0].Addrs, ", ")
		}
		if err := h.SetConfig(kv); err != nil {
			return fmt.Errorf("%s: record the network in its config: %w", n.Name, err)
		}
	}
	return nil
}

func progress(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
