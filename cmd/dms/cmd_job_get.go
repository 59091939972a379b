package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

func (e *env) jobGetCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "write the files a job left in /outputs to a directory",
		UsageText: "dms job get [--dir DIR] [--json] ID",
		Description: "The node that submitted the job fetched its outputs from the provider when it ended\n" +
			"(checking their hashes) and keeps them; this writes them to DIR (default ./job-<ID>),\n" +
			"which must not hold files of the same names: nothing is overwritten. It lists each file\n" +
			"with its size and sha256, checked again after writing.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "the `DIR` to write the files to (created; default ./job-<first 12 characters of the ID>)"},
			&cli.BoolFlag{Name: "json", Usage: "print the files written as JSON"},
		},
		Before: e.argsBefore(1, 1, "one job ID (dms job list shows them)"),
		Action: func(c *cli.Context) error {
			return e.withClient(c, func(cl *api.Client) error {
				rec, err := cl.Job(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				if rec.Outputs == nil && !rec.Final() {
					return fmt.Errorf("job %s is still %s: its outputs come when it ends (dms job logs -f %s)", shortJobID(rec.ID), rec.State, shortJobID(rec.ID))
				}
				dir := c.String("dir")
				if dir == "" {
					dir = "job-" + shortJobID(rec.ID)
				}
				return e.getOutputs(c, cl, rec, dir, c.Bool("json"))
			})
		},
	}
}

// getOutputs writes a job's outputs to dir and checks them against the
// hashes the node recorded when it fetched them.
func (e *env) getOutputs(c *cli.Context, cl *api.Client, rec node.JobRecord, dir string, asJSON bool) error {
	if rec.Outputs != nil && rec.Outputs.Error != "" {
		return fmt.Errorf("job %s's outputs could not be fetched from its provider: %s", shortJobID(rec.ID), rec.Outputs.Error)
	}
	data, err := cl.JobOutputs(c.Context, rec.ID)
	if err != nil {
		return err
	}
	files, err := archive.Unpack(data, dir, orchestrator.MaxOutputSize)
	if err != nil {
		return fmt.Errorf("write outputs to %s: %w", dir, err)
	}
	want := map[string]string{}
	if rec.Outputs != nil {
		for _, f := range rec.Outputs.Files {
			want[f.Path] = f.SHA256
		}
	}
	for _, f := range files {
		if w, ok := want[f.Path]; ok && w != f.SHA256 {
			return fmt.Errorf("output %s: written with sha256 %s, but the job's was %s", f.Path, f.SHA256, w)
		}
	}
	if asJSON {
		abs, _ := filepath.Abs(dir)
		if c.Command.Name == "get" {
			return printJSON(e.stdout, node.JobOutputs{Dir: abs, Files: files})
		}
		return nil // submit --json printed the record, which lists them
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	fmt.Fprintf(e.stderr, "Wrote %d %s (%s) to %s:\n", len(files), plural(len(files), "file", "files"), capability.FormatBytes(uint64(total)), dir)
	for _, f := range files {
		fmt.Fprintf(e.stderr, "  %s  %s  %s\n", f.SHA256[:16], capability.FormatBytes(uint64(f.Size)), filepath.Join(dir, filepath.FromSlash(f.Path)))
	}
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	return nil
}
