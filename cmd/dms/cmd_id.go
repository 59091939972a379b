package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func (e *env) idCommand() *cli.Command {
	return &cli.Command{
		Name:  "id",
		Usage: "print the running node's peer ID, network and addresses",
		Description: "Asks the node running on the home. The output has the format dms run prints:\n" +
			"\"peer id: ID\", \"network: NAME\" and one \"listening on: MULTIADDR\" per address; any of\n" +
			"them is a --bootstrap address for another node.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print as JSON"},
		},
		Action: func(c *cli.Context) error {
			cl, err := e.client(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			r, err := cl.ID(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(e.stdout, r)
			}
			fmt.Fprintf(e.stdout, "peer id: %s\nnetwork: %s\n", r.PeerID, r.Network)
			for _, a := range r.Addrs {
				fmt.Fprintf(e.stdout, "listening on: %s\n", a)
			}
			return nil
		},
	}
}
