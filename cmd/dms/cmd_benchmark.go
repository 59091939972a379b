package main

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/resources"
)

func (e *env) benchmarkCommand() *cli.Command {
	return &cli.Command{
		Name:  "benchmark",
		Usage: "measure this machine's speed; bids carry the score",
		Description: "Runs SHA-256 on one core and on all cores, a memory copy, and writes with fsync in the\n" +
			"home's filesystem, for --duration in all (10s at most). The result is stored, and its\n" +
			"score becomes part of the registered capability that bids are computed from.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "duration", Usage: "total time, 40ms to 10s", Value: resources.DefaultBenchmarkDuration},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON (progress goes to stderr)"},
		},
		Action: func(c *cli.Context) (err error) {
			d := c.Duration("duration")
			if d < resources.MinBenchmarkDuration || d > resources.MaxBenchmarkDuration {
				return usagef("invalid value %q for --duration: want %v to %v, e.g. 3s", d, resources.MinBenchmarkDuration, resources.MaxBenchmarkDuration)
			}
			ctl, err := e.controller(c)
			if err != nil {
				return err
			}
			defer closeController(ctl, &err)
			var progress io.Writer = e.stdout
			if c.Bool("json") {
				progress = e.stderr
			}
			fmt.Fprintf(progress, "Benchmarking for %v...\n", d)
			resp, err := ctl.Benchmark(c.Context, api.BenchmarkRequest{Duration: seconds.Duration(d)}, resources.ProgressPrinter(progress))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(e.stdout, resp)
			}
			b := resp.Benchmark
			fmt.Fprintf(e.stdout, "score %.1f (100 = one core hashing %d MiB/s with %s/s memory copy), took %v; stored\n",
				b.Score, resources.RefSingleCoreMiBs, capability.FormatBytes(resources.RefMemoryBytesS), b.Duration.Round(time.Millisecond))
			if resp.Registered.IsZero() {
				fmt.Fprintln(e.stdout, "Not onboarded yet: the score will be part of the offer once you run dms onboard.")
			}
			return nil
		},
	}
}
