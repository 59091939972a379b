package main

import (
	"bytes"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/orchestrator"
)

func (e *env) providersCommand() *cli.Command {
	return &cli.Command{
		Name:      "providers",
		UsageText: "dms providers [--json]",
		Usage:     "show what this node, as a requester, has seen each provider do",
		Description: "The running node keeps, per provider it invoked, what came of it: completed, exited\n" +
			"non-zero, refused the invocation, lost, stalled (accepted and then sent nothing), overran\n" +
			"the job's deadline, disagreed with the other replicas, or sent a receipt that did not\n" +
			"verify. The record is kept across restarts and weighs each event less as it ages (half\n" +
			"as much after 3 days). It ranks bids: a provider seen completing jobs comes before one\n" +
			"that only claims a high benchmark score, and one that stalled, overran, was lost or\n" +
			"cheated is not invoked at all until its cool-down ends (an hour, doubled for each repeat,\n" +
			"up to 3 days), whatever it bids. STANDING says which, and why.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the records as JSON: counts by outcome, last seen, trust, avoided until"}},
		Action: func(c *cli.Context) error {
			return e.withClient(c, func(cl *api.Client) error {
				resp, err := cl.Providers(c.Context)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(e.stdout, resp)
				}
				return e.printProviders(resp.Providers)
			})
		},
	}
}

func (e *env) printProviders(ps []orchestrator.ProviderStanding) error {
	if len(ps) == 0 {
		fmt.Fprintln(e.stdout, "No provider seen yet: this node keeps a record of each provider it invokes for its jobs.")
		return nil
	}
	avoided := 0
	for _, p := range ps {
		if !p.AvoidedUntil.IsZero() {
			avoided++
		}
	}
	fmt.Fprintf(e.stdout, "%d %s seen, %d avoided now\n", len(ps), plural(len(ps), "provider", "providers"), avoided)
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tTRUST\tLAST SEEN\tSTANDING\tRECORD")
	for _, p := range ps {
		standing := "ok"
		if !p.AvoidedUntil.IsZero() {
			standing = fmt.Sprintf("avoided until %s: %s", formatWhen(p.AvoidedUntil), p.Why)
		}
		var record []string
		for _, o := range orchestrator.Outcomes {
			if n := p.Counts[o]; n > 0 {
				record = append(record, fmt.Sprintf("%s %d", o, n))
			}
		}
		trust := fmt.Sprintf("%.2f", p.Trust)
		if trust == "-0.00" {
			trust = "0.00"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Provider, trust, formatWhen(p.LastSeen), standing, strings.Join(record, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(e.stdout, buf.Bytes())
}
