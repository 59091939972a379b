package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/resources"
)

func (e *env) offboardCommand() *cli.Command {
	return &cli.Command{
		Name:  "offboard",
		Usage: "withdraw this machine's offer",
		Description: "Withdraws the offer: the node stops bidding. Refused while allocations hold locks.\n" +
			"--force goes on: the running node stops those allocations (their requesters see them\n" +
			"cancelled), waits for them to end, then releases their locks and lists them. With no\n" +
			"node running, the locks are what a crash left, and --force removes them.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "offboard even while allocations run: stop them first, then release their locks"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: func(c *cli.Context) (err error) {
			ctl, err := e.controller(c)
			if err != nil {
				return err
			}
			defer closeController(ctl, &err)
			resp, err := ctl.Offboard(c.Context, api.OffboardRequest{Force: c.Bool("force")})
			rep := resp.Report
			if errors.Is(err, onboarding.ErrActiveAllocations) {
				return fmt.Errorf("offboard refused: %d allocation(s) hold locks:\n%s\nWait for them to end, or use --force to stop them and release their locks", len(rep.Affected), lockLines(rep.Affected))
			}
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(e.stdout, resp)
			}
			switch {
			case !rep.WasOnboarded && len(rep.Affected) == 0:
				fmt.Fprintln(e.stdout, "Not onboarded; nothing to do.")
			case len(rep.Stopped) > 0:
				fmt.Fprintf(e.stdout, "Offboarded (forced): no longer offering %s.\nStopped %d allocation(s), then released their locks:\n%s\n",
					rep.Previous, len(rep.Stopped), lockLines(rep.Affected))
			case len(rep.Affected) > 0:
				fmt.Fprintf(e.stdout, "Offboarded (forced): no longer offering %s.\nRemoved the locks of %d allocation(s) that a stopped node left (none of them runs):\n%s\n",
					rep.Previous, len(rep.Affected), lockLines(rep.Affected))
			default:
				fmt.Fprintf(e.stdout, "Offboarded: no longer offering %s.\n", rep.Previous)
			}
			return nil
		},
	}
}

func lockLines(locks []resources.Lock) string {
	var b strings.Builder
	for _, l := range locks {
		fmt.Fprintf(&b, "  %s  %s  since %s\n", l.ID, l.Capability, l.Since.Format("2006-01-02 15:04:05Z07:00"))
	}
	return strings.TrimRight(b.String(), "\n")
}
