package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/orchestrator"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"
)

func (e *env) jobBids(c *cli.Context, cl *api.Client, id string) error {
	resp, err := cl.JobBids(c.Context, id)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(e.stdout, resp)
	}
	w := e.stdout
	if resp.Requester {
		if len(resp.Received) == 0 {
			fmt.Fprintf(w, "Job %s received no bids.\n", resp.JobID)
		} else {
			fmt.Fprintf(w, "Bids received for job %s (* won):\n", resp.JobID)
			if err := printBids(w, resp.Received, resp.Winner, shortPeer); err != nil {
				return err
			}
		}
	}
	if len(resp.Placed) > 0 {
		if resp.Requester {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "Bids this node placed for job %s as a provider:\n", resp.JobID)
		return printBids(w, resp.Placed, "", shortPeer)
	}
	if resp.Declined != "" {
		fmt.Fprintf(w, "This node did not bid for job %s: %s\n", resp.JobID, resp.Declined)
	}
	return nil
}

// printBids prints bids as a table, marking the winner.
func printBids(w io.Writer, bids []orchestrator.Bid, winner peer.ID, name func(peer.ID) string) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	// Labels, when a provider has any, say why a job's preferences ranked
	// the bids as they did.
	labelled := slices.ContainsFunc(bids, func(b orchestrator.Bid) bool { return len(b.Labels) > 0 })
	header := "\tPROVIDER\tPRICE\tSCORE\tOFFERED CPU\tOFFERED MEMORY\tHOLD UNTIL"
	if labelled {
		header += "\tLABELS"
	}
	// What a provider already holds is why it won a price tie.
	holding := slices.ContainsFunc(bids, func(b orchestrator.Bid) bool { return b.HasModule || b.HasInputs })
	if holding {
		header += "\tHOLDS"
	}
	fmt.Fprintln(tw, header)
	for _, b := range bids {
		mark := ""
		if winner != "" && b.Provider == winner {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s", mark, name(b.Provider), formatPrice(b.Price, b.Currency), formatScore(b.Score),
			capability.FormatCPU(b.Offered.CPU.MilliCores), capability.FormatBytes(b.Offered.Memory), b.HoldExpires.Local().Format("15:04:05"))
		if labelled {
			fmt.Fprintf(tw, "\t%s", describeLabels(b.Labels))
		}
		if holding {
			fmt.Fprintf(tw, "\t%s", describeHolds(b))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(w, buf.Bytes())
}

// describeHolds says which of the job's module and inputs the bid's
// provider already had, so the job moved none of their bytes to it.
func describeHolds(b orchestrator.Bid) string {
	var what []string
	if b.HasModule {
		what = append(what, "module")
	}
	if b.HasInputs {
		what = append(what, "inputs")
	}
	if len(what) == 0 {
		return "-"
	}
	return strings.Join(what, ",")
}
