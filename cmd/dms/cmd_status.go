package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

func (e *env) statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "summarise the running node: network, peers, offer, allocations, jobs",
		Description: "Asks the node running on the home. Exits 1, saying so, when no node runs there.\n" +
			"For the full accounts of the offer see dms capability.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print as JSON"},
		},
		Action: func(c *cli.Context) error {
			cl, err := e.client(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			r, err := cl.Status(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(e.stdout, r)
			}
			w := e.stdout
			fmt.Fprintf(w, "peer id:      %s\n", r.ID)
			fmt.Fprintf(w, "network:      %s\n", r.Network)
			fmt.Fprintf(w, "home:         %s (pid %d)\n", r.Home, r.PID)
			fmt.Fprintf(w, "uptime:       %s\n", r.Uptime.Round(time.Second))
			fmt.Fprintf(w, "peers:        %d connected, %d on the bid-request topic\n", r.Peers, r.TopicPeers)
			if r.Bootstrap == 0 {
				fmt.Fprintln(w, "bootstrap:    none: this node started a network of its own and waits to be dialled;")
				fmt.Fprintln(w, "              to join one, restart it with dms run --bootstrap MULTIADDR (and that network's --network and --swarm-key)")
			} else {
				fmt.Fprintf(w, "bootstrap:    %d peers\n", r.Bootstrap)
			}
			if r.Onboarded {
				fmt.Fprintf(w, "onboarded:    yes, offering %s\n", r.Registered)
				fmt.Fprintf(w, "available:    %s\n", r.Available)
			} else {
				fmt.Fprintln(w, "onboarded:    no: joins and submits jobs, does not bid (dms onboard)")
			}
			fmt.Fprintf(w, "allocations:  %d running\n", r.Allocations)
			fmt.Fprintf(w, "jobs:         %d in flight\n", r.Jobs)
			fmt.Fprintln(w, "addresses:")
			for _, a := range r.Addrs {
				fmt.Fprintf(w, "  %s\n", a)
			}
			return nil
		},
	}
}
