package testnet

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dms-project/dms/internal/poll"
)

func TestProcessHelpers(t *testing.T) {
	for exe, want := range map[string]bool{
		"/tmp/go-build2615188470/b001/exe/dms": true,
		"/home/u/.cache/go-build/x/dms":        true,
		"/usr/local/bin/dms":                   false,
		"/tmp/dms":                             false,
	} {
		if got := isGoRunBuild(exe); got != want {
			t.Errorf("isGoRunBuild(%s) = %v", exe, got)
		}
	}
	env := childEnv([]string{"PATH=/bin", "DMS_BOOTSTRAP=/ip4/1.2.3.4/tcp/1/p2p/x", "DMS_LOG_LEVEL=debug", "DMS_NETWORK=x"})
	if strings.Join(env, " ") != "PATH=/bin DMS_LOG_LEVEL=debug GOMAXPROCS=1" {
		t.Errorf("childEnv kept %v, want the network's settings dropped and one processor each", env)
	}
	if env := childEnv([]string{"GOMAXPROCS=4"}); strings.Join(env, " ") != "GOMAXPROCS=4" {
		t.Errorf("childEnv overrode the user's GOMAXPROCS: %v", env)
	}

	if !ProcessAlive(os.Getpid()) || ProcessAlive(0) || ProcessAlive(1<<22+1) {
		t.Fatal("ProcessAlive is wrong about this process, pid 0 or an impossible pid")
	}
	// A child that exited and was not reaped yet is a zombie: kill(pid, 0)
	// still succeeds, ProcessAlive says it is gone.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip("no true command:", err)
	}
	defer cmd.Wait()
	poll.Until(t, 10*time.Second, "an exited child to count as gone", func() bool { return !ProcessAlive(cmd.Process.Pid) })
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
			t.Fatalf("kill(zombie, 0): %v; the zombie case was not exercised", err)
		}
	}
	if nodeAlive(os.Getpid(), "/no/such/home") {
		t.Fatal("nodeAlive took this test for the node of another home")
	}
	// The /proc reader the bench samples with.
	if ticks, err := CPUTicks(os.Getpid()); err != nil || ticks == 0 {
		t.Fatalf("CPUTicks of this process: %d, %v", ticks, err)
	}
	if m, err := MemoryOf(os.Getpid()); err != nil || m.RSS < 1<<20 || m.Anon == 0 || m.PSS == 0 || m.Anon > m.RSS {
		t.Fatalf("memory of this process: %+v, %v", m, err)
	}
}
