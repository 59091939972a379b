package main

import (
	"bytes"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/resources"
)

func (e *env) capabilityCommand() *cli.Command {
	return &cli.Command{
		Name:  "capability",
		Usage: "show the machine, the offer, and what is locked, held and available",
		Description: "Measures the machine and shows, per dimension: what it has, what its owner keeps,\n" +
			"what is offered (registered), locked by allocations, held for bids, what the owner's\n" +
			"current use leaves, and what is available for new jobs.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print everything as JSON"},
			&cli.StringFlag{Name: "reserve", Usage: "what the owner keeps, e.g. cpu=1,memory=10% (default: the config file's reserve)", EnvVars: []string{"DMS_RESERVE"}},
		},
		Action: func(c *cli.Context) (err error) {
			var req api.CapabilityRequest
			if c.IsSet("reserve") {
				r, err := resources.ParseReserve(c.String("reserve"))
				if err != nil {
					return badValue("reserve", c.String("reserve"), err)
				}
				req.Reserve = &r
			}
			ctl, err := e.controller(c)
			if err != nil {
				return err
			}
			defer closeController(ctl, &err)
			resp, err := ctl.Capability(c.Context, req)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(e.stdout, resp)
			}
			return e.printCapability(resp)
		},
	}
}

func (e *env) printCapability(r api.CapabilityResponse) error {
	w := e.stdout
	m := r.Machine
	fmt.Fprintf(w, "home:       %s\n", r.Home)
	fmt.Fprintf(w, "machine:    %s, %s", m.Host.Hostname, m.CPU.Arch)
	if m.CPU.Model != "" {
		fmt.Fprintf(w, ", %s", m.CPU.Model)
	}
	fmt.Fprintln(w)
	if r.Onboarded {
		price := "free"
		if !r.Registered.Price.IsZero() {
			price = r.Registered.Price.String() + " per hour"
		}
		fmt.Fprintf(w, "onboarded:  yes, %s\n", price)
	} else {
		fmt.Fprintln(w, "onboarded:  no (dms onboard --cpu N --memory SIZE --disk SIZE)")
	}
	if len(r.Executors) > 0 {
		fmt.Fprintf(w, "runs:       %s jobs\n", strings.Join(r.Executors, ", "))
	}
	if r.Onboarded {
		fmt.Fprintf(w, "labels:     %s\n", describeLabels(r.Labels))
	}
	if b := r.Benchmark; b != nil {
		fmt.Fprintf(w, "benchmark:  score %.1f (%s)\n", b.Score, b.At.Local().Format("2006-01-02 15:04"))
	} else {
		fmt.Fprintln(w, "benchmark:  none (dms benchmark)")
	}
	fmt.Fprintln(w)
	total := m.Total()
	rows := []capRow{
		{name: "machine", c: total},
		{name: "owner reserve", c: r.Reserve, noGPU: true},
		{name: "max offer", c: r.MaxOffer, note: "(machine less reserve and disk in use)"},
		{name: "registered", c: r.Registered, note: "(the offer)"},
		{name: "locked", c: r.Locked, note: fmt.Sprintf("(%d allocations)", len(r.Locks))},
		{name: "held", c: r.Held, note: fmt.Sprintf("(%d bids)", len(r.Holds))},
		{name: "host limit", c: r.Ceiling, noGPU: true, note: "(what the owner's current use leaves)"},
		{name: "available", c: r.Available, note: "(for new jobs)"},
	}
	if err := printCapTable(w, rows); err != nil {
		return err
	}
	if len(m.GPUs) > 0 {
		fmt.Fprintln(w, "\ngpus:")
		for _, g := range m.GPUs {
			fmt.Fprintf(w, "  %d  %s  %s  %s\n", g.Index, g.UUID, g.Model, capability.FormatBytes(g.Memory))
		}
	}
	if len(r.Locks) > 0 {
		fmt.Fprintln(w, "\nlocks:")
		var buf bytes.Buffer
		tw := tabwriter.NewWriter(&buf, 0, 0, 3, ' ', 0)
		fmt.Fprintln(tw, "  ID\tCPU\tMEMORY\tDISK\tGPUS\tSINCE")
		for _, l := range r.Locks {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\n", l.ID, capability.FormatCPU(l.Capability.CPU.MilliCores),
				capability.FormatBytes(l.Capability.Memory), capability.FormatBytes(l.Capability.Disk), len(l.Capability.GPUs),
				l.Since.Local().Format("2006-01-02 15:04:05"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return writeTrimmed(w, buf.Bytes())
	}
	return nil
}
