package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// demoTimeout bounds the whole demo, so that a network that never forms
// ends in an error rather than a hang.
const demoTimeout = 2 * time.Minute

// demoRequester is the node that submits: not node 0, the bootstrap node,
// to show that any peer can submit.
const demoRequester = 1

// demoJob is the sample job's needs: small enough for any provider of the
// demo (1 core, 1 GiB each).
var demoJob = orchestrator.JobSpec{
	Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: 128 * capability.MiB},
	Duration:     seconds.Duration(time.Minute),
	Executor:     orchestrator.ExecutorWasm,
	Args:         []string{"world"},
}

// demoPrice is what provider i asks per core-hour. The prices differ so
// that the ranking (price first) has something to decide; they are spread
// so that the winner is not simply the first or last node.
func demoPrice(i int) capability.PriceInformation {
	return capability.PriceInformation{PerCoreHour: float64(1 + (i*3+2)%7)}
}

// demoNode is one node of the demo network, for the report.
type demoNode struct {
	Index int                          `json:"index"`
	ID    peer.ID                      `json:"id"`
	Role  string                       `json:"role"`
	Price *capability.PriceInformation `json:"price,omitempty"`
}

// demoReport is what dms demo --json prints.
type demoReport struct {
	Network   string         `json:"network"`
	Nodes     []demoNode     `json:"nodes"`
	Requester int            `json:"requester"`
	Winner    int            `json:"winner"` // node index, -1 if none
	Job       node.JobRecord `json:"job"`
	Timings   struct {
		NetworkUp       seconds.Duration `json:"network_up"`
		SubmitToRunning seconds.Duration `json:"submit_to_running"`
		SubmitToDone    seconds.Duration `json:"submit_to_done"`
	} `json:"timings"`
}

func (e *env) demoCommand() *cli.Command {
	return &cli.Command{
		Name:      "demo",
		UsageText: "dms demo [--nodes N] [--json]",
		Usage:     "start a private network of nodes in this process and run a sample job on it",
		Description: "Needs no setup and touches no home: starts --nodes nodes in this one process on\n" +
			"127.0.0.1, on a private network of their own (a random network ID and swarm key), onboards\n" +
			"every node but node 1, which submits the bundled sample job (hello.wasm, WebAssembly).\n" +
			"Node 0 is the bootstrap node the others join through. The providers ask different prices,\n" +
			"so the bids differ; the requester picks the best. Shows the nodes, the bids, the winner,\n" +
			"the job's output and the timings, then stops every node. Exit status 0 when the job ran\n" +
			"and exited 0. Node logs at warn and above go to stderr (--log-level shows more).",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Usage: "how many nodes to start, 2 to 50", Value: 5},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON report at the end instead of the running account"},
		},
		Action: e.demo,
	}
}

func (e *env) demo(c *cli.Context) (err error) {
	nodes := c.Int("nodes")
	if nodes < 2 || nodes > 50 {
		return badValue("nodes", fmt.Sprint(nodes), errors.New("want 2 to 50: node 1 submits, the others offer"))
	}
	asJSON := c.Bool("json")
	out := e.stdout
	if asJSON {
		out = io.Discard
	}
	ctx, cancel := context.WithTimeout(c.Context, demoTimeout)
	defer cancel()
	defer func() {
		if err != nil && c.Context.Err() != nil {
			err = errors.New("demo interrupted")
		} else if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("demo did not finish within %s: %w", demoTimeout, err)
		}
	}()

	log := e.log
	if _, ok := global(c, "log-level"); !ok {
		log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	fmt.Fprintf(out, "Starting %d dms nodes in this process: a private network on 127.0.0.1 ...\n", nodes)
	t0 := time.Now()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{Nodes: nodes, Requesters: []int{demoRequester}, Logger: log})
	if err != nil {
		return fmt.Errorf("start the demo network: %w", err)
	}
	defer func() {
		if cerr := ln.Close(); cerr != nil {
			fmt.Fprintf(e.stderr, "dms: stopping the demo network: %v\n", cerr)
		}
	}()
	var rep demoReport
	rep.Network, rep.Requester, rep.Winner = ln.Network, demoRequester, -1
	rep.Timings.NetworkUp = seconds.Duration(time.Since(t0))
	index := map[peer.ID]int{}
	for i, n := range ln.Nodes {
		index[n.ID()] = i
		dn := demoNode{Index: i, ID: n.ID(), Role: "provider"}
		switch i {
		case 0:
			dn.Role = "bootstrap, provider"
		case demoRequester:
			dn.Role = "requester (offers nothing)"
		}
		if i != demoRequester {
			price := demoPrice(i)
			if _, err := n.Onboard(ctx, onboarding.Request{Price: &price}, nil); err != nil {
				return fmt.Errorf("set node %d's price: %w", i, err)
			}
			dn.Price = &price
		}
		rep.Nodes = append(rep.Nodes, dn)
	}
	name := func(p peer.ID) string {
		if i, ok := index[p]; ok {
			return fmt.Sprintf("node %d (%s)", i, shortPeer(p))
		}
		return shortPeer(p)
	}
	fmt.Fprintf(out, "Network %s up in %s: every node has peers on the bid-request topic.\n\n", ln.Network, formatElapsed(time.Since(t0)))
	e.printDemoNodes(out, rep.Nodes)

	sub := orchestrator.Submission{Job: demoJob}
	sub.Job.ID = orchestrator.NewJobID()
	sub.Job.Module = examples.HelloWasm
	fmt.Fprintf(out, "\nNode %d submits the sample job %s (hello.wasm, %s): %s, up to %s\n", demoRequester, sub.Job.ID,
		capability.FormatBytes(uint64(len(sub.Job.Module))), describeNeeds(sub.Job.Requirements), capability.FormatDuration(sub.Job.Duration.Std()))
	submitted := time.Now()
	pp := &progressPrinter{w: out, start: submitted, name: name}
	var running time.Time
	// SubmitJob calls progress from one goroutine, in order.
	rec, serr := ln.Nodes[demoRequester].SubmitJob(ctx, sub, func(p orchestrator.Progress) {
		if p.Kind == orchestrator.ProgressEvent && p.Event != nil && p.Event.Kind == orchestrator.EventState &&
			p.Event.State == orchestrator.StateRunning && running.IsZero() {
			running = p.Time
		}
		pp.print(p)
	})
	if rec.ID == "" {
		return fmt.Errorf("submit the sample job: %w", serr)
	}
	pp.end(rec)
	rep.Job = rec
	if i, ok := index[rec.Provider]; ok {
		rep.Winner = i
	}
	if !running.IsZero() {
		rep.Timings.SubmitToRunning = seconds.Duration(running.Sub(submitted))
	}
	if !rec.Ended.IsZero() {
		rep.Timings.SubmitToDone = seconds.Duration(rec.Ended.Sub(submitted))
	}
	if asJSON {
		if err := printJSON(e.stdout, rep); err != nil {
			return err
		}
		return jobOutcome(rec, serr)
	}

	if rep.Winner >= 0 {
		fmt.Fprintf(out, "\nWinner: %s", name(rec.Provider))
		if p := rep.Nodes[rep.Winner].Price; p != nil {
			fmt.Fprintf(out, ", asking %s per core-hour", formatPrice(p.PerCoreHour, p.Currency))
		}
		fmt.Fprintf(out, ", out of %d %s.\n", len(rec.Bids), plural(len(rec.Bids), "bid", "bids"))
	}
	if len(rec.Bids) > 0 {
		fmt.Fprintln(out, "Bids (* won):")
		if err := printBids(out, rec.Bids, rec.Provider, name); err != nil {
			return err
		}
	}
	if r := rec.Result; r != nil {
		fmt.Fprintf(out, "\nOutput of job %s:\n", shortJobID(rec.ID))
		for _, line := range strings.SplitAfter(string(r.Stdout), "\n") {
			if line != "" {
				fmt.Fprintf(out, "  %s", strings.TrimSuffix(line, "\n")+"\n")
			}
		}
		_, _ = e.stderr.Write(r.Stderr)
	}
	fmt.Fprintln(out, "\nTimings:")
	fmt.Fprintf(out, "  network up         %s (%d nodes)\n", formatElapsed(rep.Timings.NetworkUp.Std()), nodes)
	if !running.IsZero() {
		fmt.Fprintf(out, "  submit -> running  %s\n", formatElapsed(running.Sub(submitted)))
	}
	if !rec.Ended.IsZero() {
		fmt.Fprintf(out, "  submit -> done     %s (the first run of a module includes compiling it)\n", formatElapsed(rec.Ended.Sub(submitted)))
	}
	if err := jobOutcome(rec, serr); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nDone. To join a real network: dms init, dms onboard, dms run; then dms job submit.")
	return nil
}

func (e *env) printDemoNodes(w io.Writer, nodes []demoNode) {
	fmt.Fprintln(w, "  NODE  PEER ID   ROLE                        PRICE PER CORE-HOUR")
	for _, n := range nodes {
		price := "-"
		if n.Price != nil {
			price = formatPrice(n.Price.PerCoreHour, n.Price.Currency)
		}
		fmt.Fprintf(w, "  %-4d  %-8s  %-26s  %s\n", n.Index, shortPeer(n.ID), n.Role, price)
	}
}
