//go:build unix

package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dms-project/dms/internal/poll"
)

func TestNativeEcho(t *testing.T) {
	n := newNative(t, true)
	t.Logf("memory limit mode: %s", n.MemoryLimitMode())
	rec := &recorder{}
	res, err := n.Run(context.Background(), nativeSpec("echo", "hello", "mesh"), rec)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "hello mesh\n" || res.ExitCode != 0 || res.Reason != "" {
		t.Errorf("result %+v", res)
	}
	if !bytes.Equal(rec.stdout, res.Stdout) {
		t.Errorf("streamed %q, result %q", rec.stdout, res.Stdout)
	}
}

func TestNativeExitCodeStdinEnv(t *testing.T) {
	t.Setenv("DMS_PROVIDER_SECRET", "leak")
	n := newNative(t, true)
	spec := nativeSpec("sh", "-c", `cat; echo "A=$A"; env | grep -c DMS_PROVIDER_SECRET; echo oops >&2; exit 7`)
	spec.Stdin = []byte("from stdin\n")
	spec.Env = map[string]string{"A": "1"}
	res, err := n.Run(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "from stdin\nA=1\n0\n"
	if res.ExitCode != 7 || string(res.Stdout) != want || string(res.Stderr) != "oops\n" {
		t.Errorf("exit %d stdout %q stderr %q, want 7, %q, %q", res.ExitCode, res.Stdout, res.Stderr, want, "oops\n")
	}
}

func TestNativeUnknownCommand(t *testing.T) {
	n := newNative(t, true)
	_, err := n.Run(context.Background(), nativeSpec("no-such-program-dms"), nil)
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "no-such-program-dms") {
		t.Errorf("err %v, want ErrInvalidSpec naming the program", err)
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc here: kill(0) succeeding is all we know
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// eventuallyDead waits for the kernel to finish off pid.
func eventuallyDead(t *testing.T, pid int) {
	t.Helper()
	poll.Until(t, time.Minute, fmt.Sprintf("process %d to die", pid), func() bool { return !alive(pid) })
}

func childPID(t *testing.T, out []byte) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("no child pid in %q", out)
	}
	return pid
}

func TestNativeTimeoutKillsProcessGroup(t *testing.T) {
	n := newNative(t, true)
	spec := nativeSpec("sh", "-c", "sleep 30 & echo $!; wait")
	spec.Timeout = 300 * time.Millisecond
	res, err := n.Run(context.Background(), spec, nil)
	if !errors.Is(err, ErrTimeout) || res.Reason != "timeout" || res.ExitCode != -1 {
		t.Fatalf("err %v result %+v, want ErrTimeout", err, res)
	}
	eventuallyDead(t, childPID(t, res.Stdout))
}

// started is an Output that says when the job first wrote to stdout: the
// job runs from then on.
type started struct {
	once sync.Once
	c    chan struct{}
}

func newStarted() *started { return &started{c: make(chan struct{})} }

func (s *started) Stdout([]byte) { s.once.Do(func() { close(s.c) }) }
func (s *started) Stderr([]byte) {}

// wait waits for the job to have started, or a minute.
func (s *started) wait() bool {
	select {
	case <-s.c:
		return true
	case <-time.After(time.Minute):
		return false
	}
}

// longJob prints a line, then runs for 30 s unless stopped.
func longJob() Spec { return nativeSpec("sh", "-c", "echo started; exec sleep 30") }

func TestNativeCancel(t *testing.T) {
	n := newNative(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	out := newStarted()
	go func() { out.wait(); cancel() }() // a job that never starts fails below
	res, err := n.Run(ctx, longJob(), out)
	if !errors.Is(err, ErrCancelled) || res.Reason != "cancelled" {
		t.Fatalf("err %v reason %q, want ErrCancelled", err, res.Reason)
	}
}

func TestNativeLeftoverChildrenKilled(t *testing.T) {
	n := newNative(t, true)
	// The shell exits at once, leaving a background child holding stdout.
	res, err := n.Run(context.Background(), nativeSpec("sh", "-c", "sleep 30 & echo $!"), nil)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exit %d err %v", res.ExitCode, err)
	}
	eventuallyDead(t, childPID(t, res.Stdout))
}

func TestNativeOutputTruncated(t *testing.T) {
	n := newNative(t, true)
	spec := nativeSpec("sh", "-c", "head -c 100000 /dev/zero; head -c 10 /dev/zero >&2")
	spec.MaxOutput = 1000
	res, err := n.Run(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != 1000 || !res.StdoutTruncated || len(res.Stderr) != 10 || res.StderrTruncated {
		t.Errorf("stdout %d truncated %v, stderr %d truncated %v", len(res.Stdout), res.StdoutTruncated,
			len(res.Stderr), res.StderrTruncated)
	}
}

func TestNativeCloseStopsRuns(t *testing.T) {
	n, err := NewNative(true)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	out := newStarted()
	go func() {
		_, err := n.Run(context.Background(), longJob(), out)
		done <- err
	}()
	if !out.wait() {
		t.Fatal("after 1m: still waiting for the job to print that it started")
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrCancelled) {
		t.Errorf("run during Close: %v, want ErrCancelled", err)
	}
	if _, err := n.Run(context.Background(), nativeSpec("true"), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("run after Close: %v, want ErrClosed", err)
	}
}
