package main

import (
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/node"
)

// meshCommands: run starts a node; id, peers and status ask the running
// node; testnet starts a test network of nodes on this machine.
func (e *env) meshCommands() []*cli.Command {
	return []*cli.Command{e.runCommand(), e.idCommand(), e.peersCommand(), e.statusCommand(), e.testnetCommand()}
}

// dialNode connects to the node running on --home. When none runs it says
// so and how to start one (exit 1); a directory that is no home yet gets
// the hint to run dms init instead.
func (e *env) dialNode(c *cli.Context) (*controlClient, error) {
	dir, _ := global(c, "home")
	cl, err := dialControl(c.Context, dir)
	if err == nil {
		return cl, nil
	}
	if _, herr := node.OpenHome(dir); errors.Is(herr, node.ErrNotInitialized) {
		return nil, herr
	}
	return nil, err
}

// askNode makes one call to the node running on --home.
func (e *env) askNode(c *cli.Context, path string, resp any) error {
	cl, err := e.dialNode(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.call(c.Context, path, struct{}{}, resp)
}
