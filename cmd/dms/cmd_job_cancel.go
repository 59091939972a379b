package main

import (
	"fmt"

	"github.com/dms-project/dms/api"
	"github.com/urfave/cli/v2"
)

func (e *env) jobCancel(c *cli.Context, cl *api.Client, id string) error {
	rec, err := cl.CancelJob(c.Context, id)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(e.stdout, rec)
	}
	if rec.Final() {
		fmt.Fprintf(e.stdout, "Job %s %s.\n", rec.ID, rec.State)
	} else {
		fmt.Fprintf(e.stdout, "Asked to cancel job %s; it is still %s (dms job status %s).\n", rec.ID, rec.State, shortJobID(rec.ID))
	}
	return nil
}
