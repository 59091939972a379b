// Package nodehook lets a test binary stand something between every node
// of its process and the bidding protocol, where no config reaches: a node
// process that a test network starts from the test binary (see
// cmd/dms/cheat_test.go). Only test files set it; in a release build it
// stays nil and nodes are what they seem.
package nodehook

import (
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/dms-project/dms/orchestrator"
)

// Backend, when set, wraps the backend of each node the process starts
// (unless the node's own config wraps it).
var Backend func(orchestrator.Backend, crypto.PrivKey) orchestrator.Backend
