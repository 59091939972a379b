package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/p2p"
)

// shutdownTimeout bounds how long the control server waits for the calls
// under way (cancelled at shutdown) to return.
const shutdownTimeout = 10 * time.Second

func (e *env) runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "start the node: join the mesh, bid for jobs when onboarded, serve the other commands",
		UsageText: "dms run [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--network NAME] [--swarm-key FILE] [--dht-mode auto|server|client] [--abandon-grace D] [--local]",
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
			&cli.StringFlag{Name: "abandon-grace", Usage: "how long an allocation run for a requester that stopped following it goes on before it is stopped, 1s to 24h (default: the config's abandon_grace, else 15s, 3s with --local)"},
			&cli.BoolFlag{Name: "local", Usage: "run as a node of a test network on this machine: loopback addresses, DHT server, short timeouts, no machine monitor"},
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
	listenSet := c.IsSet("listen") || !slices.Equal(settings.Listen, home.DefaultSettings().Listen)
	if err := applyRunFlags(c, &settings); err != nil {
		return err
	}
	p2pOpts, err := runP2POptions(c, settings)
	if err != nil {
		return err
	}

	// The datastore first: it is the home's lock, so a second node on the
	// same home stops here, before touching the socket of the first.
	store, err := h.OpenDatastore()
	if err != nil {
		return err
	}
	defer func() {
		if err = errors.Join(err, store.Close()); err == nil {
			e.log.Info("node stopped")
		}
	}()
	key, err := h.Identity()
	if err != nil {
		return err
	}

	var cfg node.Config
	if c.Bool("local") {
		cfg = node.LocalConfig(h.Dir)
		if !listenSet {
			// The preset's 127.0.0.1 on a free port, rather than the
			// default settings' 0.0.0.0:4001, which a second node would
			// find taken.
			p2pOpts = slices.DeleteFunc(p2pOpts, func(o namedOption) bool { return o.name == "listen" })
		}
	} else {
		cfg = node.DefaultConfig(h.Dir)
	}
	for _, o := range p2pOpts {
		cfg.P2P = append(cfg.P2P, o.opt)
	}
	cfg.Datastore, cfg.Key, cfg.Reserve, cfg.DefaultPrice, cfg.Logger = store, key, settings.Reserve, settings.Price, e.log
	if settings.AbandonGrace > 0 {
		cfg.Orchestrator.Provider.AbandonGrace = settings.AbandonGrace
	}
	cfg.WasmCacheDir = h.WasmCachePath()
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
	if !n.Onboarded() {
		fmt.Fprintf(e.stderr, "Not onboarded: this node joins the mesh and can submit jobs, but does not bid (dms --home %s onboard --cpu N --memory SIZE --disk SIZE).\n", home.ShellQuote(h.Dir))
	}
	fmt.Fprintln(e.stdout, "ready")

	<-c.Context.Done()
	e.log.Info("stopping the node")
	return nil
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

// namedOption is a p2p option with the setting it comes from.
type namedOption struct {
	name string
	opt  p2p.Option
}

// runP2POptions turns the settings and --dht-mode into p2p options.
func runP2POptions(c *cli.Context, s home.Settings) ([]namedOption, error) {
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
			return nil, fmt.Errorf("swarm_key (config file or %s): %w", home.EnvVar("swarm_key"), err)
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
