package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/orchestrator"
	"github.com/urfave/cli/v2"
)

func (e *env) jobLogs(c *cli.Context, cl *api.Client, id string) error {
	var resp api.JobLogsResponse
	var err error
	live := &liveOutput{stdout: e.stdout, stderr: e.stderr}
	if c.Bool("follow") {
		resp, err = cl.FollowLogs(c.Context, id, func(ev orchestrator.Event) {
			switch ev.Kind {
			case orchestrator.EventStdout, orchestrator.EventStderr:
				live.write(ev)
			case orchestrator.EventState:
				live.restart()
			}
		})
		if c.Context.Err() != nil {
			return &exitError{code: exitInterrupted, msg: "interrupted: the job goes on (dms job status " + id + ")"}
		}
	} else {
		resp, err = cl.JobLogs(c.Context, id)
	}
	if err != nil {
		return err
	}
	if !resp.HasResult {
		if !resp.State.Final() {
			return fmt.Errorf("job %s is still %s: its output comes back when it ends (dms job logs -f %s follows it)", shortJobID(resp.ID), resp.State, shortJobID(resp.ID))
		}
		msg := fmt.Sprintf("job %s has no output: it %s before it ran", shortJobID(resp.ID), resp.State)
		if rec, err := cl.Job(c.Context, resp.ID); err == nil && rec.AllocationID != "" {
			// It did start: its result, and the output with it, never came back.
			msg = fmt.Sprintf("job %s has no output: it %s after it started on %s (allocation %s), and no result came back", shortJobID(resp.ID), resp.State, shortPeer(rec.Provider), rec.AllocationID)
		}
		if resp.Error != "" {
			msg += ": " + strings.TrimPrefix(resp.Error, "job "+resp.ID+": ")
		}
		return errors.New(msg)
	}
	r := &orchestrator.Result{Stdout: resp.Stdout, Stderr: resp.Stderr, StdoutTruncated: resp.StdoutTruncated, StderrTruncated: resp.StderrTruncated}
	live.finish(r)
	e.printTruncation(r)
	return nil
}
