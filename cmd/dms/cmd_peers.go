package main

import (
	"bytes"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/urfave/cli/v2"
)

func (e *env) peersCommand() *cli.Command {
	return &cli.Command{
		Name:  "peers",
		Usage: "list the peers the running node is connected to",
		Description: "Asks the node running on the home for the peers it holds connections to: their\n" +
			"addresses, who dialled, the ping latency, and whether they joined the bid-request topic\n" +
			"(only those hear this node's jobs and send it theirs).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print as JSON"},
		},
		Action: func(c *cli.Context) error {
			cl, err := e.client(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			r, err := cl.Peers(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(e.stdout, r)
			}
			return e.printPeers(r)
		},
	}
}

func (e *env) printPeers(r api.PeersResponse) error {
	onTopic := 0
	for _, p := range r.Peers {
		if p.OnTopic {
			onTopic++
		}
	}
	fmt.Fprintf(e.stdout, "%d %s, %d on the bid-request topic %s\n", len(r.Peers), plural(len(r.Peers), "peer", "peers"), onTopic, r.Topic)
	if len(r.Peers) == 0 {
		return nil
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tTOPIC\tDIRECTION\tLATENCY\tADDRESS")
	for _, p := range r.Peers {
		topic, latency := "no", "-"
		if p.OnTopic {
			topic = "yes"
		}
		if p.Latency > 0 {
			latency = p.Latency.Round(10 * time.Microsecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID, topic, p.Direction, latency, strings.Join(p.Addrs, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(e.stdout, buf.Bytes())
}
