package main

import (
	"fmt"
	"strings"

	"github.com/dms-project/dms/home"
	"github.com/urfave/cli/v2"
)

func (e *env) initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create the node's home: identity key, config file, datastore",
		Description: "Creates the home directory (--home, DMS_HOME, default ~/.dms) with mode 0700, an Ed25519\n" +
			"identity key (identity.key, 0600), a config file with every setting documented (config,\n" +
			"0600) and the datastore directory (data/). What exists is kept, so running it again\n" +
			"changes nothing and says so; permissions that let others in are narrowed.",
		Action: func(c *cli.Context) error {
			dir, _ := global(c, "home")
			rep, err := home.Init(dir)
			if err != nil {
				return err
			}
			if !rep.Changed() {
				fmt.Fprintf(e.stdout, "%s is already a dms home; nothing changed.\n  peer ID: %s\n", rep.Home, rep.PeerID)
				return nil
			}
			fmt.Fprintf(e.stdout, "Initialised dms home %s\n", rep.Home)
			if len(rep.Created) > 0 {
				fmt.Fprintf(e.stdout, "  created:   %s\n", strings.Join(rep.Created, ", "))
			}
			if len(rep.Tightened) > 0 {
				fmt.Fprintf(e.stdout, "  tightened: %s (now readable by you only)\n", strings.Join(rep.Tightened, ", "))
			}
			fmt.Fprintf(e.stdout, "  peer ID:   %s\n", rep.PeerID)
			fmt.Fprintf(e.stdout, "Next: dms --home %s onboard --cpu 1 --memory 1GiB --disk 1GiB\n", home.ShellQuote(rep.Home))
			return nil
		},
	}
}
