package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

// Permissions checks that nobody but the owner can change the home, and
// that nobody else can read its identity key. With narrow set it narrows
// what is too wide; otherwise each is a problem. A key others could read
// is not narrowed silently at start: someone may have copied it, and
// whether the node's identity can still be trusted is the owner's call
// (dms doctor --fix narrows it when told to, and says so).
func Permissions(h home.Home, narrow bool) []Finding {
	const name = "permissions"
	var out []Finding
	check := func(path string, mask, want fs.FileMode, why, risk string) {
		st, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return // home.Open and the datastore check speak of what is missing
		case err != nil:
			out = append(out, Finding{Check: name, Status: Problem, Detail: err.Error(), Fix: "run dms as the home's owner, or pass --home with a home of your own"})
			return
		case st.Mode().Perm()&mask == 0:
			return
		}
		detail := fmt.Sprintf("%s is mode %04o: %s", path, st.Mode().Perm(), why)
		if narrow {
			if err := os.Chmod(path, want); err != nil {
				out = append(out, Finding{Check: name, Status: Problem, Detail: detail, Fix: fmt.Sprintf("chmod %04o %s failed: %v", want, home.ShellQuote(path), err)})
				return
			}
			out = append(out, Finding{Check: name, Status: Repaired, Detail: fmt.Sprintf("%s; narrowed to %04o. %s", detail, want, risk)})
			return
		}
		out = append(out, Finding{Check: name, Status: Problem, Detail: detail,
			Fix: fmt.Sprintf("chmod %04o %s (or dms doctor --fix). %s", want, home.ShellQuote(path), risk)})
	}
	check(h.Dir, 0o022, 0o700, "others can write in the home and replace its key, config or socket", "")
	check(h.DataPath(), 0o022, 0o700, "others can write in the datastore", "")
	check(h.ConfigPath(), 0o022, 0o600, "others can change the node's settings", "")
	check(h.IdentityPath(), 0o077, 0o600, "others can read the node's private key",
		"If anyone else could have read it, the identity is no longer this node's alone: move "+home.IdentityFile+" aside and run dms init for a new one.")
	if len(out) == 0 {
		out = append(out, Finding{Check: name, Status: OK, Detail: "the home, its datastore and config are the owner's to change, the identity key the owner's to read"})
	}
	return out
}

// NodeLock looks for what a node that died left behind: its PID file and
// its control socket. The caller holds the datastore's lock, so no node
// runs on the home and both are stale; with remove set they are removed
// (dms run would replace them anyway; saying so tells the user the last
// run did not end cleanly).
func NodeLock(h home.Home, remove bool) Finding {
	const name = "lock"
	var left []string
	who := "a node"
	p, perr := h.ReadPID()
	switch {
	case perr == nil:
		left = append(left, home.PIDFile)
		who = fmt.Sprintf("pid %d", p.PID)
		if !p.Started.IsZero() {
			who += fmt.Sprintf(" (started %s)", p.Started.Local().Format("2006-01-02 15:04:05"))
		}
		if processAlive(p.PID) {
			who += ", a pid another program has now"
		} else {
			who += ", which is not running"
		}
	case !errors.Is(perr, fs.ErrNotExist):
		left = append(left, home.PIDFile+" (unreadable: "+perr.Error()+")")
	}
	if _, err := os.Lstat(h.SocketPath()); err == nil {
		left = append(left, home.SocketFile)
	}
	if len(left) == 0 {
		return Finding{Check: name, Status: OK, Detail: "no node runs on the home, and the last one stopped cleanly"}
	}
	detail := fmt.Sprintf("%s left by %s: the node stopped without cleaning up (killed, crashed, or the machine lost power)", strings.Join(left, " and "), who)
	if !remove {
		return Finding{Check: name, Status: Warning, Detail: detail, Fix: "nothing holds them; dms run (or dms doctor --fix) removes them"}
	}
	var errs []error
	errs = append(errs, h.RemovePID())
	if err := os.Remove(h.SocketPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Finding{Check: name, Status: Problem, Detail: detail + "; removing them failed: " + err.Error(), Fix: "remove them by hand: rm " + home.ShellQuote(h.PIDPath()) + " " + home.ShellQuote(h.SocketPath())}
	}
	return Finding{Check: name, Status: Repaired, Detail: detail + "; removed them"}
}

// processAlive reports whether a process with pid exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Ledger loads the offer's ledger (the registered offer and the locks of
// allocations) and checks that the locks fit the offer. Holds are not
// kept across runs, so there are none to check in a home no node runs on.
func Ledger(store ds.Batching) (*resources.Ledger, Finding) {
	const name = "ledger"
	led, err := resources.NewLedger(store, resources.WithLedgerLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, Finding{Check: name, Status: Problem, Detail: "the offer's records do not load: " + err.Error(),
			Fix: "move the datastore aside (see the datastore check) and onboard again; please report the error"}
	}
	reg, locked := led.Registered(), led.Locked()
	if reg.IsZero() && len(led.Locks()) == 0 {
		return led, Finding{Check: name, Status: OK, Detail: "no offer registered (not onboarded) and nothing locked"}
	}
	if _, err := reg.Subtract(locked); err != nil {
		return led, Finding{Check: name, Status: Warning,
			Detail: fmt.Sprintf("the allocations' locks (%s) exceed the registered offer (%s): %v", describe(locked), describe(reg), err),
			Fix:    "they are locks of allocations of the last run (see the allocations check), released as the node starts; until then nothing is offered"}
	}
	return led, Finding{Check: name, Status: OK, Detail: fmt.Sprintf("offer %s; %d allocation %s fit it", describe(reg), len(led.Locks()), plural(len(led.Locks()), "lock", "locks"))}
}

func describe(c capability.Capability) string {
	s := fmt.Sprintf("cpu=%s memory=%s disk=%s", capability.FormatCPU(c.CPU.MilliCores), capability.FormatBytes(c.Memory), capability.FormatBytes(c.Disk))
	if len(c.GPUs) > 0 {
		s += fmt.Sprintf(" gpus=%d", len(c.GPUs))
	}
	return s
}

// Allocations reports the allocations recorded as running in a home no
// node runs on: their processes ended with the node. The node records
// them as failed (so their requesters hear it) and frees what they locked
// as it starts; starting says it does.
func Allocations(led *resources.Ledger, starting bool) Finding {
	const name = "allocations"
	locks := led.Locks()
	if len(locks) == 0 {
		return Finding{Check: name, Status: OK, Detail: "none recorded as running"}
	}
	var ids []string
	for _, lk := range locks {
		// Only the job's ID is read: a record that does not decode in full
		// is still an allocation left running.
		var info struct {
			JobID string `json:"job_id"`
		}
		desc := lk.ID
		if json.Unmarshal(lk.Meta, &info) == nil && info.JobID != "" {
			desc += " (job " + shortID(info.JobID) + ")"
		}
		ids = append(ids, desc)
	}
	detail := fmt.Sprintf("%d %s recorded as running with no process left to run %s: %s", len(locks),
		plural(len(locks), "allocation", "allocations"), plural(len(locks), "it", "them"), strings.Join(ids, ", "))
	if starting {
		return Finding{Check: name, Status: Repaired, Detail: detail + "; the node records them as failed and frees what they held as it starts"}
	}
	return Finding{Check: name, Status: Warning, Detail: detail, Fix: "dms run records them as failed, so their requesters hear it, and frees what they held"}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// engineTimeout bounds the container engine's answer; a loaded engine
// takes seconds.
const engineTimeout = 30 * time.Second

// ContainerEngine asks the container engine whether it answers, when the
// offer includes containers: a node that bids for container jobs it cannot
// run fails every one it wins. engine nil asks the docker command line.
func ContainerEngine(ctx context.Context, led *resources.Ledger, engine func(context.Context) error) Finding {
	const name = "containers"
	prefs, err := onboarding.StoredPreferences(led)
	if err != nil {
		return Finding{Check: name, Status: Problem, Detail: "the offer's preferences do not load: " + err.Error(), Fix: "onboard again (dms onboard ...)"}
	}
	if led.Registered().IsZero() || !slices.Contains(prefs.Executors(), orchestrator.ExecutorDocker) {
		return Finding{Check: name, Status: OK, Detail: "containers are not offered; the engine is not needed"}
	}
	if engine == nil {
		engine = dockerEngine
	}
	ctx, cancel := context.WithTimeout(ctx, engineTimeout)
	defer cancel()
	if err := engine(ctx); err != nil {
		return Finding{Check: name, Status: Problem,
			Detail: fmt.Sprintf("containers are offered (executors %s) but the container engine does not answer: %v", strings.Join(prefs.Executors(), ","), err),
			Fix:    "start the engine (e.g. sudo systemctl start docker) and check that docker version works for this user; or onboard again without docker in --executors"}
	}
	return Finding{Check: name, Status: OK, Detail: "containers are offered and the engine answers"}
}

func dockerEngine(ctx context.Context) error {
	d, err := executor.NewDocker()
	if err != nil {
		return err
	}
	_, err = d.Engine(ctx)
	return err
}

// JobEntry is a job record as the job book keeps it, with its key.
type JobEntry struct {
	Key string
	node.JobRecord
}

// Jobs reads the job book (the jobs this node submitted). A record that
// does not decode keeps the node from starting, so it is a problem.
func Jobs(ctx context.Context, store ds.Datastore) ([]JobEntry, Finding) {
	const name = "jobs"
	res, err := store.Query(ctx, query.Query{Prefix: node.JobsPrefix})
	if err != nil {
		return nil, Finding{Check: name, Status: Problem, Detail: "the job book does not read: " + err.Error(), Fix: "see the datastore check"}
	}
	defer res.Close()
	var out []JobEntry
	for e := range res.Next() {
		if e.Error != nil {
			return nil, Finding{Check: name, Status: Problem, Detail: "the job book does not read: " + e.Error.Error(), Fix: "see the datastore check"}
		}
		var j JobEntry
		if err := json.Unmarshal(e.Value, &j.JobRecord); err != nil {
			return nil, Finding{Check: name, Status: Problem, Detail: fmt.Sprintf("job record %s does not decode: %v", e.Key, err),
				Fix: "please report it; moving the datastore aside (see the datastore check) starts with an empty job book"}
		}
		j.Key = e.Key
		out = append(out, j)
	}
	return out, Finding{Check: name, Status: OK, Detail: fmt.Sprintf("%d %s in the job book", len(out), plural(len(out), "job", "jobs"))}
}

// Outputs checks that each completed job's output files are still where
// the job book says they are kept.
func Outputs(jobs []JobEntry) Finding {
	const name = "outputs"
	var gone []string
	for _, j := range jobs {
		o := j.Outputs
		if j.State != node.JobCompleted || o == nil || o.Error != "" || len(o.Files) == 0 {
			continue
		}
		if _, err := os.Stat(o.Dir); errors.Is(err, fs.ErrNotExist) {
			gone = append(gone, fmt.Sprintf("job %s (%s)", shortID(j.ID), o.Dir))
		}
	}
	if len(gone) == 0 {
		return Finding{Check: name, Status: OK, Detail: "every completed job's outputs are where the job book says"}
	}
	return Finding{Check: name, Status: Warning,
		Detail: fmt.Sprintf("the outputs of %d completed %s are gone: %s", len(gone), plural(len(gone), "job", "jobs"), strings.Join(gone, ", ")),
		Fix:    "they were removed from this node, which keeps the only copy it fetched: dms job get cannot write them; run the job again if you need them"}
}

// clockSlack is how far behind the newest record the clock may be: two
// machines' clocks, or a record written just before a small correction,
// differ by seconds.
const clockSlack = 5 * time.Minute

// Clock checks that now is after the binary was built and not well before
// the newest record in the datastore: bids' and holds' expiries and jobs'
// durations are measured on it.
func Clock(now, built, newest time.Time) Finding {
	const name = "clock"
	fix := "set the clock right (e.g. timedatectl set-ntp true, or ntpdate), then start the node"
	if !built.IsZero() && now.Before(built.Add(-clockSlack)) {
		return Finding{Check: name, Status: Problem, Detail: fmt.Sprintf("the clock says %s, before this binary was built (%s)", now.UTC().Format(time.RFC3339), built.UTC().Format(time.RFC3339)), Fix: fix}
	}
	if !newest.IsZero() && now.Before(newest.Add(-clockSlack)) {
		return Finding{Check: name, Status: Problem, Detail: fmt.Sprintf("the clock says %s, %s before the newest record in the datastore (%s)",
			now.UTC().Format(time.RFC3339), newest.Sub(now).Round(time.Second), newest.UTC().Format(time.RFC3339)), Fix: fix}
	}
	return Finding{Check: name, Status: OK, Detail: "the clock is after the build and the newest record"}
}

// Newest is the latest time recorded in the ledger's locks and the job
// book.
func Newest(led *resources.Ledger, jobs []JobEntry) time.Time {
	var t time.Time
	later := func(u time.Time) {
		if u.After(t) {
			t = u
		}
	}
	if led != nil {
		for _, lk := range led.Locks() {
			later(lk.Since)
		}
	}
	for _, j := range jobs {
		later(j.Submitted)
		later(j.Ended)
	}
	return t
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
