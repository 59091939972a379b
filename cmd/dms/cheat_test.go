package main

import (
	"fmt"
	"os"

	"github.com/dms-project/dms/internal/cheat"
	"github.com/dms-project/dms/internal/nodehook"
)

// cheatEnv, set to a cheat mode (forge, silent or endless), makes this
// test binary the dms command line, with every node it starts a provider
// built to cheat in that mode (internal/cheat). Only a test binary reads
// it, so a release build cannot cheat; the node processes a test network
// starts from the test binary inherit it. For a 5-node test network with
// one cheat:
//
//	go build -o /tmp/dms ./cmd/dms && go test -c -o /tmp/dms.test ./cmd/dms
//	/tmp/dms testnet up --nodes 4 --dir /tmp/tn
//	DMS_TEST_CHEAT=forge /tmp/dms.test testnet add --dir /tmp/tn
const cheatEnv = "DMS_TEST_CHEAT"

// runCheating runs the command line that os.Args names, as dms would, with
// nodes that cheat in mode.
func runCheating(mode string) int {
	m, err := cheat.ParseMode(mode)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cheatEnv, err)
		return 2
	}
	nodehook.Backend = cheat.New(m).Wrap
	return run(os.Args, os.Stdout, os.Stderr)
}
