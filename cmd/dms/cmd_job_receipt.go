package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

func (e *env) jobReceiptCommand() *cli.Command {
	return &cli.Command{
		Name:      "receipt",
		Usage:     "export a job's receipt: its provider's signed account of the run",
		UsageText: "dms job receipt [--out FILE] ID",
		Description: "When a job's allocation ends its provider signs a receipt (see dms receipt --help), which\n" +
			"this node checked when the result came and keeps with the job. This writes it as JSON:\n" +
			"the signed envelope (base64), the peer that signed it and a decoded view, to FILE or to\n" +
			"stdout. dms receipt verify checks it later, anywhere, with nothing but it and the files.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "write the receipt to `FILE` (not overwritten if it exists) rather than stdout"},
		},
		Before: e.argsBefore(1, 1, "one job ID (dms job list shows them)"),
		Action: func(c *cli.Context) error {
			return e.withClient(c, func(cl *api.Client) error {
				rec, err := cl.Job(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				if len(rec.Receipt) == 0 {
					if !rec.Final() {
						return fmt.Errorf("job %s is still %s: its receipt comes with its result", shortJobID(rec.ID), rec.State)
					}
					return fmt.Errorf("job %s has no receipt: it ended (%s) without a result from a provider", shortJobID(rec.ID), rec.State)
				}
				r, err := orchestrator.OpenReceipt(rec.Receipt)
				if err != nil {
					return fmt.Errorf("job %s's receipt does not verify: %w", shortJobID(rec.ID), err)
				}
				doc := receiptFile{Format: receiptFormat, Envelope: rec.Receipt, Signer: r.Provider, Receipt: r}
				out := c.String("out")
				if out == "" {
					return printJSON(e.stdout, doc)
				}
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					return err
				}
				if err := printJSON(f, doc); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "receipt of job %s, signed by %s, written to %s\n", shortJobID(rec.ID), r.Provider, out)
				return nil
			})
		},
	}
}

// describeReceipt says, for dms job status, who signed a job's receipt and
// whether it matched.
func describeReceipt(rec node.JobRecord) string {
	r, err := orchestrator.OpenReceipt(rec.Receipt)
	switch {
	case err != nil:
		return fmt.Sprintf("does not verify: %v", err)
	case strings.Contains(rec.Error, orchestrator.ErrReceipt.Error()):
		return fmt.Sprintf("signed by %s, does not match (see error)", shortPeer(r.Provider))
	}
	return fmt.Sprintf("signed by %s, verified", shortPeer(r.Provider))
}
