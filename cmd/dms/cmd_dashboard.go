package main

import (
	"fmt"
	"os/exec"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
)

func (e *env) dashboardCommand() *cli.Command {
	return &cli.Command{
		Name:  "dashboard",
		Usage: "print the URL of the running node's web dashboard (--open: open it in a browser)",
		Description: "The dashboard is served by dms run on a loopback address (--dashboard, default 127.0.0.1 on\n" +
			"a free port). It shows the node's offer and capacity, its peers, the jobs it submitted with\n" +
			"their steps and output, and the allocations it runs, updated every second. It is read-only,\n" +
			"and its URL carries a token: only the home's owner, who can reach the control socket, gets it.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "open", Usage: "open the URL with xdg-open (or open, on macOS)"},
		},
		Action: func(c *cli.Context) error {
			return e.withClient(c, func(cl *api.Client) error {
				r, err := cl.Dashboard(c.Context)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, r.URL)
				if !c.Bool("open") {
					return nil
				}
				for _, opener := range []string{"xdg-open", "open"} {
					if path, err := exec.LookPath(opener); err == nil {
						return exec.Command(path, r.URL).Start()
					}
				}
				return fmt.Errorf("no xdg-open or open command to open the URL with: open it in a browser")
			})
		},
	}
}
