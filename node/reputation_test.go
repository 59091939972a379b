package node_test

import (
	"context"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// What a requester saw a provider do outlives the node's process: a
// provider that stalled is still avoided after a restart, and its record
// still counts what it did.
func TestProviderRecordsSurviveARestart(t *testing.T) {
	t.Parallel()
	key, _, _ := crypto.GenerateEd25519Key(nil)
	store := node.MemoryDatastore()
	m, err := testnet.MeasureOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := func() *node.Node {
		cfg := node.LocalConfig(t.TempDir())
		cfg.Datastore, cfg.Key, cfg.Machine = store, key, &m
		n, err := node.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	pkey, _, _ := crypto.GenerateEd25519Key(nil)
	staller, err := peer.IDFromPrivateKey(pkey)
	if err != nil {
		t.Fatal(err)
	}
	n := start()
	n.Reputation().Record(staller, orchestrator.OutcomeCompleted, "job-1")
	n.Reputation().Record(staller, orchestrator.OutcomeStalled, "job-2")
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = start()
	defer n.Close()
	got := n.Providers()
	if len(got) != 1 || got[0].Provider != staller {
		t.Fatalf("after a restart the node remembers %+v, want the one provider", got)
	}
	s := got[0]
	if s.Counts[orchestrator.OutcomeCompleted] != 1 || s.Counts[orchestrator.OutcomeStalled] != 1 {
		t.Errorf("counts %v after a restart, want one completion and one stall", s.Counts)
	}
	if s.AvoidedUntil.IsZero() || !strings.Contains(s.Why, "stalled") {
		t.Errorf("after a restart the staller is avoided until %v (%q), want avoided for its stall", s.AvoidedUntil, s.Why)
	}
}
