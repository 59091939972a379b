// Package doctor checks that a dms home is sound before a node starts on
// it, and on demand (dms doctor): who holds it, its permissions, its
// datastore and what is recorded there (the offer's locks, allocations,
// jobs' outputs), the container engine an offer promises and the clock.
// Each check is a function over the home, or over its open datastore, and
// says what it found and what to do; Run runs them all in order.
//
// A check repairs only what is safe to repair without a person's judgment
// (files a dead node left behind), and only when asked. What needs a
// decision it reports as a problem, and dms run refuses to start on it.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/resources"
)

// Status is what a check found.
type Status string

// Statuses, from good to bad.
const (
	OK       Status = "ok"
	Repaired Status = "repaired" // it was wrong and is right now; Detail says what was done
	Warning  Status = "warning"  // worth knowing or doing; a node starts anyway
	Problem  Status = "problem"  // dms run refuses to start until it is dealt with
)

// Finding is one check's result.
type Finding struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Detail says what was found, or done.
	Detail string `json:"detail"`
	// Fix says what to do about a warning or problem (or, for one that
	// can be repaired, which command repairs it).
	Fix string `json:"fix,omitempty"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("%-8s %s: %s", f.Status, f.Check, f.Detail)
	if f.Fix != "" {
		s += "\n         to do: " + f.Fix
	}
	return s
}

// Report is what Run found.
type Report struct {
	Home     string    `json:"home"`
	Findings []Finding `json:"findings"`
	// InUse is set when a node runs on the home: the checks of the
	// datastore's contents are left to it.
	InUse *resources.HomeInUseError `json:"-"`
}

// Problems are the findings that keep a node from starting.
func (r Report) Problems() []Finding { return r.with(Problem) }

// Repairs are the findings that were repaired.
func (r Report) Repairs() []Finding { return r.with(Repaired) }

func (r Report) with(s Status) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Status == s {
			out = append(out, f)
		}
	}
	return out
}

// ErrUnsound: a home has problems that keep a node from starting on it.
var ErrUnsound = errors.New("home is not sound")

// Err is nil when no finding is a problem, and otherwise names each, with
// what to do; errors.Is(err, ErrUnsound) holds.
func (r Report) Err() error {
	ps := r.Problems()
	if len(ps) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", r.Home, ErrUnsound)
	for _, p := range ps {
		fmt.Fprintf(&b, "\n  %s: %s", p.Check, p.Detail)
		if p.Fix != "" {
			fmt.Fprintf(&b, "\n    to do: %s", p.Fix)
		}
	}
	return &unsoundError{msg: b.String()}
}

type unsoundError struct{ msg string }

func (e *unsoundError) Error() string        { return e.msg }
func (e *unsoundError) Is(target error) bool { return target == ErrUnsound }

// Mode says who runs the checks, which decides what may be repaired.
type Mode int

const (
	// Look repairs nothing (dms doctor).
	Look Mode = iota
	// Start repairs what a dead node left behind, as a node starting on
	// the home does (dms run).
	Start
	// Fix repairs as Start does, and also narrows permissions, which the
	// user asked for by name (dms doctor --fix).
	Fix
)

// Options are what the checks need beyond the home.
type Options struct {
	Mode Mode
	// Now is the clock to check; zero: time.Now.
	Now time.Time
	// Built is when the binary was built (zero: unknown); a clock before
	// it is wrong.
	Built time.Time
	// Engine asks the container engine whether it answers; nil: the
	// docker command line is asked.
	Engine func(context.Context) error
	// Store is the home's datastore, when the caller has opened it (dms
	// run, which keeps it): the checks read it, and leave it open. Nil:
	// Run opens it, and closes it again.
	Store ds.Batching
}

// Run runs every check on the home in dir, in order, and repairs as
// opts.Mode allows. Unless given opts.Store, it opens the datastore and
// closes it again; when a node holds it, Report.InUse says who, and the
// datastore's contents are not checked (the running node owns them).
func Run(ctx context.Context, h home.Home, opts Options) Report {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	r := Report{Home: h.Dir}
	r.Findings = append(r.Findings, Permissions(h, opts.Mode == Fix)...)
	store := opts.Store
	f := Finding{Check: "datastore", Status: OK, Detail: h.DataPath() + " opens"}
	if store == nil {
		var inUse *resources.HomeInUseError
		store, f, inUse = Datastore(h)
		r.InUse = inUse
		if store == nil {
			r.Findings = append(r.Findings, f)
			if inUse != nil {
				r.Findings = append(r.Findings, Answers(ctx, h, inUse.PID))
			}
			return r
		}
		defer store.Close()
	}
	// The lock is ours now: whatever names another holder is stale.
	r.Findings = append(r.Findings, NodeLock(h, opts.Mode != Look), f)
	led, f := Ledger(store)
	r.Findings = append(r.Findings, f)
	if led != nil {
		r.Findings = append(r.Findings, Allocations(led, opts.Mode != Look))
		r.Findings = append(r.Findings, ContainerEngine(ctx, led, opts.Engine))
	}
	jobs, f := Jobs(ctx, store)
	if f.Status != OK {
		r.Findings = append(r.Findings, f)
	} else {
		r.Findings = append(r.Findings, Outputs(jobs))
	}
	r.Findings = append(r.Findings, Clock(opts.Now, opts.Built, Newest(led, jobs)))
	return r
}

// answerTimeout bounds how long a running node may take to answer; a
// loaded machine takes seconds.
const answerTimeout = 30 * time.Second

// Answers checks that the node running on the home (pid, 0 when unknown)
// answers on its control socket, as every other command needs it to.
func Answers(ctx context.Context, h home.Home, pid int) Finding {
	const name = "socket"
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	cl, err := api.Dial(ctx, h.Dir)
	if err == nil {
		_, err = cl.Status(ctx)
		cl.Close()
	}
	if err != nil {
		who, fix := "the node running on the home", "stop it (SIGTERM, then SIGKILL if it does not stop) and start it again with dms run"
		if pid > 0 {
			who = fmt.Sprintf("the node running on the home (pid %d)", pid)
			fix = fmt.Sprintf("stop it (kill %d; kill -9 %d if it does not stop) and start it again with dms run", pid, pid)
		}
		return Finding{Check: name, Status: Problem, Detail: fmt.Sprintf("%s does not answer on %s: %v", who, h.SocketPath(), err), Fix: fix}
	}
	return Finding{Check: name, Status: OK, Detail: "the running node answers on " + h.SocketPath()}
}

// Datastore opens the home's datastore. It returns nil and the finding
// when it does not open: inUse is set (and the finding OK) when that is
// because a node runs on the home.
func Datastore(h home.Home) (_ ds.Batching, _ Finding, inUse *resources.HomeInUseError) {
	const name = "datastore"
	store, err := h.OpenDatastore()
	switch {
	case errors.As(err, &inUse):
		return nil, Finding{Check: name, Status: OK, Detail: inUse.Error() + "; its datastore is checked by that node, not here"}, inUse
	case err != nil:
		return nil, Finding{Check: name, Status: Problem,
			Detail: fmt.Sprintf("%s does not open: %v", h.DataPath(), err),
			Fix: fmt.Sprintf("restore %s from a backup; or move it aside (mv %s %s.broken) and start with an empty one, which loses the offer (dms onboard again), the job book and the allocation history",
				home.ShellQuote(h.DataPath()), home.ShellQuote(h.DataPath()), home.ShellQuote(h.DataPath()))}, nil
	}
	return store, Finding{Check: name, Status: OK, Detail: h.DataPath() + " opens"}, nil
}
