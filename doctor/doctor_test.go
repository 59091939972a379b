package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

func newHome(t *testing.T) home.Home {
	t.Helper()
	rep, err := home.Init(filepath.Join(t.TempDir(), "home"))
	if err != nil {
		t.Fatal(err)
	}
	return home.Home{Dir: rep.Home}
}

func openStore(t *testing.T, h home.Home) ds.Batching {
	t.Helper()
	store, err := h.OpenDatastore()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func want(t *testing.T, f Finding, s Status, says ...string) {
	t.Helper()
	if f.Status != s {
		t.Errorf("%s: status %s, want %s: %s (to do: %s)", f.Check, f.Status, s, f.Detail, f.Fix)
	}
	for _, w := range says {
		if !strings.Contains(f.Detail+" "+f.Fix, w) {
			t.Errorf("%s: %q does not say %q", f.Check, f.Detail+" / "+f.Fix, w)
		}
	}
}

// deadPID is the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Skip("no /bin/true to make a dead pid with:", err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	return p.Pid
}

// leaveCrashFiles leaves what a node killed with SIGKILL leaves: its PID
// file, naming a process that is gone, and its socket file.
func leaveCrashFiles(t *testing.T, h home.Home) int {
	t.Helper()
	pid := deadPID(t)
	if err := os.WriteFile(h.PIDPath(), []byte(strings.Join([]string{strconv.Itoa(pid), "2026-01-02T03:04:05Z"}, " ")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", h.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	return pid
}

func TestNodeLockLeftByACrash(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	want(t, NodeLock(h, false), OK)
	pid := leaveCrashFiles(t, h)
	want(t, NodeLock(h, false), Warning, "dms.pid and dms.sock", "pid "+strconv.Itoa(pid), "not running", "dms run")
	if _, err := os.Stat(h.PIDPath()); err != nil {
		t.Fatal("looking removed the PID file:", err)
	}
	want(t, NodeLock(h, true), Repaired, "removed them")
	for _, p := range []string{h.PIDPath(), h.SocketPath()} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after the repair: %v", p, err)
		}
	}
	want(t, NodeLock(h, false), OK)
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	fs := Permissions(h, false)
	if len(fs) != 1 {
		t.Fatalf("a fresh home: %v", fs)
	}
	want(t, fs[0], OK)

	if err := os.Chmod(h.IdentityPath(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(h.Dir, 0o777); err != nil {
		t.Fatal(err)
	}
	fs = Permissions(h, false)
	if len(fs) != 2 {
		t.Fatalf("want the home and the key reported: %v", fs)
	}
	want(t, fs[0], Problem, "mode 0777", "chmod 0700")
	want(t, fs[1], Problem, "identity.key is mode 0644", "private key", "chmod 0600", "dms doctor --fix", "dms init")
	if st, _ := os.Stat(h.IdentityPath()); st.Mode().Perm() != 0o644 {
		t.Fatal("a look changed the key's mode")
	}

	fs = Permissions(h, true)
	want(t, fs[0], Repaired, "narrowed to 0700")
	want(t, fs[1], Repaired, "narrowed to 0600")
	if st, _ := os.Stat(h.IdentityPath()); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %o after --fix", st.Mode().Perm())
	}
	want(t, Permissions(h, false)[0], OK)
}

func TestDatastoreThatDoesNotOpen(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	store := openStore(t, h)
	// A second open in this process is refused as in use: a node holds it.
	if s, f, inUse := Datastore(h); s != nil || inUse == nil || f.Status != OK {
		t.Fatalf("datastore held: %v %+v %v", s, f, inUse)
	}
	// A node that holds the home but does not answer is a problem (hung);
	// one that answers is not.
	rep := Run(context.Background(), h, Options{})
	if rep.InUse == nil || len(rep.Findings) != 3 {
		t.Fatalf("a home a node runs on: %+v", rep)
	}
	want(t, rep.Findings[2], Problem, "does not answer", "kill ")
	ln, err := net.Listen("unix", h.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"peers": 0}`))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	rep = Run(context.Background(), h, Options{})
	if rep.InUse == nil || rep.Err() != nil {
		t.Fatalf("a home a node runs on and answers: %v", rep.Err())
	}
	want(t, rep.Findings[2], OK, "answers")
	store.Close()

	breakDatastore(t, h)
	s, f, inUse := Datastore(h)
	if s != nil || inUse != nil {
		t.Fatal("a broken datastore opened")
	}
	want(t, f, Problem, "does not open", "mv ", ".broken", "backup")
	rep = Run(context.Background(), h, Options{Mode: Start})
	err = rep.Err()
	if !errors.Is(err, ErrUnsound) || !strings.Contains(err.Error(), "datastore") || !strings.Contains(err.Error(), "to do:") {
		t.Fatalf("Err: %v", err)
	}
}

// breakDatastore overwrites the datastore's manifest, as a disk that lost
// blocks would.
func breakDatastore(t *testing.T, h home.Home) {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(h.DataPath(), "MANIFEST-*"))
	if len(ms) == 0 {
		t.Fatal("no MANIFEST in the datastore")
	}
	for _, m := range ms {
		if err := os.WriteFile(m, []byte("this is not a pebble manifest"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAllocationsAndLedger(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	store := openStore(t, h)
	led, f := Ledger(store)
	want(t, f, OK, "not onboarded")
	want(t, Allocations(led, false), OK)

	led2, err := resources.NewLedger(store)
	if err != nil {
		t.Fatal(err)
	}
	offer := capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB, Disk: capability.GiB}
	if err := led2.Register(offer); err != nil {
		t.Fatal(err)
	}
	meta, _ := json.Marshal(node.AllocationInfo{ID: "alloc-one", JobID: "job-0123456789abcdef"})
	if err := led2.Lock("alloc-one", capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: capability.MiB}, meta); err != nil {
		t.Fatal(err)
	}
	led, f = Ledger(store)
	want(t, f, OK, "1 allocation lock fit")
	want(t, Allocations(led, false), Warning, "alloc-one (job job-01234567)", "no process", "dms run records them as failed")
	want(t, Allocations(led, true), Repaired, "as it starts")

	// A lock that does not fit the offer (a record written by a version
	// that offered more, or by hand).
	rec, _ := json.Marshal(map[string]any{"capability": capability.Capability{CPU: capability.CPU{MilliCores: 4000}}, "since": time.Now()})
	if err := store.Put(context.Background(), ds.NewKey("/resources/locks/alloc-big"), rec); err != nil {
		t.Fatal(err)
	}
	_, f = Ledger(store)
	want(t, f, Warning, "exceed the registered offer", "released as the node starts")

	if err := store.Put(context.Background(), ds.NewKey("/resources/locks/alloc-bad"), []byte("{")); err != nil {
		t.Fatal(err)
	}
	if led, f = Ledger(store); led != nil {
		t.Fatal("a ledger with an unreadable lock loaded")
	}
	want(t, f, Problem, "do not load", "alloc-bad")
}

func TestContainerEngine(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	store := openStore(t, h)
	led, err := resources.NewLedger(store)
	if err != nil {
		t.Fatal(err)
	}
	asked := 0
	down := func(context.Context) error { asked++; return errors.New("Cannot connect to the Docker daemon") }
	want(t, ContainerEngine(context.Background(), led, down), OK, "not offered")
	if err := led.Register(capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB}); err != nil {
		t.Fatal(err)
	}
	want(t, ContainerEngine(context.Background(), led, down), OK, "not offered")
	prefs := orchestrator.DefaultPreferences()
	prefs.AllowedExecutors = []string{orchestrator.ExecutorWasm, orchestrator.ExecutorDocker}
	b, _ := json.Marshal(prefs)
	if err := led.SetPreferences(b); err != nil {
		t.Fatal(err)
	}
	if asked != 0 {
		t.Fatal("the engine was asked while containers were not offered")
	}
	want(t, ContainerEngine(context.Background(), led, down), Problem, "does not answer", "Cannot connect", "systemctl start docker", "--executors")
	want(t, ContainerEngine(context.Background(), led, func(context.Context) error { return nil }), OK, "answers")
}

func TestOutputsGone(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	store := openStore(t, h)
	kept := t.TempDir()
	put := func(rec node.JobRecord) {
		b, _ := json.Marshal(rec)
		if err := store.Put(context.Background(), ds.NewKey(node.JobsPrefix).ChildString(rec.ID), b); err != nil {
			t.Fatal(err)
		}
	}
	files := []archive.File{{Path: "out.txt"}}
	put(node.JobRecord{ID: "job-kept-0000000", State: node.JobCompleted, Submitted: time.Now(), Outputs: &node.JobOutputs{Dir: kept, Files: files}})
	put(node.JobRecord{ID: "job-failed-00000", State: node.JobFailed, Submitted: time.Now(), Outputs: &node.JobOutputs{Dir: "/nowhere/failed", Files: files}})
	jobs, f := Jobs(context.Background(), store)
	want(t, f, OK, "2 jobs")
	want(t, Outputs(jobs), OK)

	put(node.JobRecord{ID: "job-gone-0000000", State: node.JobCompleted, Submitted: time.Now(), Outputs: &node.JobOutputs{Dir: "/nowhere/gone", Files: files}})
	jobs, _ = Jobs(context.Background(), store)
	want(t, Outputs(jobs), Warning, "job job-gone-000 (/nowhere/gone)", "run the job again")

	if err := store.Put(context.Background(), ds.NewKey(node.JobsPrefix).ChildString("job-broken"), []byte("[")); err != nil {
		t.Fatal(err)
	}
	_, f = Jobs(context.Background(), store)
	want(t, f, Problem, "job-broken", "does not decode")
}

func TestClock(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	want(t, Clock(now, time.Time{}, time.Time{}), OK)
	want(t, Clock(now, now.Add(-24*time.Hour), now.Add(time.Minute)), OK) // a record a little ahead: another clock
	want(t, Clock(now, now.Add(48*time.Hour), time.Time{}), Problem, "before this binary was built", "set the clock")
	want(t, Clock(now, time.Time{}, now.Add(3*time.Hour)), Problem, "3h0m0s before the newest record", "timedatectl")
}

func TestRunOnASoundHome(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	rep := Run(context.Background(), h, Options{Mode: Look})
	if err := rep.Err(); err != nil || rep.InUse != nil {
		t.Fatalf("a fresh home: %v", err)
	}
	for _, f := range rep.Findings {
		want(t, f, OK)
	}
	checks := map[string]bool{}
	for _, f := range rep.Findings {
		checks[f.Check] = true
	}
	for _, c := range []string{"permissions", "datastore", "lock", "ledger", "allocations", "containers", "outputs", "clock"} {
		if !checks[c] {
			t.Errorf("Run did not check %s: %v", c, rep.Findings)
		}
	}
}
