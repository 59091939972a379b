package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dms-project/dms/internal/cheat"
	"github.com/dms-project/dms/internal/nodehook"
)

// cheatEnv makes this test binary the dms command line, with a node it
// runs a provider built to cheat (internal/cheat). Its value is MODE (forge,
// silent or endless: every node the process runs cheats) or NAME:MODE (only
// a node whose home directory is named NAME does). Only a test binary reads
// it, so a release build cannot cheat. The node processes that a test
// network starts from the test binary inherit it, so a 5-node test network
// with one cheat is:
//
//	go build -o /tmp/dms ./cmd/dms && go test -c -o /tmp/dms.test ./cmd/dms
//	DMS_TEST_CHEAT=node-4:forge /tmp/dms.test testnet up --nodes 5 --dir /tmp/tn
//	/tmp/dms --home /tmp/tn/node-1 job submit --wasm examples/hello/hello.wasm ...
const cheatEnv = "DMS_TEST_CHEAT"

// runCheating runs the command line that os.Args names, as dms would, with
// nodes that cheat as spec says.
func runCheating(spec string) int {
	name, mode, only := strings.Cut(spec, ":")
	if !only {
		name, mode = "", spec
	}
	m, err := cheat.ParseMode(mode)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%s: %v (want MODE or NAME:MODE)\n", cheatEnv, spec, err)
		return 2
	}
	if !only || filepath.Base(homeArg(os.Args[1:])) == name {
		nodehook.Backend = cheat.New(m).Wrap
	}
	return run(os.Args, os.Stdout, os.Stderr)
}

// homeArg is the --home flag's value among args, "" without one.
func homeArg(args []string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--home="); ok {
			return v
		}
		if a == "--home" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
