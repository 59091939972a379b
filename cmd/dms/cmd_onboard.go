package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/resources"
)

func (e *env) onboardCommand() *cli.Command {
	return &cli.Command{
		Name:      "onboard",
		Usage:     "offer part of this machine to the mesh, or change the offer",
		UsageText: "dms onboard --cpu CORES --memory SIZE --disk SIZE [--gpu INDEX|UUID ...] [--price LIST] [--reserve LIST] [--executors LIST] [--max-job-duration D] [--label KEY=VALUE ...]",
		Description: "Checks the offer against the machine, less a reserve kept for its owner (--reserve),\n" +
			"and records it. The first offer needs --cpu, --memory and --disk; later, flags left out\n" +
			"keep their current value. An offer that would not cover what running allocations have\n" +
			"locked is refused. The first time, a short benchmark runs so that bids carry a score.\n" +
			"--executors says which jobs the node runs: wasm (the default, sandboxed), docker (container\n" +
			"images already on this machine, on its Docker engine) and native (host processes, not\n" +
			"sandboxed: only for peers you trust). --label describes the node to jobs, which place\n" +
			"themselves by labels (dms job submit --constraint region=eu-west, --prefer tier=gold); the\n" +
			"labels given replace the node's labels, and bids carry them.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cpu", Usage: "cores to offer, e.g. 2, 1.5 or 500m (millicores)"},
			&cli.StringFlag{Name: "memory", Usage: "memory to offer, e.g. 512MiB, 4GiB or 4GB"},
			&cli.StringFlag{Name: "disk", Usage: "disk to offer on the home's filesystem, e.g. 20GiB"},
			&cli.StringSliceFlag{Name: "gpu", Usage: "a GPU to offer, by index or UUID as nvidia-smi shows it (repeat for more; \"none\" offers none)"},
			&cli.StringFlag{Name: "price", Usage: "price list per hour, e.g. cpu=0.02,memory=0.005,disk=0.0001,gpu=0.5,currency=USD (default: the config file's price for a first offer, else unchanged)", EnvVars: []string{"DMS_PRICE"}},
			&cli.StringFlag{Name: "reserve", Usage: "what the owner keeps, e.g. cpu=1,memory=10%,disk=10%>5GiB (default: the config file's reserve)", EnvVars: []string{"DMS_RESERVE"}},
			&cli.StringFlag{Name: "executors", Usage: "the kinds of job to run, comma-separated: wasm, docker, native (default: wasm, or unchanged)"},
			&cli.StringFlag{Name: "max-job-duration", Usage: "the longest job to bid for, e.g. 2h or 30m (default: 24h, or unchanged)"},
			&cli.GenericFlag{Name: "label", Usage: "a label for jobs to place themselves by, KEY=VALUE, e.g. region=eu-west (repeat for more; replaces the node's labels; \"none\" removes them). " +
				"Keys and values: 1 to 63 letters, digits, '.', '-', '_' (keys also '/'), starting and ending with a letter or digit", Value: &envList{}},
			&cli.BoolFlag{Name: "skip-benchmark", Usage: "do not run the benchmark, even when none is stored yet"},
			&cli.DurationFlag{Name: "benchmark-duration", Usage: "how long the first benchmark runs, 40ms to 10s", Value: resources.DefaultBenchmarkDuration},
			&cli.BoolFlag{Name: "json", Usage: "print the record as JSON"},
		},
		Action: func(c *cli.Context) (err error) {
			req, err := onboardRequest(c)
			if err != nil {
				return err
			}
			ctl, err := e.controller(c)
			if err != nil {
				return err
			}
			defer closeController(ctl, &err)
			// Progress goes to stderr so that --json output stays clean.
			fmt.Fprintln(e.stderr, "Measuring this machine...")
			resp, err := ctl.Onboard(c.Context, req, resources.ProgressPrinter(e.stderr))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(e.stdout, resp)
			}
			r := resp.Record
			switch {
			case r.Previous != nil && r.Previous.Equal(r.Registered) && r.Previous.Price == r.Registered.Price:
				// Only preferences (labels, executors) changed.
				fmt.Fprintf(e.stdout, "Offer unchanged: %s\n", describeOffer(r.Registered))
			case r.Previous != nil:
				fmt.Fprintf(e.stdout, "Offer changed from %s\n                to %s\n", r.Previous, describeOffer(r.Registered))
			default:
				fmt.Fprintf(e.stdout, "Onboarded: offering %s\n", describeOffer(r.Registered))
			}
			m := r.Limits.Machine
			fmt.Fprintf(e.stdout, "  machine:   %s cores, %s memory, %s disk free of %s\n", capability.FormatCPU(m.CPU.MilliCores),
				capability.FormatBytes(m.Memory), capability.FormatBytes(m.DiskFree), capability.FormatBytes(m.Disk))
			fmt.Fprintf(e.stdout, "  reserved:  %s for the owner; at most %s could be offered\n", r.Limits.Reserve, r.Limits.Max)
			if !r.Locked.IsZero() {
				fmt.Fprintf(e.stdout, "  locked:    %s by running allocations\n", r.Locked)
			}
			if resp.MaxJobDuration > 0 {
				fmt.Fprintf(e.stdout, "  longest:   %s jobs\n", resp.MaxJobDuration)
			}
			if len(resp.Executors) > 0 {
				fmt.Fprintf(e.stdout, "  runs:      %s jobs\n", strings.Join(resp.Executors, ", "))
			}
			if req.Labels != nil {
				fmt.Fprintf(e.stdout, "  labels:    %s\n", describeLabels(resp.Labels))
			}
			if s := r.Registered.CPU.Score; s > 0 {
				fmt.Fprintf(e.stdout, "  benchmark: score %.1f\n", s)
			} else {
				fmt.Fprintln(e.stdout, "  benchmark: none yet; run dms benchmark so that bids carry a score")
			}
			return nil
		},
	}
}

// onboardRequest parses the flags; a value that does not parse is a usage
// error naming the flag and what it accepts.
func onboardRequest(c *cli.Context) (api.OnboardRequest, error) {
	req := api.OnboardRequest{Benchmark: !c.Bool("skip-benchmark"), BenchmarkDuration: seconds.Duration(c.Duration("benchmark-duration"))}
	if d := req.BenchmarkDuration; d.Std() < resources.MinBenchmarkDuration || d.Std() > resources.MaxBenchmarkDuration {
		return req, usagef("invalid value %q for --benchmark-duration: want %v to %v, e.g. 3s", d, resources.MinBenchmarkDuration, resources.MaxBenchmarkDuration)
	}
	var err error
	if req.CPU, err = optional(c, "cpu", capability.ParseCPU); err != nil {
		return req, err
	}
	if req.Memory, err = optional(c, "memory", capability.ParseBytes); err != nil {
		return req, err
	}
	if req.Disk, err = optional(c, "disk", capability.ParseBytes); err != nil {
		return req, err
	}
	if c.IsSet("gpu") {
		gpus := []string{}
		for _, g := range c.StringSlice("gpu") {
			if g = strings.TrimSpace(g); g == "" {
				return req, badValue("gpu", g, fmt.Errorf("want a GPU index (0, 1, ...), a UUID (GPU-...) or none"))
			}
			if !strings.EqualFold(g, "none") {
				gpus = append(gpus, g)
			}
		}
		req.GPUs = &gpus
	}
	if c.IsSet("price") {
		p, err := capability.ParsePrice(c.String("price"))
		if err != nil {
			return req, badValue("price", c.String("price"), err)
		}
		req.Price = &p
	}
	if c.IsSet("executors") {
		var kinds []string
		for _, k := range strings.Split(c.String("executors"), ",") {
			if k = strings.ToLower(strings.TrimSpace(k)); k != "" {
				kinds = append(kinds, k)
			}
		}
		req.Executors = &kinds
	}
	if c.IsSet("max-job-duration") {
		d, err := capability.ParseDuration(c.String("max-job-duration"))
		if err != nil {
			return req, badValue("max-job-duration", c.String("max-job-duration"), err)
		}
		req.MaxJobDuration = &d
	}
	if c.IsSet("label") {
		labels, err := parseLabels(c.Generic("label").(*envList).vals)
		if err != nil {
			return req, err
		}
		req.Labels = &labels
	}
	if c.IsSet("reserve") {
		r, err := resources.ParseReserve(c.String("reserve"))
		if err != nil {
			return req, badValue("reserve", c.String("reserve"), err)
		}
		req.Reserve = &r
	}
	return req, nil
}

func optional(c *cli.Context, name string, parse func(string) (uint64, error)) (*uint64, error) {
	if !c.IsSet(name) {
		return nil, nil
	}
	v, err := parse(c.String(name))
	if err != nil {
		return nil, badValue(name, c.String(name), err)
	}
	return &v, nil
}

func describeOffer(c capability.Capability) string {
	s := c.String()
	if c.Price.IsZero() {
		return s + " (free)"
	}
	return s + " at " + c.Price.String() + " per hour"
}
