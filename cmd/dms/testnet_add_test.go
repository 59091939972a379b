package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/testnet"
)

// TestTestnetAddAndRejoin: dms testnet add joins one more node to a running
// test network, and the homes remember their network, so that after
// testnet down a plain dms run on two of them meets again.
func TestTestnetAddAndRejoin(t *testing.T) {
	t.Parallel()
	bin := buildDMS(t)
	dir := filepath.Join(t.TempDir(), "tn")
	t.Cleanup(func() { dmsExec(t, bin, "testnet", "down", "--dir", dir) })
	dmsExec(t, bin, "testnet", "up", "--nodes", "2", "--dir", dir, "--timeout", "3m").want(t, 0, "is up: 2 nodes")
	dmsExec(t, bin, "testnet", "add", "--dir", dir, "--timeout", "3m").want(t, 0, "node-2 joined test network", "3 nodes now")
	rec, err := testnet.Read(dir)
	if err != nil || len(rec.Nodes) != 3 {
		t.Fatalf("record after add: %+v, %v", rec, err)
	}
	dmsExec(t, bin, "testnet", "status", "--dir", dir).want(t, 0, "node-2")
	cfg, err := os.ReadFile(filepath.Join(dir, "node-2", "config"))
	if err != nil || !strings.Contains(string(cfg), "network = "+rec.Network) || !strings.Contains(string(cfg), "swarm_key = "+rec.SwarmKey) {
		t.Fatalf("node-2's config does not record the network: %v\n%s", err, cfg)
	}
	dmsExec(t, bin, "testnet", "down", "--dir", dir).want(t, 0, "Stopped test network")

	// node-0 on the port its config recorded, node-1 with no flag naming
	// the network: they meet again.
	n0 := exec.Command(bin, "--home", filepath.Join(dir, "node-0"), "run", "--local")
	n0.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n0.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n0.Process.Signal(syscall.SIGTERM)
		timer := time.AfterFunc(20*time.Second, func() { _ = n0.Process.Kill() })
		_ = n0.Wait()
		timer.Stop()
	})
	startRun(t, bin, filepath.Join(dir, "node-1"))
	poll.Until(t, 2*time.Minute, "node-1 to rejoin node-0 from its config alone", func() bool {
		for _, p := range peersOfHome(filepath.Join(dir, "node-1")) {
			if p.ID.String() == rec.Nodes[0].PeerID && p.OnTopic {
				return true
			}
		}
		return false
	})
}
