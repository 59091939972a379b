package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/dms-project/dms/capability"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// capTable prints rows of capabilities as an aligned table. A row whose GPU
// count does not apply shows "-".
type capRow struct {
	name  string
	c     capability.Capability
	noGPU bool
	note  string
}

func printCapTable(w io.Writer, rows []capRow) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "\tCPU\tMEMORY\tDISK\tGPUS\t")
	for _, r := range rows {
		gpus := strconv.Itoa(len(r.c.GPUs))
		if r.noGPU {
			gpus = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, capability.FormatCPU(r.c.CPU.MilliCores),
			capability.FormatBytes(r.c.Memory), capability.FormatBytes(r.c.Disk), gpus, r.note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(w, buf.Bytes())
}

// writeTrimmed writes text without the trailing blanks tabwriter leaves.
func writeTrimmed(w io.Writer, text []byte) error {
	for _, line := range strings.SplitAfter(string(text), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}
