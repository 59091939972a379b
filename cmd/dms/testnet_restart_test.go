package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/testnet"
)

// byHand is a dms run started outside the test network, as a user would
// restart a node: in the test's own process group, not one of its own.
type byHand struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *syncBuffer
}

func runByHand(t *testing.T, bin, home string, args ...string) *byHand {
	t.Helper()
	p := &byHand{exited: make(chan struct{}), log: &syncBuffer{}}
	p.cmd = exec.Command(bin, append([]string{"--home", home, "run", "--local", "--listen", "/ip4/127.0.0.1/tcp/0", "--dashboard", "off"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.exited })
	poll.Until(t, 2*time.Minute, home+" to answer on its control socket", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("dms run on %s exited:\n%s", home, p.log.String())
		default:
		}
		cl, err := api.Dial(context.Background(), home)
		if err == nil {
			cl.Close()
		}
		return err == nil
	})
	return p
}

// TestTestnetFindsANodeRestartedByHand: a node stopped and started again
// outside the test network is shown running (with its new pid) by status
// and stopped by down, and down --clean removes no home a node still runs
// on, saying which.
func TestTestnetFindsANodeRestartedByHand(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end: builds the dms binary and starts node processes; skipped under -short")
	}
	bin := buildDMS(t)
	dir := filepath.Join(t.TempDir(), "tn")
	t.Cleanup(func() { dmsExec(t, bin, "testnet", "down", "--dir", dir) })
	dmsExec(t, bin, "testnet", "up", "--nodes", "2", "--dir", dir, "--timeout", "3m").want(t, 0, "is up: 2 nodes")
	rec, err := testnet.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	n1 := rec.Nodes[1]
	if err := syscall.Kill(n1.PID, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 2*time.Minute, "node-1 to stop", func() bool { return gone(n1.PID) })
	dmsExec(t, bin, "testnet", "status", "--dir", dir).want(t, 1, "1 of 2 nodes are not running")

	again := runByHand(t, bin, n1.Home, "--network", rec.Network, "--swarm-key", rec.SwarmKey, "--bootstrap", rec.Nodes[0].Addrs[0])
	newPID := strconv.Itoa(again.cmd.Process.Pid)
	st := dmsExec(t, bin, "testnet", "status", "--dir", dir)
	st.want(t, 0, "node-1  "+newPID, "restarted outside testnet; started as pid "+strconv.Itoa(n1.PID))

	// A home of DIR that a node runs on but the record does not name:
	// down stops the network, and --clean then refuses, removing nothing.
	strayHome := filepath.Join(dir, "node-7")
	dmsExec(t, bin, "--home", strayHome, "init").want(t, 0)
	stray := runByHand(t, bin, strayHome)
	down := dmsExec(t, bin, "testnet", "down", "--clean", "--dir", dir)
	down.want(t, 1, "node-1 was restarted outside testnet: stopping pid "+newPID, "Stopped test network "+rec.Network+": 2 nodes.",
		"node-7 (pid "+strconv.Itoa(stray.cmd.Process.Pid)+")", "nothing removed", "stop it first")
	select {
	case <-again.exited:
	case <-time.After(time.Minute):
		t.Fatal("down left the node restarted by hand running")
	}
	if code := again.cmd.ProcessState.ExitCode(); code != 0 || strings.Contains(again.log.String(), "panic") {
		t.Fatalf("the node restarted by hand exited %d:\n%s", code, again.log.String())
	}
	for _, h := range []string{rec.Nodes[0].Home, n1.Home, strayHome} {
		if _, err := os.Stat(h); err != nil {
			t.Fatalf("a refused --clean removed %s: %v", h, err)
		}
	}

	if err := stray.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-stray.exited
	dmsExec(t, bin, "testnet", "down", "--clean", "--dir", dir).want(t, 0, "No test network is up", "Removed 3 homes")
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("%s is still there after down --clean", dir)
	}
}
