package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/testnet"
)

func testnetDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "dir", Usage: "the test network's `DIR`: one home per node (node-0, node-1, ...), swarm.key, testnet.json",
		Value: testnet.DefaultDir(), EnvVars: []string{"DMS_TESTNET_DIR"}}
}

func (e *env) testnetCommand() *cli.Command {
	subs := []*cli.Command{e.testnetUpCommand(), e.testnetAddCommand(), e.testnetStatusCommand(), e.testnetFaultCommand(), e.testnetDownCommand()}
	return e.commandGroup("testnet", "run a private test network of dms nodes on this machine",
		"Starts several dms run processes on 127.0.0.1, each with its own home, on a private\n"+
			"network of their own (a random network ID and a new swarm key), and records them in\n"+
			"DIR/testnet.json. Point any command at a node with --home DIR/node-N.",
		subs)
}

func (e *env) testnetUpCommand() *cli.Command {
	return &cli.Command{
		Name:      "up",
		Usage:     "start a test network and wait until gossip reaches every node",
		UsageText: "dms testnet up [--nodes N] [--dir DIR] [--offer-cpu CORES] [--offer-memory SIZE] [--offer-disk SIZE] [--executors LIST] [--no-onboard] [--containers] [--abandon-grace D] [--timeout D]",
		Description: "Creates a network ID (testnet-<hex>) and a swarm key (DIR/swarm.key), a home per node\n" +
			"(DIR/node-0 ... DIR/node-(N-1); homes left by an earlier network in DIR are reused), onboards\n" +
			"each node with the offer given, and starts N dms run --local processes in waves (node-0,\n" +
			"node-1, then 2, 4, 8, 16 at a time), each bootstrapping from up to three nodes of earlier\n" +
			"waves. Each runs detached, in its own process group, logging to DIR/node-N/node.log, so\n" +
			"the network outlives this command. It returns once every node has peers on the\n" +
			"bid-request topic and a probe published by node-0 has reached every node (a mesh, not\n" +
			"a full graph), or fails after --timeout naming the nodes that fall short, and stops\n" +
			"what it started.\n\n" +
			"With --containers each node runs in a Docker container of its own (an image FROM\n" +
			"scratch with this binary, which must be static: CGO_ENABLED=0 go build), on a Docker\n" +
			"network of the test network's own with no route out, so each has an address of its\n" +
			"own and dms testnet fault can cut one off; homes, sockets and logs stay in DIR.\n\n" +
			"Each node's offer is checked against the whole machine, as if it ran alone, so N nodes\n" +
			"together offer N times as much: a test network overcommits the machine on purpose (its\n" +
			"jobs are small). Refuses to start while a test network is up in DIR. --log-level is\n" +
			"passed on to the nodes.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Usage: fmt.Sprintf("how many nodes, 1 to %d", testnet.MaxNodes), Value: 3},
			testnetDirFlag(),
			&cli.StringFlag{Name: "offer-cpu", Usage: "cores each node offers, e.g. 1, 0.5 or 500m", Value: "1"},
			&cli.StringFlag{Name: "offer-memory", Usage: "memory each node offers, e.g. 512MiB", Value: "512MiB"},
			&cli.StringFlag{Name: "offer-disk", Usage: "disk each node offers, e.g. 1GiB", Value: "1GiB"},
			&cli.StringFlag{Name: "executors", Usage: "the kinds of job each node runs, comma-separated: wasm, docker, native", Value: "wasm"},
			&cli.BoolFlag{Name: "no-onboard", Usage: "offer nothing: the nodes join and can submit jobs, but none bids"},
			&cli.DurationFlag{Name: "timeout", Usage: "how long the nodes may take to start and hear each other", DefaultText: "60s, plus 1s a node past 20"},
			&cli.BoolFlag{Name: "containers", Usage: "run each node in a container of its own (Docker), with an address of its own, so that dms testnet fault can cut one off"},
			&cli.StringFlag{Name: "abandon-grace", Usage: "passed to each node: how long it runs an allocation nobody follows any more (dms run --abandon-grace)"},
			&cli.BoolFlag{Name: "json", Usage: "print the test network's record (DIR/testnet.json) as JSON"},
		},
		Action: e.testnetUp,
	}
}

func (e *env) testnetAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "start one more node joined to the test network that is up in --dir",
		UsageText: "dms testnet add [--dir DIR] [--offer-cpu CORES] [--offer-memory SIZE] [--offer-disk SIZE] [--executors LIST] [--no-onboard] [--timeout D]",
		Description: "Creates the next home (DIR/node-N), records the network, its swarm key and node-0 as\n" +
			"bootstrap peer in its config, onboards it with the offer given, and starts a dms run\n" +
			"--local process for it. It returns once every node sees the new one, and adds it to\n" +
			"DIR/testnet.json, so dms testnet status and down include it.",
		Flags: []cli.Flag{
			testnetDirFlag(),
			&cli.StringFlag{Name: "offer-cpu", Usage: "cores the node offers, e.g. 1, 0.5 or 500m", Value: "1"},
			&cli.StringFlag{Name: "offer-memory", Usage: "memory the node offers, e.g. 512MiB", Value: "512MiB"},
			&cli.StringFlag{Name: "offer-disk", Usage: "disk the node offers, e.g. 1GiB", Value: "1GiB"},
			&cli.StringFlag{Name: "executors", Usage: "the kinds of job the node runs, comma-separated: wasm, docker, native", Value: "wasm"},
			&cli.BoolFlag{Name: "no-onboard", Usage: "offer nothing: the node joins and can submit jobs, but does not bid"},
			&cli.DurationFlag{Name: "timeout", Usage: "how long the node may take to start and be seen by the others", Value: 60 * time.Second},
		},
		Action: func(c *cli.Context) error {
			opts := testnet.Options{Dir: c.String("dir"), Timeout: c.Duration("timeout"), Log: e.log, Progress: e.stderr}
			if opts.Timeout <= 0 {
				return usagef("invalid value %v for --timeout: want a positive duration, e.g. 60s", opts.Timeout)
			}
			if err := nodeOptions(c, &opts); err != nil {
				return err
			}
			rec, err := testnet.Add(c.Context, opts)
			if err != nil {
				return offerFlagError(err)
			}
			n := rec.Nodes[len(rec.Nodes)-1]
			fmt.Fprintf(e.stdout, "%s joined test network %s (pid %d), %d nodes now.\n", n.Name, rec.Network, n.PID, len(rec.Nodes))
			fmt.Fprintf(e.stdout, "  dms --home %s status\n", home.ShellQuote(n.Home))
			return nil
		},
	}
}

// nodeOptions fills in what each new node of a test network starts with:
// its offer (none with --no-onboard) and the log level.
func nodeOptions(c *cli.Context, opts *testnet.Options) error {
	if !c.Bool("no-onboard") {
		offer, err := testnetOffer(c)
		if err != nil {
			return err
		}
		opts.Offer = &offer
	}
	opts.LogLevel, _ = global(c, "log-level")
	return nil
}

func (e *env) testnetUp(c *cli.Context) error {
	opts := testnet.Options{Dir: c.String("dir"), Nodes: c.Int("nodes"), Timeout: c.Duration("timeout"), Log: e.log, Progress: e.stderr, Containers: c.Bool("containers")}
	if opts.Nodes < 1 || opts.Nodes > testnet.MaxNodes {
		return usagef("invalid value %d for --nodes: want 1 to %d", opts.Nodes, testnet.MaxNodes)
	}
	if !c.IsSet("timeout") {
		opts.Timeout = 60*time.Second + time.Duration(max(0, opts.Nodes-20))*time.Second
	}
	if opts.Timeout <= 0 {
		return usagef("invalid value %v for --timeout: want a positive duration, e.g. 60s", opts.Timeout)
	}
	if c.IsSet("abandon-grace") {
		d, err := home.ParseAbandonGrace(c.String("abandon-grace"))
		if err != nil {
			return badValue("abandon-grace", c.String("abandon-grace"), err)
		}
		opts.AbandonGrace = d
	}
	if opts.Containers {
		if err := testnet.DockerAvailable(c.Context); err != nil {
			return fmt.Errorf("--containers: %w; run without --containers for a network of processes", err)
		}
	}
	if opts.Dir == "" {
		return usagef("invalid value \"\" for --dir: want a directory")
	}
	if abs, err := filepath.Abs(opts.Dir); err == nil {
		if p := home.SocketPath(filepath.Join(abs, fmt.Sprintf("node-%d", opts.Nodes-1))); len(p) > home.MaxSocketPath {
			return usagef("invalid value %q for --dir: too long for the nodes' control sockets (%s is %d bytes, at most %d); pick a shorter path", opts.Dir, p, len(p), home.MaxSocketPath)
		}
	}
	if err := nodeOptions(c, &opts); err != nil {
		return err
	}
	start := time.Now()
	rec, err := testnet.Up(c.Context, opts)
	if err != nil {
		return offerFlagError(err)
	}
	took := time.Since(start)
	if c.Bool("json") {
		return printJSON(e.stdout, rec)
	}
	offer := "offering nothing (not onboarded)"
	if o := opts.Offer; o != nil {
		offer = fmt.Sprintf("each offering cpu=%s memory=%s disk=%s", capability.FormatCPU(*o.CPU), capability.FormatBytes(*o.Memory), capability.FormatBytes(*o.Disk))
	}
	fmt.Fprintf(e.stdout, "Test network %s is up: %d %s, %s; took %s.\n\n", rec.Network, len(rec.Nodes), plural(len(rec.Nodes), "node", "nodes"), offer, took.Round(10*time.Millisecond))
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPID\tADDRESS\tHOME")
	for _, n := range rec.Nodes {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", n.Name, n.PID, strings.Join(n.Addrs, " "), n.Home)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeTrimmed(e.stdout, buf.Bytes()); err != nil {
		return err
	}
	last := home.ShellQuote(rec.Nodes[len(rec.Nodes)-1].Home)
	dir := home.ShellQuote(rec.Dir)
	fmt.Fprintf(e.stdout, "\nPoint the CLI at a node with --home, e.g.:\n  dms --home %s peers\n  dms --home %s status\n", last, last)
	fmt.Fprintf(e.stdout, "Each node logs to its home's node.log. Check on them with: dms testnet status --dir %s\nStop them with: dms testnet down --dir %s\n", dir, dir)
	return nil
}

// testnetOffer reads the --offer-* flags.
func testnetOffer(c *cli.Context) (api.OnboardRequest, error) {
	var req api.OnboardRequest
	for _, f := range []struct {
		name  string
		parse func(string) (uint64, error)
		dst   **uint64
	}{
		{"offer-cpu", capability.ParseCPU, &req.CPU},
		{"offer-memory", capability.ParseBytes, &req.Memory},
		{"offer-disk", capability.ParseBytes, &req.Disk},
	} {
		v, err := f.parse(c.String(f.name))
		if err != nil {
			return req, badValue(f.name, c.String(f.name), err)
		}
		*f.dst = &v
	}
	var kinds []string
	for _, k := range strings.Split(c.String("executors"), ",") {
		if k = strings.ToLower(strings.TrimSpace(k)); k != "" {
			kinds = append(kinds, k)
		}
	}
	req.Executors = &kinds
	return req, nil
}

func (e *env) testnetStatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show each node of the test network: running or not, and its peers",
		Description: "Reads DIR/testnet.json and asks each running node for its peers. A node is found by\n" +
			"its home: the process the network started or, when that is gone, the process that holds\n" +
			"the home's lock (a node restarted by hand with dms --home DIR/node-N run) or answers on its\n" +
			"control socket; PID is the process running it now. Exits 1 when no test network is up in\n" +
			"DIR, or when any of its nodes is not running.",
		Flags: []cli.Flag{
			testnetDirFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print as JSON"},
		},
		Action: func(c *cli.Context) error {
			dir, err := filepath.Abs(c.String("dir"))
			if err != nil {
				return err
			}
			rec, err := testnet.Read(dir)
			if err != nil {
				return err
			}
			nodes := testnet.Status(c.Context, rec)
			down := 0
			for _, n := range nodes {
				if !n.Running {
					down++
				}
			}
			if c.Bool("json") {
				if err := printJSON(e.stdout, struct {
					Network string               `json:"network"`
					Dir     string               `json:"dir"`
					Started time.Time            `json:"started"`
					Nodes   []testnet.NodeStatus `json:"nodes"`
				}{rec.Network, rec.Dir, rec.Started, nodes}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdout, "Test network %s in %s, started %s ago:\n", rec.Network, rec.Dir, time.Since(rec.Started).Round(time.Second))
				var buf bytes.Buffer
				tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tPID\tRUNNING\tPEERS\tON TOPIC\tPEER ID")
				for _, n := range nodes {
					running, peers, topic := "no", "-", "-"
					if n.Running {
						running = "yes"
						if n.Error != "" {
							peers = "? (" + n.Error + ")"
						} else {
							peers, topic = fmt.Sprint(n.Peers), fmt.Sprint(n.TopicPeers)
						}
					}
					if n.StartedPID != 0 {
						running = fmt.Sprintf("yes (restarted outside testnet; started as pid %d)", n.StartedPID)
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", n.Name, n.PID, running, peers, topic, n.PeerID)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if err := writeTrimmed(e.stdout, buf.Bytes()); err != nil {
					return err
				}
			}
			if down > 0 {
				return fmt.Errorf("%d of %d nodes are not running; see node.log in their homes", down, len(nodes))
			}
			return nil
		},
	}
}

func (e *env) testnetDownCommand() *cli.Command {
	return &cli.Command{
		Name:  "down",
		Usage: "stop every node of the test network",
		Description: "Sends SIGTERM to each node, waits up to --timeout for them to stop cleanly, then\n" +
			"SIGKILLs what is left, and removes DIR/testnet.json once no node process is left. A node\n" +
			"is found by its home, as status finds it, so one restarted by hand is stopped too. The\n" +
			"homes and their logs stay, for a look or the next dms testnet up; --clean removes them,\n" +
			"and refuses (removing nothing) while any node still runs on one of them.",
		Flags: []cli.Flag{
			testnetDirFlag(),
			&cli.BoolFlag{Name: "clean", Usage: "also remove the homes, logs, swarm key and binary copy the network left in DIR"},
			&cli.DurationFlag{Name: "timeout", Usage: "how long the nodes may take to stop before they are killed", Value: 10 * time.Second},
		},
		Action: func(c *cli.Context) error {
			dir, err := filepath.Abs(c.String("dir"))
			if err != nil {
				return err
			}
			rec, err := testnet.Read(dir)
			switch {
			case errors.Is(err, testnet.ErrNotUp):
				fmt.Fprintf(e.stdout, "No test network is up in %s.\n", dir)
			case err != nil:
				return err
			default:
				running := testnet.Running(rec.Nodes)
				for i, n := range rec.Nodes {
					if j := slices.IndexFunc(running, func(r testnet.Process) bool { return r.Name == n.Name }); j >= 0 && running[j].PID != rec.Nodes[i].PID {
						fmt.Fprintf(e.stdout, "%s was restarted outside testnet: stopping pid %d (it started as pid %d).\n", n.Name, running[j].PID, n.PID)
					}
				}
				if err := testnet.Stop(rec.Nodes, c.Duration("timeout")); err != nil {
					return fmt.Errorf("stop test network %s: %w; %s kept", rec.Network, err, testnet.RecordPath(dir))
				}
				if rec.Containers {
					if err := testnet.RemoveDockerNetwork(c.Context, rec.DockerNetwork); err != nil {
						return fmt.Errorf("stop test network %s: %w; %s kept", rec.Network, err, testnet.RecordPath(dir))
					}
				}
				if err := os.Remove(testnet.RecordPath(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
				note := ""
				if d := len(rec.Nodes) - len(running); d > 0 {
					note = fmt.Sprintf(" (%d more %s not running)", d, plural(d, "was", "were"))
				}
				fmt.Fprintf(e.stdout, "Stopped test network %s: %d %s%s.\n", rec.Network, len(running), plural(len(running), "node", "nodes"), note)
			}
			if !c.Bool("clean") {
				if rec != nil {
					fmt.Fprintf(e.stdout, "Homes and logs are kept in %s (--clean removes them).\n", dir)
				}
				return nil
			}
			removed, err := testnet.Clean(dir)
			if err != nil {
				return err
			}
			if removed > 0 {
				fmt.Fprintf(e.stdout, "Removed %d %s from %s.\n", removed, plural(removed, "home", "homes"), dir)
			}
			return nil
		},
	}
}

func (e *env) testnetFaultCommand() *cli.Command {
	return &cli.Command{
		Name:      "fault",
		Usage:     "cut a node of a container test network off, make it lose or delay packets, or heal it",
		UsageText: "dms testnet fault --node NAME (--partition | --loss PERCENT | --delay D | --heal) [--dir DIR]",
		Description: "Changes the network of one node of a test network started with --containers, inside\n" +
			"that node's own network namespace: --partition drops every packet to and from it (no\n" +
			"reset, no ICMP: as a cut cable looks), --loss drops a share of them at random, --delay\n" +
			"delays what it sends; --heal removes all of that. Its control socket keeps answering.\n" +
			"Needs root, and iptables and tc (Debian: iptables, iproute2) on this machine.",
		Flags: []cli.Flag{
			testnetDirFlag(),
			&cli.StringFlag{Name: "node", Usage: "the node, e.g. node-3", Required: true},
			&cli.BoolFlag{Name: "partition", Usage: "drop every packet to and from the node"},
			&cli.StringFlag{Name: "loss", Usage: "drop this share of its packets, e.g. 30%"},
			&cli.DurationFlag{Name: "delay", Usage: "delay each packet it sends by this much, e.g. 200ms"},
			&cli.BoolFlag{Name: "heal", Usage: "remove any fault"},
		},
		Action: func(c *cli.Context) error {
			var f testnet.Fault
			f.Partition, f.Delay = c.Bool("partition"), c.Duration("delay")
			if v := c.String("loss"); v != "" {
				p, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "%"), 64)
				if err != nil || p < 0 || p > 100 {
					return usagef("invalid value %q for --loss: want a percentage of 0 to 100, e.g. 30%%", v)
				}
				f.Loss = p / 100
			}
			if f.Delay < 0 {
				return usagef("invalid value %v for --delay: want a positive duration, e.g. 200ms", f.Delay)
			}
			if (f == testnet.Fault{}) != c.Bool("heal") {
				return usagef("give --partition, --loss or --delay, or --heal alone")
			}
			dir, err := filepath.Abs(c.String("dir"))
			if err != nil {
				return err
			}
			rec, err := testnet.Read(dir)
			if err != nil {
				return err
			}
			if err := testnet.Inject(c.Context, rec, c.String("node"), f); err != nil {
				return err
			}
			switch {
			case c.Bool("heal"):
				fmt.Fprintf(e.stdout, "%s: healed.\n", c.String("node"))
			default:
				fmt.Fprintf(e.stdout, "%s: partition=%v loss=%g%% delay=%v.\n", c.String("node"), f.Partition, 100*f.Loss, f.Delay)
			}
			return nil
		},
	}
}

// offerFlagError names the --offer-* flag behind an offer the machine
// refused.
func offerFlagError(err error) error {
	var oe *onboarding.OfferError
	if errors.As(err, &oe) && slices.Contains([]string{"cpu", "memory", "disk"}, oe.Field) {
		return &usageError{msg: fmt.Sprintf("invalid value %s for --offer-%s: %s", oe.Value, oe.Field, oe.Reason), err: err}
	}
	return err
}
