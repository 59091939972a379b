package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/internal/poll"
)

// crashNode starts dms run on dir as its own process and kills it with
// SIGKILL once it is ready, as a crash or an OOM kill would: nothing of
// its clean stop runs. It returns the pid it had.
func crashNode(t *testing.T, dir string) int {
	t.Helper()
	bin := buildDMS(t)
	var out syncBuffer
	cmd := exec.Command(bin, "--home", dir, "run", "--local", "--dashboard", "off")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	poll.Until(t, 2*time.Minute, "dms run to print ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("dms run exited before it was ready:\n%s", out.String())
		default:
		}
		return strings.Contains(out.String(), "\nready\n")
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	return cmd.Process.Pid
}

// TestDoctorOnBrokenHomes: a home left by a crash, one whose datastore
// does not open and one whose key others can read are each reported by
// dms doctor with what to do; dms run repairs the first (and says so) and
// refuses the others, naming the reason.
func TestDoctorOnBrokenHomes(t *testing.T) {
	t.Parallel()
	t.Run("crash", func(t *testing.T) {
		t.Parallel()
		h := newHome(t)
		pid := crashNode(t, h)
		hm, _ := home.Open(h)
		for _, p := range []string{hm.PIDPath(), hm.SocketPath()} {
			if _, err := os.Lstat(p); err != nil {
				t.Fatalf("a killed node left no %s: %v", p, err)
			}
		}
		dms(t, "--home", h, "doctor").want(t, 0, "warning", "lock: dms.pid and dms.sock left by pid "+strconv.Itoa(pid), "which is not running",
			"dms run (or dms doctor --fix) removes them", "ok        datastore")
		if _, err := os.Lstat(hm.PIDPath()); err != nil {
			t.Fatal("dms doctor without --fix removed the PID file")
		}
		n := startNode(t, h, "--dashboard", "off")
		r := n.stop()
		r.want(t, 0, "Checked the home", "repaired  lock: dms.pid and dms.sock left by pid "+strconv.Itoa(pid), "removed them")
		// A node that stopped cleanly leaves nothing to repair.
		dms(t, "--home", h, "doctor").want(t, 0, "ok        lock: no node runs on the home, and the last one stopped cleanly")
		if _, err := os.Lstat(hm.PIDPath()); err == nil {
			t.Fatal("a clean stop left the PID file")
		}
	})
	t.Run("datastore", func(t *testing.T) {
		t.Parallel()
		h := newHome(t)
		dms(t, "--home", h, "capability").want(t, 0) // creates the datastore's files
		ms, _ := filepath.Glob(filepath.Join(h, "data", "MANIFEST-*"))
		if len(ms) == 0 {
			t.Fatal("no datastore manifest")
		}
		for _, m := range ms {
			if err := os.WriteFile(m, []byte("lost blocks"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		dms(t, "--home", h, "doctor").want(t, 1, "problem   datastore:", "does not open", "to do: restore", ".broken", "1 problem to deal with", "dms run does not start on a home with one")
		dms(t, "--home", h, "run", "--local", "--dashboard", "off").want(t, 1, "home is not sound", "datastore:", "does not open", "to do:", "dms doctor lists every check")
	})
	t.Run("key", func(t *testing.T) {
		t.Parallel()
		h := newHome(t)
		key := filepath.Join(h, home.IdentityFile)
		if err := os.Chmod(key, 0o644); err != nil {
			t.Fatal(err)
		}
		dms(t, "--home", h, "doctor", "--json").want(t, 1, `"status": "problem"`, "identity.key is mode 0644")
		dms(t, "--home", h, "run", "--local", "--dashboard", "off").want(t, 1, "permissions:", "identity.key is mode 0644", "others can read the node's private key", "chmod 0600")
		if st, _ := os.Stat(key); st.Mode().Perm() != 0o644 {
			t.Fatal("dms run changed the key's mode")
		}
		dms(t, "--home", h, "doctor", "--fix").want(t, 0, "repaired  permissions:", "narrowed to 0600", "dms init for a new one")
		if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
			t.Fatalf("key mode %o after doctor --fix", st.Mode().Perm())
		}
		dms(t, "--home", h, "doctor").want(t, 0, "ok        permissions")
	})
}
