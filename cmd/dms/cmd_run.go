package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/p2p"
)

// shutdownTimeout bounds how long the control server waits for the calls
// under way (cancelled at shutdown) to return.
const shutdownTimeout = 10 * time.Second

// wasmCacheDir is where compiled wasm modules are kept across restarts,
// relative to the home.
var wasmCacheDir = filepath.Join("cache", "wasm")

func (e *env) runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "start the node: join the mesh, bid for jobs when onboarded, serve the other commands",
		UsageText: "dms run [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--network NAME] [--swarm-key FILE] [--dht-mode auto|server|client] [--local]",
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
			&cli.BoolFlag{Name: "local", Usage: "run as a node of a test network on this machine: loopback addresses, DHT server, short timeouts, no machine monitor"},
		},
		Action: e.runNode,
	}
}

// runNode is `dms run`: it returns when ctx ends (a signal) and everything
// it started has stopped.
func (e *env) runNode(c *cli.Context) (err error) {
	dir, _ := global(c, "home")
	home, err := node.OpenHome(dir)
	if err != nil {
		return err
	}
	settings, err := home.Settings(os.Getenv)
	if err != nil {
		return err
	}
	if _, ok := global(c, "log-level"); !ok {
		e.level.Set(settings.LogLevel)
	}
	listenSet := c.IsSet("listen") || !slices.Equal(settings.Listen, node.DefaultSettings().Listen)
	if err := applyRunFlags(c, &settings); err != nil {
		return err
	}
	p2pOpts, err := runP2POptions(c, settings)
	if err != nil {
		return err
	}

	// The datastore first: it is the home's lock, so a second node on the
	// same home stops here, before touching the socket of the first.
	store, err := home.OpenDatastore()
	if err != nil {
		return err
	}
	defer func() {
		if err = errors.Join(err, store.Close()); err == nil {
			e.log.Info("node stopped")
		}
	}()
	key, err := home.Identity()
	if err != nil {
		return err
	}

	var cfg node.Config
	if c.Bool("local") {
		cfg = node.LocalConfig(home.Dir)
		if !listenSet {
			// The preset's 127.0.0.1 on a free port, rather than the
			// default settings' 0.0.0.0:4001, which a second node would
			// find taken.
			p2pOpts = slices.DeleteFunc(p2pOpts, func(o namedOption) bool { return o.name == "listen" })
		}
	} else {
		cfg = node.DefaultConfig(home.Dir)
	}
	for _, o := range p2pOpts {
		cfg.P2P = append(cfg.P2P, o.opt)
	}
	cfg.Datastore, cfg.Key, cfg.Reserve, cfg.Logger = store, key, settings.Reserve, e.log
	cfg.WasmCacheDir = filepath.Join(home.Dir, wasmCacheDir)
	if err := os.MkdirAll(cfg.WasmCacheDir, 0o700); err != nil {
		return fmt.Errorf("wasm cache: %w", err)
	}

	n, err := node.New(c.Context, cfg)
	if err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	defer func() { err = errors.Join(err, n.Close()) }()

	srv := newControlServer(e.log)
	registerMeshAPI(srv, n, home.Dir, newNodeController(n, home, settings, e.log))
	registerJobAPI(srv, n)
	if err := srv.listen(home.Dir); err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		err = errors.Join(err, srv.close(ctx))
	}()

	fmt.Fprintf(e.stdout, "peer id: %s\n", n.ID())
	fmt.Fprintf(e.stdout, "network: %s\n", n.Host().Network())
	for _, a := range n.Addrs() {
		fmt.Fprintf(e.stdout, "listening on: %s\n", a)
	}
	fmt.Fprintf(e.stdout, "control socket: %s\n", socketPath(home.Dir))
	if !n.Onboarded() {
		fmt.Fprintf(e.stderr, "Not onboarded: this node joins the mesh and can submit jobs, but does not bid (dms --home %s onboard --cpu N --memory SIZE --disk SIZE).\n", shellQuote(home.Dir))
	}
	fmt.Fprintln(e.stdout, "ready")

	<-c.Context.Done()
	e.log.Info("stopping the node")
	return nil
}

// applyRunFlags puts the flags over the settings (which already hold the
// environment over the config file); a value that does not parse names its
// flag.
func applyRunFlags(c *cli.Context, s *node.Settings) error {
	if c.IsSet("listen") {
		s.Listen = nil
		for _, a := range c.StringSlice("listen") {
			if err := p2p.WithListenAddrStrings(a)(new(p2p.Config)); err != nil {
				return badValue("listen", a, errors.New("want a multiaddr such as /ip4/0.0.0.0/tcp/4001 or /ip4/0.0.0.0/udp/4001/quic-v1"))
			}
			s.Listen = append(s.Listen, a)
		}
	}
	if c.IsSet("bootstrap") {
		s.Bootstrap = nil
		for _, a := range c.StringSlice("bootstrap") {
			if _, err := p2p.ParseAddrInfos(a); err != nil {
				return badValue("bootstrap", a, errors.New("want a multiaddr ending in /p2p/<peer ID>, e.g. /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW..."))
			}
			s.Bootstrap = append(s.Bootstrap, a)
		}
	}
	if c.IsSet("network") {
		v := c.String("network")
		if err := p2p.WithNetwork(v)(new(p2p.Config)); err != nil {
			return badValue("network", v, errors.New("want 1 to 32 characters of a-z 0-9 - _ ."))
		}
		s.Network = v
	}
	if c.IsSet("swarm-key") {
		v := c.String("swarm-key")
		if v == "" {
			return badValue("swarm-key", v, errors.New("want the path of a swarm key file"))
		}
		abs, err := filepath.Abs(v)
		if err != nil {
			return badValue("swarm-key", v, err)
		}
		if _, err := p2p.LoadSwarmKey(abs); err != nil {
			return badValue("swarm-key", v, err)
		}
		s.SwarmKey = abs
	}
	return nil
}

// namedOption is a p2p option with the setting it comes from.
type namedOption struct {
	name string
	opt  p2p.Option
}

// runP2POptions turns the settings and --dht-mode into p2p options.
func runP2POptions(c *cli.Context, s node.Settings) ([]namedOption, error) {
	opts := []namedOption{
		{"listen", p2p.WithListenAddrStrings(s.Listen...)},
		{"network", p2p.WithNetwork(s.Network)},
	}
	if len(s.Bootstrap) > 0 {
		opts = append(opts, namedOption{"bootstrap", p2p.WithBootstrapAddrs(s.Bootstrap...)})
	}
	if s.SwarmKey != "" {
		psk, err := p2p.LoadSwarmKey(s.SwarmKey)
		if err != nil {
			return nil, fmt.Errorf("swarm_key (config file or %s): %w", node.EnvVar("swarm_key"), err)
		}
		opts = append(opts, namedOption{"swarm-key", p2p.WithPSK(psk)})
	}
	if c.IsSet("dht-mode") {
		v := c.String("dht-mode")
		m, err := p2p.ParseDHTMode(v)
		if err != nil {
			return nil, badValue("dht-mode", v, err)
		}
		opts = append(opts, namedOption{"dht-mode", p2p.WithDHTMode(m)})
	}
	return opts, nil
}
