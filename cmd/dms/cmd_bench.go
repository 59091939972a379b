package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/bench"
	"github.com/dms-project/dms/testnet"
)

func (e *env) benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure the mesh in one process: gossip floor, submit to running/done, throughput, join time, memory, and per job the bids, the nodes reached, CPU and bytes sent",
		Description: "bench starts --nodes nodes of a private network in this process on 127.0.0.1, onboards them,\n" +
			"measures the gossip floor (one bid request reaching every node), then submits --jobs trivial\n" +
			"WebAssembly jobs from --concurrency submitters on different nodes, then times a fresh node\n" +
			"joining. Every figure comes from the same run. It needs no home and changes none.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 100, Usage: "how many nodes (at least 3)"},
			&cli.IntFlag{Name: "jobs", Value: 200, Usage: "how many jobs to submit"},
			&cli.IntFlag{Name: "concurrency", Value: 10, Usage: "how many submitters at once, each on its own node"},
			&cli.BoolFlag{Name: "topic-only", Usage: "send every bid request on the topic to every node, as before requests went straight to the nearest providers (to compare)"},
			&cli.IntFlag{Name: "floor-samples", Value: 50, Usage: "how many gossip messages measure the floor"},
			&cli.IntFlag{Name: "procs", Usage: "also start this many separate dms run processes (a test network) and report each idle one's resident memory and CPU use; 0 skips it"},
			&cli.DurationFlag{Name: "procs-window", Value: 10 * time.Second, Usage: "how long the idle processes are sampled"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the jobs phase to `FILE` (go tool pprof reads it)"},
			&cli.StringFlag{Name: "metrics", Usage: "while it runs, serve every node's Prometheus metrics (labelled node=\"N\") on /metrics at loopback `HOST:PORT`, e.g. 127.0.0.1:9464"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: func(c *cli.Context) error {
			cfg := bench.Config{
				Nodes: c.Int("nodes"), Jobs: c.Int("jobs"), Concurrency: c.Int("concurrency"), FloorSamples: c.Int("floor-samples"), TopicOnly: c.Bool("topic-only"),
				Logger:   e.log.With("subsystem", "bench"),
				Progress: func(s string) { fmt.Fprintf(e.stderr, "bench: %s\n", s) },
			}
			if err := cfg.Validate(); err != nil {
				return usagef("%v", err)
			}
			if !c.IsSet("log-level") {
				e.level.Set(slog.LevelWarn) // a hundred nodes' info logs would drown the report
			}
			if c.Int("procs") < 0 || c.Int("procs") > testnet.MaxNodes {
				return usagef("invalid value %d for --procs: want 0 to %d", c.Int("procs"), testnet.MaxNodes)
			}
			if c.Duration("procs-window") <= 0 {
				return usagef("invalid value %v for --procs-window: want a positive duration, e.g. 10s", c.Duration("procs-window"))
			}
			if path := c.String("cpuprofile"); path != "" {
				f, err := os.Create(path)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer f.Close()
				cfg.JobsProfile = f
			}
			metricsLn, err := listenMetrics(c)
			if err != nil {
				return err
			}
			if metricsLn != nil {
				ms := bench.ServeMetrics(metricsLn)
				defer ms.Close()
				cfg.OnNetwork = ms.OnNetwork
				fmt.Fprintf(e.stderr, "bench: metrics on http://%s/metrics\n", metricsLn.Addr())
			}
			rep, err := bench.Run(c.Context, cfg)
			if err != nil {
				return err
			}
			var procs *bench.ProcsReport
			if n := c.Int("procs"); n > 0 {
				fmt.Fprintf(e.stderr, "bench: starting %d node processes\n", n)
				if procs, err = bench.Procs(c.Context, n, c.Duration("procs-window"), e.log, e.stderr); err != nil {
					return fmt.Errorf("process mode: %w", err)
				}
			}
			if c.Bool("json") {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					*bench.Report
					Processes *bench.ProcsReport `json:"processes,omitempty"`
				}{rep, procs})
			}
			printBench(e.stdout, rep)
			if procs != nil {
				fmt.Fprintf(e.stdout, "\n%d separate `dms run` processes, idle, sampled for %s after start-up (%s):\n", procs.Nodes, procs.Window, ms(procs.Startup.Std()))
				fmt.Fprintf(e.stdout, "  resident memory per process  mean %.1f MiB, max %.1f MiB\n", float64(procs.RSSMean)/(1<<20), float64(procs.RSSMax)/(1<<20))
				fmt.Fprintf(e.stdout, "    of which its own (anonymous) mean %.1f MiB; proportional share (PSS, the %d processes share the binary's pages) mean %.1f MiB\n",
					float64(procs.AnonMean)/(1<<20), procs.Nodes, float64(procs.PSSMean)/(1<<20))
				fmt.Fprintf(e.stdout, "  CPU per process              mean %.2f%%, max %.2f%% of one core\n", procs.CPUMean, procs.CPUMax)
			}
			return nil
		},
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func printBench(w io.Writer, r *bench.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(name string, q bench.Percentiles) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t(n=%d)\n", name, ms(q.P50.Std()), ms(q.P95.Std()), ms(q.P99.Std()), q.N)
	}
	fmt.Fprintf(tw, "dms bench: %d nodes, %d jobs, %d concurrent submitters, %d cores\n\n", r.Nodes, r.Jobs, r.Concurrency, r.Cores)
	fmt.Fprintf(tw, "latency\tp50\tp95\tp99\t\n")
	p("gossip floor (bid request to every node)", r.Floor)
	if r.FloorIncomplete > 0 {
		fmt.Fprintf(tw, "  (%d more probes had not reached every node after 5 s)\t\t\t\t\n", r.FloorIncomplete)
	}
	p("submit to running", r.SubmitToRunning)
	p("submit to done (trivial wasm job)", r.SubmitToDone)
	fmt.Fprintf(tw, "\t\t\t\t\n")
	fmt.Fprintf(tw, "submit to running / floor p50\t%.2fx\t\t\t\n", r.RunningVsFloor)
	fmt.Fprintf(tw, "submit to done / floor p50\t%.2fx\t\t\t\n", r.DoneVsFloor)
	fmt.Fprintf(tw, "throughput\t%.1f jobs/s\t\t\t(%d completed, %d failed)\n", r.JobsPerSecond, r.Completed, r.Failed)
	fmt.Fprintf(tw, "CPU per job per node\t%d µs\t\t\t(what one job costs one node, whatever shares the machine)\n", r.CPUPerJobPerNode.Std().Microseconds())
	fmt.Fprintf(tw, "CPU per job, summed over the mesh\t%s\t\t\t(all %d nodes; the job's run included)\n", ms(r.CPUPerJob.Std()), r.Nodes)
	fmt.Fprintf(tw, "  of which above the idle mesh\t%s\t\t\t(less the %.2f cores the idle mesh used just before, over the %s of jobs)\n", ms(r.CPUPerJobAboveIdle.Std()), r.IdleCoresBeforeJobs, ms(r.JobsWall.Std()))
	fmt.Fprintf(tw, "nodes that received each bid request\t%.1f\t\t\t(min %d, max %d over %d jobs; other than its requester)\n", r.Reach.Mean, r.Reach.Min, r.Reach.Max, r.Reach.N)
	fmt.Fprintf(tw, "  requests delivered / signatures verified per job\t%.1f / %.1f\t\t\t(re-sent and widened requests included)\n", r.DeliveriesPerJob, r.VerifiedPerJob)
	fmt.Fprintf(tw, "bytes sent per job (mesh)\t%.1f KiB\t\t\t(stream payload, before Noise and yamux framing%s)\n", r.BytesPerJob/1024, idleShare(r))
	if r.JoinError != "" {
		fmt.Fprintf(tw, "fresh node: start to first bid request\tfailed\t\t\t(%s)\n", r.JoinError)
	} else {
		fmt.Fprintf(tw, "fresh node: start to first bid request\t%s\t\t\t\n", ms(r.Join.Std()))
	}
	fmt.Fprintf(tw, "network start-up (%d nodes meshed)\t%s\t\t\t\n", r.Nodes, ms(r.Startup.Std()))
	fmt.Fprintf(tw, "then start-up work settled in\t%s\t\t\t(idle network: %.2f cores, %.2f%% of a core per node)\n", ms(r.Settle.Std()), r.IdleCPU, 100*r.IdleCPU/float64(r.Nodes))
	fmt.Fprintf(tw, "Go heap in use per node\t%.2f MiB\t\t\t\n", float64(r.HeapPerNode)/(1<<20))
	fmt.Fprintf(tw, "peak resident memory (whole process)\t%.0f MiB\t\t\t(%d goroutines once settled)\n", float64(r.PeakRSS)/(1<<20), r.Goroutines)
	fmt.Fprintf(tw, "bids received per job (requester)\t%.2f\t\t\t\n", r.BidsReceivedPerJob)
	fmt.Fprintf(tw, "bid messages sent per job (mesh)\t%.2f\t\t\t\n", r.BidsSentPerJob)
	tw.Flush()
	fmt.Fprintf(w, "\nwhere submit to running goes (p50 from submission): published %s, first bid %s, bidding closed %s, accepted %s\n",
		ms(r.Phases["published"].Std()), ms(r.Phases["first bid"].Std()), ms(r.Phases["bidding closed"].Std()), ms(r.Phases["accepted"].Std()))
	if len(r.BytesPerJobByProtocol) > 0 {
		fmt.Fprintf(w, "bytes sent per job by protocol:%s\n", byProtocol(r.BytesPerJobByProtocol))
	}
	if r.FirstError != "" {
		fmt.Fprintf(w, "\nfirst failure: %s\n", r.FirstError)
	}
}

// idleShare says how much of the bytes per job the idle mesh would have
// sent anyway over the jobs phase.
func idleShare(r *bench.Report) string {
	if r.Jobs == 0 || r.BytesPerJob == 0 {
		return ""
	}
	idle := r.IdleBytesPerSecond * r.JobsWall.Std().Seconds() / float64(r.Jobs)
	return fmt.Sprintf("; %.0f%% of it is what the idle mesh sends anyway, %.1f KiB/s", 100*idle/r.BytesPerJob, r.IdleBytesPerSecond/1024)
}

// byProtocol lists bytes per protocol, largest first.
func byProtocol(m map[string]float64) string {
	names := slices.Collect(maps.Keys(m))
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(m[b], m[a]) })
	var sb strings.Builder
	for _, n := range names {
		if n == "" {
			fmt.Fprintf(&sb, " negotiation %.1f KiB,", m[n]/1024)
			continue
		}
		fmt.Fprintf(&sb, " %s %.1f KiB,", n, m[n]/1024)
	}
	return strings.TrimSuffix(sb.String(), ",")
}
