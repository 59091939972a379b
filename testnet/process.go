package testnet

// The process test network behind `dms testnet`: a private network of
// `dms run --local` processes on this machine, one home each, recorded in
// DIR/testnet.json so that `status` and `down` find them again.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/internal/randid"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/resources"
)

// Files of a test network directory.
const (
	RecordFile   = "testnet.json" // the record: network, nodes, pids, addresses
	SwarmKeyFile = "swarm.key"
)

// MaxNodes bounds a test network. A node needs a few connections, not one
// to every other (each bootstraps from up to three earlier nodes and the
// DHT finds it more, within the connection manager's limits); what bounds
// a network on one machine is its memory, about 50 MiB per node.
const MaxNodes = 256

// DefaultDir is $TMPDIR/dms-testnet-<uid>: one per user, so users of one
// machine do not collide.
func DefaultDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("dms-testnet-%d", os.Getuid()))
}

// sharedBenchmark is how long the one benchmark shared by every node of a
// test network runs: they all run on this machine, so one score fits all.
const sharedBenchmark = 200 * time.Millisecond

// pollEvery is how often readiness and peers are polled while waiting.
const pollEvery = 100 * time.Millisecond

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

func RecordPath(dir string) string { return filepath.Join(dir, RecordFile) }

// readTestnet reads DIR's record; ErrNotUp when there is none.
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

// live returns the nodes whose process still runs.
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

// stopNodes sends SIGTERM to each live node's process group, waits up to
// grace for them to end, then SIGKILLs what is left and waits a little
// more. It returns an error naming any that survive.
func Stop(nodes []Process, grace time.Duration) error {
	signal := func(n Process, sig syscall.Signal) {
		// Each node leads its own process group (Setpgid), which also holds
		// any native job it started.
		if err := syscall.Kill(-n.PID, sig); err != nil {
			_ = syscall.Kill(n.PID, sig)
		}
	}
	alive := func(ns []Process) []Process {
		return slices.DeleteFunc(slices.Clone(ns), func(n Process) bool { return !nodeAlive(n.PID, n.Home) })
	}
	wait := func(ns []Process, d time.Duration) []Process {
		deadline := time.Now().Add(d)
		for len(ns) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			ns = alive(ns)
		}
		return ns
	}
	left := alive(nodes)
	for _, n := range left {
		signal(n, syscall.SIGTERM)
	}
	if left = wait(left, grace); len(left) == 0 {
		return nil
	}
	for _, n := range left {
		signal(n, syscall.SIGKILL)
	}
	if left = wait(left, 5*time.Second); len(left) == 0 {
		return nil
	}
	var names []string
	for _, n := range left {
		names = append(names, fmt.Sprintf("%s (pid %d)", n.Name, n.PID))
	}
	return fmt.Errorf("still running after SIGKILL: %s", strings.Join(names, ", "))
}

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

// testnetUp starts a test network in opts.Dir and returns its record once
// every node is connected to every other and sees it on the bid-request
// topic. On failure (or ctx ending) it stops what it started.
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
	// Nodes start in waves, each node bootstrapping from up to three nodes
	// of earlier waves (bootstrapAddrs), so that no node has to accept the
	// whole network: above its connection limits it would turn the late
	// ones away. A wave is as large as what is up already, up to waveSize.
	progress(opts.Progress, "Starting %s (network %s)", rec.Nodes[0].Name, rec.Network)
	for first := 0; first < len(rec.Nodes); {
		last := min(len(rec.Nodes), nextWave(first))
		if first > 0 {
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
	if err := waitForMesh(ctx, rec, started); err != nil {
		return nil, err
	}
	rec.UpPID = 0
	return rec, rec.write()
}

// Add starts one more node in the test network that is up in opts.Dir
// (opts.Nodes is ignored): a new home node-N, onboarded with opts.Offer,
// its config recording the network, swarm key and node-0 as bootstrap peer,
// and a dms run --local process. It returns the updated record once every
// node sees every other, the new one included; on failure the new node is
// stopped and left out of the record.
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
	if err := waitForMesh(ctx, &grown, []*child{p}); err != nil {
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

// waveSize bounds how many nodes start at once.
const waveSize = 16

// nextWave is where the wave that starts at first ends.
func nextWave(first int) int { return first + max(1, min(first, waveSize)) }

// waveStart is the first node of node i's wave.
func waveStart(i int) int {
	first := 0
	for nextWave(first) <= i {
		first = nextWave(first)
	}
	return first
}

// bootstrapAddrs are the addresses of up to three nodes started before
// node i, spread over them and the same for every run of the same size.
// In a container network only the nodes' own addresses serve: loopback is
// each container's own.
func bootstrapAddrs(nodes []Process, i int, containers bool) []string {
	if i == 0 {
		return nil
	}
	up := waveStart(i) // the nodes of earlier waves, all up
	var out []string
	seen := map[int]bool{}
	for _, j := range []int{(i * 31) % up, (i*17 + 5) % up, (i*7 + 3) % up} {
		if seen[j] {
			continue
		}
		seen[j] = true
		for _, a := range nodes[j].Addrs {
			if containers && (strings.Contains(a, "/ip4/127.") || strings.Contains(a, "/ip6/::1/")) {
				continue
			}
			out = append(out, a)
		}
	}
	return out
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

// testnetBinary is the dms binary the nodes run: this one, or a copy in
// DIR/bin when this one is go run's temporary build, which go run deletes
// when it exits, while the nodes must outlive it.
func testnetBinary(dir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the dms binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find the dms binary: %w", err)
	}
	if !isGoRunBuild(exe) {
		return exe, nil
	}
	dst := filepath.Join(dir, "bin", "dms")
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", err
	}
	if err := copyFile(exe, dst, 0o700); err != nil {
		return "", fmt.Errorf("copy the go run binary to %s: %w", dst, err)
	}
	return dst, nil
}

// isGoRunBuild recognises a binary that go run (or go test) built in its
// temporary work directory ($GOTMPDIR or the temp dir, go-build*/.../exe/).
func isGoRunBuild(exe string) bool {
	for _, part := range strings.Split(filepath.ToSlash(exe), "/") {
		if strings.HasPrefix(part, "go-build") {
			return true
		}
	}
	return false
}

// copyFile copies src to dst through a temporary file, so that a node
// starting meanwhile never runs half a binary.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".dms-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, in)
	err = errors.Join(err, tmp.Chmod(mode), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// prepareTestnetHomes initialises DIR/node-0 … node-(N-1) (keeping what an
// earlier network of DIR left: identities, datastores) and onboards each
// with opts.Offer. The machine is measured and benchmarked once for all:
// every node runs on it. Each node is checked against the whole machine,
// as it would be alone, so N nodes together offer N times what one may:
// a test network overcommits the machine by design, its jobs being tiny.
func prepareTestnetHomes(ctx context.Context, dir string, opts Options) ([]string, error) {
	return prepareHomesFrom(ctx, dir, opts, 0)
}

// prepareHomesFrom is prepareTestnetHomes for node-first onwards.
func prepareHomesFrom(ctx context.Context, dir string, opts Options, first int) ([]string, error) {
	homes := make([]string, opts.Nodes)
	var shared string
	if !opts.Containers {
		var err error
		if shared, err = sharedWasmCache(dir); err != nil {
			return nil, err
		}
	}
	for i := range homes {
		rep, err := home.Init(filepath.Join(dir, fmt.Sprintf("node-%d", first+i)))
		if err != nil {
			return nil, err
		}
		homes[i] = rep.Home
		if shared != "" {
			if err := linkWasmCache(rep.Home, shared); err != nil {
				return nil, err
			}
		}
	}
	var machine resources.Machine
	var bench resources.Benchmark
	if opts.Offer != nil {
		var err error
		if machine, err = resources.Measure(ctx, dir, resources.WithMeasureLogger(opts.Log)); err != nil {
			return nil, err
		}
		if bench, err = resources.BenchmarkCapability(ctx, dir, resources.WithBenchmarkDuration(sharedBenchmark)); err != nil {
			return nil, err
		}
	}
	for i, dir := range homes {
		h, err := home.Open(dir)
		if err != nil {
			return nil, err
		}
		s, err := h.Settings(os.Getenv)
		if err != nil {
			return nil, err
		}
		off := &api.Offline{Home: h, Settings: s, Log: opts.Log, Machine: &machine}
		if opts.Offer == nil {
			// A home kept from an earlier network may hold an offer; its
			// allocations ended with that network.
			if _, err := off.Offboard(ctx, api.OffboardRequest{Force: true}); err != nil {
				return nil, fmt.Errorf("node-%d: offboard: %w", i, err)
			}
			continue
		}
		// One datastore open: store the shared benchmark, then the offer,
		// which carries its score.
		// The shared benchmark first, then the offer, which carries its
		// score (and the executors, which Onboard records).
		err = off.Use(ctx, nil, func(_ *onboarding.Onboarder, l *resources.Ledger) error { return l.SetBenchmark(bench) })
		if err == nil {
			_, err = off.Onboard(ctx, *opts.Offer, nil)
		}
		if err != nil {
			// An *onboarding.OfferError stays inside, so that a command line
			// can name the flag behind it.
			return nil, fmt.Errorf("node-%d: onboard: %w", i, err)
		}
	}
	return homes, nil
}

// WasmCacheShared is the compiled-module cache that the homes of a process
// test network share, in its directory.
const WasmCacheShared = "wasm-cache"

// sharedWasmCache makes the compiled-module cache that a process test
// network's homes share, and returns its absolute path: its nodes run this
// machine's one build of dms, so a module one of them compiled need not be
// compiled again by each (2 s for the 2.2 MiB hello module on a loaded
// machine, on every node's first run of it). wazero's file cache writes by
// rename, so processes may share it. Not for containers, where a link
// would point outside the container.
func sharedWasmCache(dir string) (string, error) {
	shared, err := filepath.Abs(filepath.Join(dir, WasmCacheShared))
	if err == nil {
		err = os.MkdirAll(shared, 0o700)
	}
	if err != nil {
		return "", fmt.Errorf("shared wasm cache: %w", err)
	}
	return shared, nil
}

// linkWasmCache points a new home's compiled-module cache at shared; a
// home that already has a cache of its own keeps it.
func linkWasmCache(homeDir, shared string) error {
	link := filepath.Join(homeDir, home.WasmCacheDir)
	if _, err := os.Lstat(link); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		return fmt.Errorf("shared wasm cache: %w", err)
	}
	if err := os.Symlink(shared, link); err != nil {
		return fmt.Errorf("shared wasm cache: %w", err)
	}
	return nil
}

// child is a node that testnetUp started, while it runs.
type child struct {
	node   Process
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process ended and was reaped
	err    error         // its exit status, once exited
}

// startNodeProcess starts `dms run` detached in its own process group (so
// a Ctrl-C meant for `dms testnet up` does not reach it), logging to the
// node's log file.
func startNodeProcess(bin string, args []string, n Process, dir string) (*child, error) {
	logf, err := os.OpenFile(n.Log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", n.Name, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = childEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", n.Name, bin, err)
	}
	p := &child{node: n, cmd: cmd, exited: make(chan struct{})}
	p.node.PID = cmd.Process.Pid
	// Reap it if it dies while we wait for it, or it would linger as a
	// zombie; once testnetUp returns, the process outlives us.
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// testnetEnv drops the DMS_* variables that would pull a node off the test
// network; the flags testnetUp passes override the rest of the settings.
func childEnv(env []string) []string {
	drop := []string{"DMS_HOME", "DMS_NETWORK", "DMS_LISTEN", "DMS_BOOTSTRAP", "DMS_SWARM_KEY", "DMS_TESTNET_DIR"}
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(drop, k)
	})
	// Tens to hundreds of Go runtimes share this machine's cores: one
	// processor each keeps an idle node from waking a second thread to
	// spin on every packet (about an eighth less idle CPU at 50 nodes).
	// Jobs run in their own processes or in wazero, one thread either way.
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") }) {
		env = append(env, "GOMAXPROCS=1")
	}
	return env
}

// waitReady waits until the node answers on its control socket, and
// returns its record with its peer ID and addresses.
func (p *child) waitReady(ctx context.Context) (Process, error) {
	t := time.NewTicker(pollEvery / 2)
	defer t.Stop()
	for {
		if cl, err := api.Dial(ctx, p.node.Home); err == nil {
			id, err := cl.ID(ctx)
			cl.Close()
			if err == nil {
				p.node.PeerID, p.node.Addrs = id.PeerID, id.Addrs
				return p.node, nil
			}
		}
		select {
		case <-p.exited:
			return p.node, p.exitError()
		case <-ctx.Done():
			return p.node, fmt.Errorf("waiting for %s to start: %w; the end of %s:\n%s", p.node.Name, context.Cause(ctx), p.node.Log, logTail(p.node.Log, 15))
		case <-t.C:
		}
	}
}

func (p *child) exitError() error {
	return fmt.Errorf("%s exited (%v); the end of %s:\n%s", p.node.Name, p.err, p.node.Log, logTail(p.node.Log, 15))
}

// waitForMesh waits until the network delivers: every node has topic
// peers (a few in a small network, one in a large one, as StartLocal
// waits), then a probe published by node-0 reaches every node (each counts
// it in its status's requests_seen). A real mesh is not a full graph, so
// this, not every node seeing every other, is what "up" means. On timeout
// it names the nodes that fall short.
func waitForMesh(ctx context.Context, rec *Record, procs []*child) error {
	clients := newClients(rec.Nodes)
	defer clients.close()
	k := min(len(rec.Nodes)-1, 3)
	if len(rec.Nodes) > 20 {
		k = 1
	}
	exited := func() error {
		for _, p := range procs {
			select {
			case <-p.exited:
				return p.exitError()
			default:
			}
		}
		return nil
	}
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	var short []string
	for {
		statuses := clients.statuses(ctx)
		short = short[:0]
		for i, st := range statuses {
			switch {
			case st.err != nil:
				short = append(short, fmt.Sprintf("%s: %v", rec.Nodes[i].Name, st.err))
			case st.TopicPeers < k:
				short = append(short, fmt.Sprintf("%s has %d topic peers (%d connections), wants %d", rec.Nodes[i].Name, st.TopicPeers, st.Peers, k))
			}
		}
		if len(short) == 0 {
			break
		}
		if err := exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the nodes to find topic peers: %w: %s; see the node.log in each home", context.Cause(ctx), summarise(short))
		case <-t.C:
		}
	}
	if len(rec.Nodes) < 2 {
		return nil
	}
	// A probe per round: gossipsub grafts its meshes on heartbeats, so a
	// first one may miss a node that a later one reaches. A node that has
	// heard any probe since the first one went out has been reached: on a
	// machine this loaded (hundreds of nodes on a few cores) one probe may
	// take longer than a round to reach them all.
	base := clients.statuses(ctx)
	heard := make([]bool, len(rec.Nodes))
	heard[0] = true
	for {
		cl, err := clients.get(ctx, 0)
		if err == nil {
			callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = cl.Probe(callCtx, api.ProbeRequest{})
			cancel()
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("probe from %s: %w", rec.Nodes[0].Name, err)
		}
		round := time.Now().Add(3 * time.Second)
		for {
			for i, st := range clients.statuses(ctx) {
				switch {
				case heard[i] || st.err != nil:
				case base[i].err != nil:
					base[i] = st // a first answer is its baseline
				case st.RequestsSeen > base[i].RequestsSeen:
					heard[i] = true
				}
			}
			short = short[:0]
			for i, h := range heard {
				if !h {
					short = append(short, rec.Nodes[i].Name)
				}
			}
			if len(short) == 0 {
				return nil
			}
			if err := exited(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for a probe from %s to reach every node: %w: %d of %d have not heard one (%s); see the node.log in each home",
					rec.Nodes[0].Name, context.Cause(ctx), len(short), len(rec.Nodes)-1, summarise(short))
			case <-t.C:
			}
			if time.Now().After(round) {
				break
			}
		}
	}
}

// summarise joins the first few of a list.
func summarise(items []string) string {
	if len(items) > 8 {
		return strings.Join(items[:8], "; ") + fmt.Sprintf("; and %d more", len(items)-8)
	}
	return strings.Join(items, "; ")
}

// clients holds a control connection per node, dialled on first use.
type clients struct {
	nodes []Process
	mu    sync.Mutex
	cl    []*api.Client
}

func newClients(nodes []Process) *clients {
	return &clients{nodes: nodes, cl: make([]*api.Client, len(nodes))}
}

func (c *clients) get(ctx context.Context, i int) (*api.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cl[i] == nil {
		cl, err := api.Dial(ctx, c.nodes[i].Home)
		if err != nil {
			return nil, err
		}
		c.cl[i] = cl
	}
	return c.cl[i], nil
}

func (c *clients) drop(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cl[i] != nil {
		c.cl[i].Close()
		c.cl[i] = nil
	}
}

func (c *clients) close() {
	for i := range c.cl {
		c.drop(i)
	}
}

type nodeStatus struct {
	api.StatusResponse
	err error
}

// statuses asks every node for its status, a few at a time. Each call has
// its own short deadline rather than ctx's, so that the round that runs
// into ctx's end still reports who falls short, not a cancelled call.
func (c *clients) statuses(ctx context.Context) []nodeStatus {
	out := make([]nodeStatus, len(c.nodes))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			cl, err := c.get(callCtx, i)
			if err == nil {
				out[i].StatusResponse, err = cl.Status(callCtx)
				if err != nil {
					c.drop(i)
				}
			}
			out[i].err = err
		})
	}
	wg.Wait()
	return out
}

// NodeStatus is one line of `dms testnet status`.
type NodeStatus struct {
	Process
	Running    bool   `json:"running"`
	Peers      int    `json:"peers"`
	TopicPeers int    `json:"topic_peers"`
	Error      string `json:"error,omitempty"` // why the peers are unknown
}

// testnetStatus asks each live node of rec for its peers, in parallel.
func Status(ctx context.Context, rec *Record) []NodeStatus {
	out := make([]NodeStatus, len(rec.Nodes))
	var wg sync.WaitGroup
	for i, n := range rec.Nodes {
		out[i] = NodeStatus{Process: n, Running: nodeAlive(n.PID, n.Home)}
		if !out[i].Running {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			cl, err := api.Dial(ctx, n.Home)
			if err != nil {
				out[i].Error = "not answering on its control socket"
				return
			}
			defer cl.Close()
			r, err := cl.Status(ctx)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Peers, out[i].TopicPeers = r.Peers, r.TopicPeers
		})
	}
	wg.Wait()
	return out
}

// logTail returns the last n lines of a log file, indented.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "  (empty)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return "  " + strings.Join(lines, "\n  ")
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

var testnetHomeName = regexp.MustCompile(`^node-[0-9]+$`)

// Clean removes what test networks leave in dir (homes named node-N, the
// swarm key, the binary copy, the shared wasm cache) and dir itself once
// empty. It touches nothing else: --dir may name a directory that holds
// more.
func Clean(dir string) (homes int, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for _, ent := range entries {
		p := filepath.Join(dir, ent.Name())
		switch {
		case ent.IsDir() && testnetHomeName.MatchString(ent.Name()):
			if _, err := os.Stat(filepath.Join(p, home.IdentityFile)); err != nil {
				continue // not a home of ours
			}
			if err := os.RemoveAll(p); err != nil {
				return homes, err
			}
			homes++
		case ent.Name() == WasmCacheShared && ent.IsDir():
			if err := os.RemoveAll(p); err != nil {
				return homes, err
			}
		case ent.Name() == SwarmKeyFile:
			if err := os.Remove(p); err != nil {
				return homes, err
			}
		case ent.Name() == "bin" && ent.IsDir():
			if err := os.Remove(filepath.Join(p, "dms")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return homes, err
			}
			_ = os.Remove(p) // only if empty
		}
	}
	_ = os.Remove(dir) // only if empty
	return homes, nil
}
