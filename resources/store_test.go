package resources

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
)

func openTestDatastore(t *testing.T, dir string) *Ledger {
	t.Helper()
	ds, err := OpenDatastore(dir, filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	return newTestLedger(t, ds)
}

func TestDatastoreRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ds, err := OpenDatastore(dir, filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	l := newTestLedger(t, ds)
	reg := capOf(2000, 2*gib, 4*gib)
	reg.Price = capability.PriceInformation{PerCoreHour: 0.5, Currency: "USD"}
	if err := l.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := l.Lock("a1", capOf(500, gib, gib), []byte("record-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve("h1", capOf(500, 0, 0), time.Now().Add(time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Promote("h1", "a2", []byte("record-2")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve("h2", capOf(500, 0, 0), time.Now().Add(time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Lock("a3", capOf(100, 0, 0), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock("a3"); err != nil {
		t.Fatal(err)
	}
	if err := ds.Close(); err != nil {
		t.Fatal(err)
	}
	again := openTestDatastore(t, dir)
	s := again.Snapshot()
	if !s.Registered.Equal(reg) || s.Registered.Price != reg.Price {
		t.Fatalf("registered after restart = %+v, want %+v", s.Registered, reg)
	}
	if len(s.Holds) != 0 {
		t.Fatalf("holds survived a restart: %+v", s.Holds)
	}
	if len(s.Locks) != 2 || s.Locks[0].ID != "a1" || string(s.Locks[0].Meta) != "record-1" || s.Locks[1].ID != "a2" || string(s.Locks[1].Meta) != "record-2" {
		t.Fatalf("locks after restart = %+v", s.Locks)
	}
	if !s.Available.Equal(capOf(1000, gib, 3*gib)) {
		t.Fatalf("available after restart = %v", s.Available)
	}
}

// The child side of TestDatastoreCrash: lock, say so, and wait to be killed.
func TestHelperLedgerChild(t *testing.T) {
	dir := os.Getenv("DMS_TEST_LEDGER_CHILD")
	if dir == "" {
		t.Skip("helper process for TestDatastoreCrash")
	}
	ds, err := OpenDatastore(dir, filepath.Dir(dir))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	l, err := NewLedger(ds)
	if err == nil {
		err = l.Register(capOf(3000, 3*gib, 3*gib))
	}
	for i := 0; err == nil && i < 3; i++ {
		err = l.Lock(fmt.Sprintf("alloc-%d", i), capOf(1000, gib, gib), []byte(fmt.Sprintf("spec-%d", i)))
	}
	if err == nil {
		err = l.Unlock("alloc-1")
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	os.Exit(1)
}

// TestDatastoreCrash kills a process holding locks with SIGKILL, mid-run: the
// datastore is then in use (with that process's pid), and once it is dead it
// reopens with the same registered capability and locks.
func TestDatastoreCrash(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, "data")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLedgerChild$", "-test.v")
	cmd.Env = append(os.Environ(), "DMS_TEST_LEDGER_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "error:") {
			t.Fatal(sc.Text())
		}
		if sc.Text() == "ready" {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatal("child never became ready")
	}

	_, err = OpenDatastore(dir, home)
	var inUse *HomeInUseError
	if !errors.Is(err, ErrHomeInUse) || !errors.As(err, &inUse) || inUse.PID != cmd.Process.Pid {
		t.Fatalf("open while the child runs: %v; want ErrHomeInUse naming pid %d", err, cmd.Process.Pid)
	}
	if want := fmt.Sprintf("a dms node is already running on %s (pid %d)", home, cmd.Process.Pid); err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	l := openTestDatastore(t, dir)
	s := l.Snapshot()
	if !s.Registered.Equal(capOf(3000, 3*gib, 3*gib)) {
		t.Fatalf("registered after crash = %v", s.Registered)
	}
	if len(s.Locks) != 2 || s.Locks[0].ID != "alloc-0" || s.Locks[1].ID != "alloc-2" || string(s.Locks[1].Meta) != "spec-2" {
		t.Fatalf("locks after crash = %+v", s.Locks)
	}
}

func TestDatastoreInUseBySameProcess(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, "data")
	ds, err := OpenDatastore(dir, home)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	_, err = OpenDatastore(dir, home)
	var inUse *HomeInUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Fatalf("second open: %v", err)
	}
	// Asking did not release our own lock.
	if err := ds.Put(bg, registeredKey, []byte("{}")); err != nil {
		t.Fatal(err)
	}
}
