package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/node"
	"github.com/urfave/cli/v2"
)

func (e *env) jobListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		UsageText: "dms job list [--json]",
		Usage:     "list the jobs submitted from this node, oldest first",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the list as JSON"}},
		Before:    e.argsBefore(0, 0, "no arguments"),
		Action: func(c *cli.Context) error {
			return e.withClient(c, func(cl *api.Client) error {
				if c.Bool("json") {
					resp, err := cl.Jobs(c.Context)
					if err != nil {
						return err
					}
					return printJSON(e.stdout, resp)
				}
				// The table asks for summaries: whole records carry every
				// bid, which this command would decode for nothing.
				resp, err := cl.JobSummaries(c.Context)
				if err != nil {
					return err
				}
				return e.printJobList(resp.Jobs)
			})
		},
	}
}

func (e *env) printJobList(jobs []api.JobSummary) error {
	if len(jobs) == 0 {
		fmt.Fprintln(e.stdout, "No jobs submitted from this node yet (dms job submit, or try dms demo).")
		return nil
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tEXIT\tPROVIDER\tSUBMITTED\tTOOK\tNOTE")
	for _, j := range jobs {
		exit, provider := "-", "-"
		// A job stopped at its duration or from outside has no exit code
		// of its own (-1): "-", as job status leaves it out.
		if j.Result != nil && j.State != node.JobCancelled && j.Result.ExitCode >= 0 {
			exit = strconv.Itoa(j.Result.ExitCode)
		}
		if j.Provider != "" {
			provider = shortPeerText(j.Provider)
		}
		took := "-"
		if !j.Ended.IsZero() {
			took = formatElapsed(j.Ended.Sub(j.Submitted))
		} else if !j.State.Final() {
			took = formatElapsed(time.Since(j.Submitted)) + " so far"
		}
		note := j.Error
		if j.State == node.JobQueued {
			note = "queued " + formatElapsed(time.Since(j.QueuedSince)) + ": " + j.QueueReason
		}
		if note == "" && j.Result != nil {
			note = j.Result.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", shortJobID(j.ID), j.State, exit, provider, formatWhen(j.Submitted), took,
			clip(strings.TrimPrefix(note, "job "+j.ID+": "), 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(e.stdout, buf.Bytes())
}
