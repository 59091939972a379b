package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/doctor"
	"github.com/dms-project/dms/home"
)

func (e *env) doctorCommand() *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "check that the home is sound: the checks dms run makes before it starts, as a list",
		UsageText: "dms doctor [--fix] [--json]",
		Description: "Checks the home (--home): who holds it (a node running on it must answer on its\n" +
			"control socket; the rest is then that node's to check) and what a node that died left, the\n" +
			"permissions of the home, its datastore, config and identity key, that the datastore opens,\n" +
			"that the offer's locks fit the offer, allocations recorded as running with no process left,\n" +
			"completed jobs whose outputs are gone, that the container engine answers when containers\n" +
			"are offered, and that the clock is not before the build or the newest record. Each line is\n" +
			"ok, repaired, warning or problem, with what to do.\n\n" +
			"dms run makes the same checks before it starts: it removes what a dead node left (its PID\n" +
			"file and socket), says so, and refuses to start on a problem. --fix also narrows\n" +
			"permissions that are too wide, a key others could read included (dms run does not: a key\n" +
			"that others could read may have been copied, which is for its owner to judge).\n\n" +
			"Exit status: 0 when nothing is a problem, 1 otherwise.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "fix", Usage: "repair what can be: remove what a dead node left, narrow permissions"},
			&cli.BoolFlag{Name: "json", Usage: "print the findings as JSON"},
		},
		Action: func(c *cli.Context) error {
			dir, _ := global(c, "home")
			h, err := home.Open(dir)
			if err != nil {
				return err
			}
			mode := doctor.Look
			if c.Bool("fix") {
				mode = doctor.Fix
			}
			rep := doctor.Run(c.Context, h, doctor.Options{Mode: mode, Built: buildTime()})
			if c.Bool("json") {
				if err := printJSON(e.stdout, rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdout, "Home %s:\n", rep.Home)
				printFindings(e.stdout, rep.Findings, false)
			}
			if n := len(rep.Problems()); n > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("%d %s to deal with (see \"to do\"); dms run does not start on a home with one", n, plural(n, "problem", "problems"))}
			}
			return nil
		},
	}
}

// printFindings writes one finding a line, its fix under it; onlyNews
// leaves out the ones that are OK.
func printFindings(w io.Writer, fs []doctor.Finding, onlyNews bool) {
	for _, f := range fs {
		if onlyNews && f.Status == doctor.OK {
			continue
		}
		fmt.Fprintf(w, "  %-9s %s: %s\n", f.Status, f.Check, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(w, "  %-9s to do: %s\n", "", f.Fix)
		}
	}
}

// buildTime is the time of the commit the binary was built from, when the
// build recorded it: a clock before it is wrong.
func buildTime() time.Time {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return time.Time{}
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.time" {
			t, _ := time.Parse(time.RFC3339, s.Value)
			return t
		}
	}
	return time.Time{}
}
