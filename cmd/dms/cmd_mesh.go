package main

import (
	"github.com/urfave/cli/v2"
)

// meshCommands: run starts a node; id, peers and status ask the running
// node; testnet starts a test network of nodes on this machine.
func (e *env) meshCommands() []*cli.Command {
	return []*cli.Command{e.runCommand(), e.idCommand(), e.peersCommand(), e.statusCommand(), e.dashboardCommand(), e.testnetCommand()}
}
