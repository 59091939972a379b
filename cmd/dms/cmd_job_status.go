package main

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

func (e *env) jobStatus(c *cli.Context, cl *api.Client, id string) error {
	rec, err := cl.Job(c.Context, id)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(e.stdout, rec)
	}
	w := e.stdout
	fmt.Fprintf(w, "job:        %s\n", rec.ID)
	fmt.Fprintf(w, "state:      %s\n", rec.State)
	if rec.State == node.JobQueued {
		fmt.Fprintf(w, "queued:     since %s (%s), waiting for a provider\n", rec.QueuedSince.Local().Format("15:04:05"), formatElapsed(time.Since(rec.QueuedSince)))
		fmt.Fprintf(w, "why:        %s\n", strings.TrimPrefix(rec.QueueReason, "job "+rec.ID+": "))
	}
	fmt.Fprintf(w, "submitted:  %s\n", rec.Submitted.Local().Format("2006-01-02 15:04:05"))
	if !rec.Ended.IsZero() {
		fmt.Fprintf(w, "ended:      %s (%s after submitting)\n", rec.Ended.Local().Format("2006-01-02 15:04:05"), formatElapsed(rec.Ended.Sub(rec.Submitted)))
	}
	kind := rec.Executor
	if rec.Image != "" {
		kind += " " + rec.Image
	}
	fmt.Fprintf(w, "needs:      %s, up to %s (%s)\n", describeNeeds(rec.Requirements), capability.FormatDuration(rec.Duration.Std()), kind)
	if p := describePlacement(rec.Constraints, rec.Prefer); p != "" {
		fmt.Fprintf(w, "placement:  %s\n", p)
	}
	if len(rec.Inputs) > 0 {
		fmt.Fprintf(w, "inputs:     %d %s, %s\n", len(rec.Inputs), plural(len(rec.Inputs), "file", "files"), capability.FormatBytes(uint64(totalSize(rec.Inputs))))
	}
	if len(rec.Args) > 0 {
		fmt.Fprintf(w, "args:       %s\n", strings.Join(quoteArgs(rec.Args), " "))
	}
	if rec.Provider != "" {
		fmt.Fprintf(w, "provider:   %s\n", rec.Provider)
		fmt.Fprintf(w, "allocation: %s\n", rec.AllocationID)
	}
	if r := rec.Replication; r != nil {
		fmt.Fprintf(w, "replicas:   %d, agree %s, networks %s\n", r.Replicas, cmp.Or(string(r.Agree), string(orchestrator.AgreeAll)), cmp.Or(r.Networks, orchestrator.ReplicaNetworksDistinct))
		for _, rep := range rec.Replicas {
			fmt.Fprintf(w, "            %-9s %s\n", replicaLabel(rep, rec.Replicas, rec.State == node.JobCompleted), rep.Describe())
		}
	}
	fmt.Fprintf(w, "bids:       %d (dms job bids %s)\n", len(rec.Bids), shortJobID(rec.ID))
	if r := rec.Result; r != nil {
		fmt.Fprintf(w, "result:     %s, %sran %s, %d %s\n", r.State, exitText(r), formatElapsed(r.Duration.Std()), r.Restarts, plural(r.Restarts, "restart", "restarts"))
		if r.Reason != "" && r.Reason != string(r.State) {
			fmt.Fprintf(w, "reason:     %s\n", r.Reason)
		}
		cut := ""
		if r.StdoutTruncated || r.StderrTruncated {
			limit := r.OutputLimit
			if limit == 0 {
				limit = orchestrator.MaxResultOutput
			}
			cut = fmt.Sprintf(", truncated at %s", capability.FormatBytes(uint64(limit)))
		}
		fmt.Fprintf(w, "output:     %s stdout, %s stderr%s (dms job logs %s)\n", capability.FormatBytes(uint64(len(r.Stdout))), capability.FormatBytes(uint64(len(r.Stderr))), cut, shortJobID(rec.ID))
	}
	if o := rec.Outputs; o != nil {
		if o.Error != "" {
			fmt.Fprintf(w, "outputs:    not fetched: %s\n", o.Error)
		} else {
			fmt.Fprintf(w, "outputs:    %d %s, %s, kept in %s (dms job get %s)\n", len(o.Files), plural(len(o.Files), "file", "files"), capability.FormatBytes(uint64(totalSize(o.Files))), o.Dir, shortJobID(rec.ID))
		}
	}
	if len(rec.Receipt) > 0 {
		fmt.Fprintf(w, "receipt:    %s (dms job receipt %s)\n", describeReceipt(rec), shortJobID(rec.ID))
	}
	if rec.Error != "" {
		fmt.Fprintf(w, "error:      %s\n", rec.Error)
	}
	if len(rec.Progress) > 0 {
		fmt.Fprintln(w, "\nsteps:")
		pp := &progressPrinter{w: w, start: rec.Submitted}
		for _, p := range rec.Progress {
			pp.print(p)
		}
		if rec.Final() {
			pp.end(rec)
		}
	}
	return nil
}

func totalSize(files []archive.File) int64 {
	var n int64
	for _, f := range files {
		n += f.Size
	}
	return n
}

// replicaLabel says how a replica counted: its result delivered, outvoted
// by a majority, without a result; where none was delivered, whether
// another replica returned something else.
func replicaLabel(r orchestrator.Replica, all []orchestrator.Replica, delivered bool) string {
	switch {
	case r.Error != "":
		return "no result"
	case r.Agrees:
		return "agreed"
	case delivered:
		return "outvoted"
	}
	for _, o := range all {
		if o.Error == "" && !r.SameResult(o) {
			return "differs"
		}
	}
	return "same"
}
