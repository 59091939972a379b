package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/urfave/cli/v2"
)

func (e *env) jobLogs(c *cli.Context, cl *api.Client, id string) error {
	resp, err := cl.JobLogs(c.Context, id)
	if err != nil {
		return err
	}
	if !resp.HasResult {
		if resp.State == node.JobBidding || resp.State == node.JobRunning {
			return fmt.Errorf("job %s is still %s: its output comes back when it ends (dms job status %s)", shortJobID(resp.ID), resp.State, shortJobID(resp.ID))
		}
		msg := fmt.Sprintf("job %s has no output: it %s before it ran", shortJobID(resp.ID), resp.State)
		if resp.Error != "" {
			msg += ": " + strings.TrimPrefix(resp.Error, "job "+resp.ID+": ")
		}
		return errors.New(msg)
	}
	e.printOutput(&orchestrator.Result{Stdout: resp.Stdout, Stderr: resp.Stderr, StdoutTruncated: resp.StdoutTruncated, StderrTruncated: resp.StderrTruncated})
	return nil
}
