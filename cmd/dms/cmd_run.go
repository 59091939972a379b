package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/doctor"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/internal/procmem"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/resources"
)

// startupTrimAfter is when a node's start-up (DHT walks, mesh grafting) is
// over and the pages it touched can go.
const startupTrimAfter = 10 * time.Second

// shutdownTimeout bounds how long the control server waits for the calls
// under way (cancelled at shutdown) to return.
const shutdownTimeout = 10 * time.Second

func (e *env) runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "start the node: join the mesh, bid for jobs when onboarded, serve the other commands",
		UsageText: "dms run [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--network NAME] [--swarm-key FILE] [--dht-mode auto|server|client] [--abandon-grace D] [--local] [--metrics HOST:PORT [--metrics-allow-remote]] [--dashboard HOST:PORT|off] [--relay-service] [--reachability auto|public|private] [--control-listen HOST:PORT [--control-token-file FILE]]",
		Description: "Starts the node on the home and runs until interrupted (SIGINT or SIGTERM), then stops\n" +
			"cleanly. It joins the network, finds peers through the bootstrap peers and the DHT, and,\n" +
			"once onboarded, bids for the jobs peers broadcast; any node can submit jobs. While it runs,\n" +
			"the other commands (onboard, capability, peers, job ...) talk to it through the control\n" +
			"socket dms.sock in the home. Only one node can run on a home.\n\n" +
			"On start it prints, one per line: \"peer id: ID\", \"network: NAME\", one\n" +
			"\"listening on: MULTIADDR\" per address (give one to other nodes as --bootstrap), \"control\n" +
			"socket: PATH\" and \"ready\".\n\n" +
			"Settings: flags, then DMS_* environment variables, then the home's config file.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Usage: "a multiaddr to listen on, e.g. /ip4/0.0.0.0/tcp/4001 or /ip4/0.0.0.0/udp/4001/quic-v1 (repeat for more; default: the config's listen; with --local, 127.0.0.1 on a free port unless the config or DMS_LISTEN names one)"},
			&cli.StringSliceFlag{Name: "bootstrap", Usage: "a peer to dial at start, as a multiaddr ending in /p2p/<peer ID> (repeat for more; default: the config's bootstrap)"},
			&cli.StringFlag{Name: "network", Usage: "the network to join, 1 to 32 characters of a-z 0-9 - _ . (default: the config's network, else dms)"},
			&cli.StringFlag{Name: "swarm-key", Usage: "the pre-shared key `FILE` of a private network; only nodes with the same key connect, over TCP only (default: the config's swarm_key)"},
			&cli.StringFlag{Name: "dht-mode", Usage: "whether this node answers DHT queries: auto, server or client (default: auto, server with --local)"},
			&cli.StringFlag{Name: "abandon-grace", Usage: "how long an allocation run for a requester that stopped following it goes on before it is stopped, 1s to 24h (default: the config's abandon_grace, else 15s)"},
			&cli.BoolFlag{Name: "local", Usage: "run as a node of a test network on this machine: loopback addresses, DHT server, short timeouts, no machine monitor"},
			&cli.DurationFlag{Name: "monitor-interval", Usage: "how often the machine's own use is sampled to shrink what is offered when the owner needs it; 0 turns the monitor off, as on a machine that only runs dms (default 5s, off with --local)"},
			&cli.StringFlag{Name: "metrics", Usage: "serve Prometheus metrics (/metrics) and a health check (/healthz) on `HOST:PORT`, e.g. 127.0.0.1:9464 (default: off; a loopback address unless --metrics-allow-remote)"},
			&cli.BoolFlag{Name: "metrics-allow-remote", Usage: "let --metrics listen on an address other hosts can reach (the metrics name peers and jobs)"},
			&cli.StringFlag{Name: "dashboard", Value: "127.0.0.1:0", Usage: "serve the web dashboard on this loopback `HOST:PORT` (port 0 picks one; dms dashboard prints its URL), or off"},
			&cli.BoolFlag{Name: "relay-service", Usage: "act as a circuit relay for nodes behind NAT (opt-in: costs bandwidth); only on a node others can dial, which it then declares publicly reachable"},
			&cli.StringFlag{Name: "reachability", Usage: "override AutoNAT: auto, public or private (private: behind a NAT, reserve a relay slot on the bootstrap peers at once)"},
			&cli.StringFlag{Name: "control-listen", Usage: "also serve the control API on TCP `HOST:PORT`, for remote management (dms --remote HOST:PORT --token-file FILE ...); every call needs the token; plain HTTP, so use a trusted network, an SSH tunnel or a TLS proxy (default: off)"},
			&cli.StringFlag{Name: "control-token-file", Usage: "the token `FILE` of --control-listen, mode 0600 (a file others can read is refused); created with a random token when missing (default: HOME/" + api.TokenFile + ")"},
		},
		Action: e.runNode,
	}
}

// runNode is `dms run`: it returns when ctx ends (a signal) and everything
// it started has stopped.
func (e *env) runNode(c *cli.Context) (err error) {
	h, settings, err := e.openHome(c)
	if err != nil {
		return err
	}
	// With --local and no listen address named anywhere, the preset's
	// 127.0.0.1 on a free port, rather than the default settings'
	// 0.0.0.0:4001, which a second node would find taken.
	presetListen := c.Bool("local") && !c.IsSet("listen") && slices.Equal(settings.Listen, home.DefaultSettings().Listen)
	if err := applyRunFlags(c, &settings); err != nil {
		return err
	}
	p2pOpts, err := runP2POptions(c, settings, presetListen)
	if err != nil {
		return err
	}
	metricsLn, err := listenMetrics(c)
	if err != nil {
		return err
	}
	if metricsLn != nil {
		defer metricsLn.Close()
	}
	remoteLn, token, tokenPath, created, err := listenRemote(c, h)
	if err != nil {
		return err
	}
	if remoteLn != nil {
		defer remoteLn.Close()
	}

	// The datastore first: it is the home's lock, so a second node on the
	// same home stops here, before touching the socket of the first. Then
	// the home's checks (dms doctor's), on the datastore the node keeps:
	// a home a node cannot run on well is refused with what to do.
	started := time.Now()
	store, err := h.OpenDatastore()
	if errors.Is(err, resources.ErrHomeInUse) {
		return err
	}
	if err != nil {
		// The checks say why, and what to do.
		if cerr := e.checkHome(c, h, nil); cerr != nil {
			return cerr
		}
		return err
	}
	defer func() {
		if err = errors.Join(err, store.Close()); err == nil {
			e.log.Info("node stopped")
		}
	}()
	if err := e.checkHome(c, h, store); err != nil {
		return err
	}
	// The PID file tells dms doctor, and the next dms run, who held the
	// home if this process dies without stopping; a clean stop removes it.
	if err := h.WritePID(started); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, h.RemovePID()) }()
	key, err := h.Identity()
	if err != nil {
		return err
	}

	var cfg node.Config
	if c.Bool("local") {
		cfg = node.LocalConfig(h.Dir)
		// The in-process preset's 3 s is shorter than stopping and starting
		// a dms run process: a test network's requester that restarts must
		// find its running jobs still running.
		cfg.Orchestrator.Provider.AbandonGrace = orchestrator.DefaultAbandonGrace
	} else {
		cfg = node.DefaultConfig(h.Dir)
	}
	cfg.P2P = append(cfg.P2P, p2pOpts...)
	cfg.Datastore, cfg.Key, cfg.Reserve, cfg.DefaultPrice, cfg.Logger = store, key, settings.Reserve, settings.Price, e.log
	if settings.AbandonGrace > 0 {
		cfg.Orchestrator.Provider.AbandonGrace = settings.AbandonGrace
	}
	cfg.CacheBytes = int64(settings.CacheSize)
	cfg.WasmCacheDir = h.WasmCachePath()
	if c.IsSet("monitor-interval") {
		if d := c.Duration("monitor-interval"); d < 0 || (d > 0 && d < 100*time.Millisecond) {
			return badValue("monitor-interval", d.String(), errors.New("want 0 (off) or at least 100ms, e.g. 5s"))
		}
		cfg.MonitorInterval = c.Duration("monitor-interval")
	}
	cfg.Metrics = node.NewRegistry()
	if err := os.MkdirAll(cfg.WasmCacheDir, 0o700); err != nil {
		return fmt.Errorf("wasm cache: %w", err)
	}

	n, err := node.New(c.Context, cfg)
	if err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	defer func() { err = errors.Join(err, n.Close()) }()

	srv := api.NewServer(n, h.Dir, e.log)
	if err := srv.Listen(); err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		err = errors.Join(err, srv.Close(ctx))
	}()

	fmt.Fprintf(e.stdout, "peer id: %s\n", n.ID())
	fmt.Fprintf(e.stdout, "network: %s\n", n.Network())
	for _, a := range n.Addrs() {
		fmt.Fprintf(e.stdout, "listening on: %s\n", a)
	}
	fmt.Fprintf(e.stdout, "control socket: %s\n", h.SocketPath())
	if v := c.String("dashboard"); v != "off" && v != "" {
		d, err := api.StartDashboard(v, srv.Handler())
		if err != nil {
			return badValue("dashboard", v, err)
		}
		srv.SetDashboard(d)
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			err = errors.Join(err, d.Close(ctx))
		}()
		fmt.Fprintf(e.stdout, "dashboard: %s\n", d.URL())
	}
	if metricsLn != nil {
		fmt.Fprintf(e.stdout, "metrics: http://%s/metrics\n", metricsLn.Addr())
		served := make(chan error, 1)
		go func() { served <- api.ServeOperators(c.Context, metricsLn, n, e.log) }()
		defer func() { err = errors.Join(err, <-served) }()
	}
	if remoteLn != nil {
		fmt.Fprintf(e.stdout, "remote control: http://%s (token in %s)\n", remoteLn.Addr(), tokenPath)
		if created {
			fmt.Fprintf(e.stderr, "Created the control token %s (0600): copy it to the managing machine and use dms --remote %s --token-file FILE.\n", tokenPath, remoteLn.Addr())
		}
		served := make(chan error, 1)
		go func() { served <- srv.ServeRemote(c.Context, remoteLn, token, e.log) }()
		defer func() { err = errors.Join(err, <-served) }()
	}
	if len(settings.Bootstrap) == 0 {
		fmt.Fprintf(e.stderr, "No bootstrap peers: this node starts a network of its own (%q) and waits for others to dial it. "+
			"To join an existing network, run dms run --bootstrap MULTIADDR (a peer's address ending in /p2p/<peer ID>), "+
			"with that network's --network NAME and, for a private one, --swarm-key FILE; or set bootstrap, network and swarm_key in %s.\n",
			n.Network(), h.ConfigPath())
	}
	if !n.Onboarded() {
		fmt.Fprintf(e.stderr, "Not onboarded: this node joins the mesh and can submit jobs, but does not bid (dms --home %s onboard --cpu N --memory SIZE --disk SIZE).\n", home.ShellQuote(h.Dir))
	}
	fmt.Fprintln(e.stdout, "ready")
	// Once start-up is over, let go of the binary's pages it touched: an
	// idle node runs a small part of its code.
	trim := time.AfterFunc(startupTrimAfter, func() {
		if n, err := procmem.ReleaseExecutable(); err != nil {
			e.log.Debug("release executable pages", "err", err)
		} else {
			e.log.Debug("released executable pages", "bytes", n)
		}
	})
	defer trim.Stop()

	<-c.Context.Done()
	e.log.Info("stopping the node")
	return nil
}

// checkHome runs dms doctor's checks before the node starts, repairing
// what a dead node left, and refuses a home with a problem. What it
// repaired, and what is worth knowing, goes to stderr.
func (e *env) checkHome(c *cli.Context, h home.Home, store ds.Batching) error {
	rep := doctor.Run(c.Context, h, doctor.Options{Mode: doctor.Start, Built: buildTime(), Store: store})
	if rep.InUse != nil {
		return rep.InUse
	}
	var news []doctor.Finding
	for _, f := range rep.Findings {
		if f.Status == doctor.Repaired || f.Status == doctor.Warning {
			news = append(news, f)
		}
	}
	if len(news) > 0 {
		fmt.Fprintf(e.stderr, "Checked the home %s:\n", h.Dir)
		printFindings(e.stderr, news, true)
	}
	if err := rep.Err(); err != nil {
		return fmt.Errorf("%w\n(dms doctor lists every check; --fix repairs what it can)", err)
	}
	return nil
}

// listenMetrics opens the --metrics listener, refusing an address other
// hosts can reach unless --metrics-allow-remote says so.
func listenMetrics(c *cli.Context) (net.Listener, error) {
	addr := c.String("metrics")
	if addr == "" {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, badValue("metrics", addr, fmt.Errorf("want HOST:PORT, e.g. 127.0.0.1:9464"))
	}
	if !c.Bool("metrics-allow-remote") {
		ip := net.ParseIP(host)
		if !(host == "localhost" || ip != nil && ip.IsLoopback()) {
			return nil, badValue("metrics", addr, fmt.Errorf("not a loopback address: metrics name this node's peers and jobs; use 127.0.0.1:PORT, or add --metrics-allow-remote to serve them to other hosts"))
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	return ln, nil
}

// listenRemote opens the --control-listen listener with its token, read
// from --control-token-file (created when missing).
func listenRemote(c *cli.Context, h home.Home) (ln net.Listener, token, path string, created bool, err error) {
	addr := c.String("control-listen")
	if addr == "" {
		if c.IsSet("control-token-file") {
			return nil, "", "", false, usagef("--control-token-file is the token of --control-listen, which is not given")
		}
		return nil, "", "", false, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, "", "", false, badValue("control-listen", addr, fmt.Errorf("want HOST:PORT, e.g. 0.0.0.0:7464"))
	}
	path = filepath.Join(h.Dir, api.TokenFile)
	if c.IsSet("control-token-file") {
		if path, err = filepath.Abs(c.String("control-token-file")); err != nil {
			return nil, "", "", false, err
		}
	}
	if token, created, err = api.EnsureToken(path); err != nil {
		return nil, "", "", false, &usageError{msg: "--control-token-file: " + err.Error(), err: err}
	}
	if ln, err = net.Listen("tcp", addr); err != nil {
		return nil, "", "", false, fmt.Errorf("--control-listen %s: %w", addr, err)
	}
	return ln, token, path, created, nil
}

// applyRunFlags puts the flags over the settings (which already hold the
// environment over the config file); a value that does not parse names its
// flag. The checks are the config file's (package home).
func applyRunFlags(c *cli.Context, s *home.Settings) error {
	if c.IsSet("listen") {
		s.Listen = nil
		for _, a := range c.StringSlice("listen") {
			if err := home.ParseListen(a); err != nil {
				return badValue("listen", a, err)
			}
			s.Listen = append(s.Listen, a)
		}
	}
	if c.IsSet("bootstrap") {
		s.Bootstrap = nil
		for _, a := range c.StringSlice("bootstrap") {
			if err := home.ParseBootstrap(a); err != nil {
				return badValue("bootstrap", a, err)
			}
			s.Bootstrap = append(s.Bootstrap, a)
		}
	}
	if c.IsSet("network") {
		v := c.String("network")
		if err := home.ParseNetwork(v); err != nil {
			return badValue("network", v, err)
		}
		s.Network = v
	}
	if c.IsSet("abandon-grace") {
		v := c.String("abandon-grace")
		d, err := home.ParseAbandonGrace(v)
		if err != nil {
			return badValue("abandon-grace", v, err)
		}
		s.AbandonGrace = d
	}
	if c.IsSet("swarm-key") {
		v := c.String("swarm-key")
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		abs, err := home.ParseSwarmKey(v, wd)
		if err != nil {
			return badValue("swarm-key", v, err)
		}
		s.SwarmKey = abs
	}
	return nil
}

// runP2POptions turns the settings and the p2p flags into p2p options,
// applied after the preset's; presetListen leaves the preset's listen
// addresses in place.
func runP2POptions(c *cli.Context, s home.Settings, presetListen bool) ([]p2p.Option, error) {
	opts := []p2p.Option{p2p.WithNetwork(s.Network)}
	if !presetListen {
		opts = append(opts, p2p.WithListenAddrStrings(s.Listen...))
	}
	if len(s.Bootstrap) > 0 {
		opts = append(opts, p2p.WithBootstrapAddrs(s.Bootstrap...))
	}
	if s.SwarmKey != "" {
		psk, err := p2p.LoadSwarmKey(s.SwarmKey)
		if err != nil {
			return nil, fmt.Errorf("swarm_key (config file or %s): %w", home.EnvVar("swarm_key"), err)
		}
		opts = append(opts, p2p.WithPSK(psk))
	}
	if c.Bool("relay-service") {
		opts = append(opts, p2p.WithRelayService(true))
	}
	if c.IsSet("reachability") {
		v := c.String("reachability")
		if _, err := p2p.ParseReachability(v); err != nil {
			return nil, badValue("reachability", v, err)
		}
		opts = append(opts, p2p.WithReachability(v))
	}
	if c.IsSet("dht-mode") {
		v := c.String("dht-mode")
		m, err := p2p.ParseDHTMode(v)
		if err != nil {
			return nil, badValue("dht-mode", v, err)
		}
		opts = append(opts, p2p.WithDHTMode(m))
	}
	return opts, nil
}
