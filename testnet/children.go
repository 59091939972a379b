package testnet

// The node processes of a process test network: starting one, waiting for
// it to answer, stopping them, and the end of a log to show when one fails.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dms-project/dms/api"
)

// Stop sends SIGTERM to each live node's process group, waits up to
// grace for them to end, then SIGKILLs what is left and waits a little
// more. It returns an error naming any that survive. A node is found by
// its home (see Locate), so that one restarted outside the test network
// is stopped as well.
func Stop(nodes []Process, grace time.Duration) error {
	signal := func(n Process, sig syscall.Signal) {
		// Each node leads its own process group (Setpgid), which also holds
		// any native job it started; one restarted by hand may not, and
		// then -PID names no group.
		if err := syscall.Kill(-n.PID, sig); err != nil {
			_ = syscall.Kill(n.PID, sig)
		}
	}
	alive := func(ns []Process) []Process {
		return slices.DeleteFunc(slices.Clone(ns), func(n Process) bool { return !stillRunning(n) })
	}
	nodes = Running(nodes)
	wait := func(ns []Process, d time.Duration) []Process {
		deadline := time.Now().Add(d)
		for len(ns) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			ns = alive(ns)
		}
		return ns
	}
	left := alive(nodes)
	for _, n := range left {
		signal(n, syscall.SIGTERM)
	}
	if left = wait(left, grace); len(left) == 0 {
		return nil
	}
	for _, n := range left {
		signal(n, syscall.SIGKILL)
	}
	if left = wait(left, 5*time.Second); len(left) == 0 {
		return nil
	}
	var names []string
	for _, n := range left {
		names = append(names, fmt.Sprintf("%s (pid %d)", n.Name, n.PID))
	}
	return fmt.Errorf("still running after SIGKILL: %s", strings.Join(names, ", "))
}

// child is a node process that Up or Add started, while they wait for it.
type child struct {
	node   Process
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process ended and was reaped
	err    error         // its exit status, once exited
}

// startNodeProcess starts `dms run` detached in its own process group (so
// a Ctrl-C meant for `dms testnet up` does not reach it), logging to the
// node's log file.
func startNodeProcess(bin string, args []string, n Process, dir string) (*child, error) {
	logf, err := os.OpenFile(n.Log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", n.Name, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = childEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", n.Name, bin, err)
	}
	p := &child{node: n, cmd: cmd, exited: make(chan struct{})}
	p.node.PID = cmd.Process.Pid
	// Reap it if it dies while we wait for it, or it would linger as a
	// zombie; once Up or Add returns, the process outlives us.
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// childEnv drops the DMS_* variables that would pull a node off the test
// network; the flags Up passes override the rest of the settings.
func childEnv(env []string) []string {
	drop := []string{"DMS_HOME", "DMS_NETWORK", "DMS_LISTEN", "DMS_BOOTSTRAP", "DMS_SWARM_KEY", "DMS_TESTNET_DIR"}
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(drop, k)
	})
	// Tens to hundreds of Go runtimes share this machine's cores: one
	// processor each keeps an idle node from waking a second thread to
	// spin on every packet (about an eighth less idle CPU at 50 nodes).
	// Jobs run in their own processes or in wazero, one thread either way.
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") }) {
		env = append(env, "GOMAXPROCS=1")
	}
	return env
}

// waitReady waits until the node answers on its control socket, and
// returns its record with its peer ID and addresses.
func (p *child) waitReady(ctx context.Context) (Process, error) {
	t := time.NewTicker(pollEvery / 2)
	defer t.Stop()
	for {
		if cl, err := api.Dial(ctx, p.node.Home); err == nil {
			id, err := cl.ID(ctx)
			cl.Close()
			if err == nil {
				p.node.PeerID, p.node.Addrs = id.PeerID, id.Addrs
				return p.node, nil
			}
		}
		select {
		case <-p.exited:
			return p.node, p.exitError()
		case <-ctx.Done():
			return p.node, fmt.Errorf("waiting for %s to start: %w; the end of %s:\n%s", p.node.Name, context.Cause(ctx), p.node.Log, logTail(p.node.Log, 15))
		case <-t.C:
		}
	}
}

func (p *child) exitError() error {
	return fmt.Errorf("%s exited (%v); the end of %s:\n%s", p.node.Name, p.err, p.node.Log, logTail(p.node.Log, 15))
}

// logTail returns the last n lines of a log file, indented.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "  (empty)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return "  " + strings.Join(lines, "\n  ")
}
