package node

import (
	"github.com/dms-project/dms/internal/cheat"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

// LedgerSnapshot lets the tests of package node_test check the ledger's
// invariants at one instant, which the public accessors, read one after
// another, cannot.
func (n *Node) LedgerSnapshot() resources.Snapshot { return n.ledger.Snapshot() }

// Reputation lets the tests of package node_test record what a provider
// did without staging the misbehaviour itself (the orchestrator's tests
// do that).
func (n *Node) Reputation() *orchestrator.Reputation { return n.orch.Reputation() }

// Cheat makes the node that c configures a provider built to cheat in
// mode m (see internal/cheat).
func Cheat(c *Config, m cheat.Mode) *cheat.Backend {
	b := cheat.New(m)
	c.wrapBackend = b.Wrap
	return b
}
