package main

import (
	"bytes"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

func (e *env) allocationsCommand() *cli.Command {
	return &cli.Command{
		Name:      "allocations",
		UsageText: "dms allocations [--json]",
		Usage:     "list the jobs this node runs or ran for others, as a provider",
		Description: "An allocation is a job this node won and runs in its sandbox, with the capability it\n" +
			"locked for it. Shows each one's ID, job, requester, state, exit code, run time and\n" +
			"restarts, oldest first. Ended allocations are kept for a while, then forgotten.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the allocations as JSON, with their statistics"}},
		Action: func(c *cli.Context) error {
			return e.withClient(c, func(cl *api.Client) error {
				resp, err := cl.Allocations(c.Context)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(e.stdout, resp)
				}
				return e.printAllocations(resp.Allocations)
			})
		},
	}
}

func (e *env) printAllocations(allocs []node.AllocationInfo) error {
	if len(allocs) == 0 {
		fmt.Fprintln(e.stdout, "No allocations on this node yet: it runs jobs it wins once onboarded (dms onboard).")
		return nil
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tJOB\tREQUESTER\tSTATE\tEXIT\tRUN TIME\tRESTARTS\tCREATED")
	for _, a := range allocs {
		exit := "-"
		if a.Result != nil && a.State.Final() && a.State != orchestrator.StateCancelled && a.Result.ExitCode >= 0 {
			exit = strconv.Itoa(a.Result.ExitCode)
		}
		var run time.Duration
		switch {
		case a.Stats.RunTime > 0:
			run = a.Stats.RunTime.Std()
		case a.Result != nil:
			run = a.Result.Duration.Std()
		case !a.Started.IsZero():
			run = time.Since(a.Started)
		}
		restarts := a.Stats.Restarts
		if a.Result != nil {
			restarts = max(restarts, a.Result.Restarts)
		}
		requester := "-"
		if a.Requester != "" {
			requester = shortPeer(a.Requester)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", a.ID, shortJobID(a.JobID), requester, a.State, exit,
			formatElapsed(run), restarts, formatWhen(a.Created))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(e.stdout, buf.Bytes())
}
