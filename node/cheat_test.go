package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/cheat"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// Issue 19: a provider on an open mesh is a stranger. These tests put one
// provider built to cheat (internal/cheat) among three honest ones, and
// have one honest requester submit the tiny module twenty times in a row.
// A job counts only if it completed, exit code 0, with the module's own
// output.

// tinyOutput is what examples.TinyWasm prints.
const tinyOutput = "tiny job ok\n"

// cheatJobs is how many jobs each test submits, as the issue measured.
const cheatJobs = 20

// The cheat is node 4; node 1 is the honest requester; 0, 2 and 3 are
// honest providers.
const cheatNode, requesterNode = 4, 1

// cheatNetwork starts five nodes, one of them (cheatNode) a provider that
// cheats in mode m.
func cheatNetwork(t *testing.T, m cheat.Mode) (*testnet.Local, *cheat.Backend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var c *cheat.Backend
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{
		Nodes: 5, Requesters: []int{requesterNode}, Wasm: sharedWasm,
		Offer: capability.Capability{CPU: capability.CPU{MilliCores: 2000}, Memory: 2 * capability.GiB, Disk: capability.GiB},
		Configure: func(i int, cfg *node.Config) {
			if i == cheatNode {
				c = node.Cheat(cfg, m)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, c
}

// tally is what became of a run of jobs.
type tally struct {
	right    int // completed, exit 0, the module's own output
	forged   int // completed, exit 0, the cheat's output
	notRight int // everything else: failed, cut off by the test's deadline, other output
	notTried int // left when the run's budget was spent
	// byCheat counts the jobs whose provider, when they ended, was the
	// cheat.
	byCheat int
	records []node.JobRecord
}

func (s tally) String() string {
	return fmt.Sprintf("%d of %d completed with the right output (%d forged, %d otherwise not, %d not tried within the test's budget)",
		s.right, s.right+s.forged+s.notRight+s.notTried, s.forged, s.notRight, s.notTried)
}

// runBeside submits jobs of sub one after another from the requester and
// says what became of them. Each job may take perJob, all of them budget:
// with a cheat that never ends a job, the run then fails in minutes rather
// than hanging (both are far beyond what an honest tiny job takes, even on
// a busy machine).
func runBeside(t *testing.T, ln *testnet.Local, c *cheat.Backend, sub func() orchestrator.Submission, perJob, budget time.Duration) tally {
	t.Helper()
	requester, cheatID := ln.Nodes[requesterNode], ln.Nodes[cheatNode].ID()
	var s tally
	start := time.Now()
	for i := range cheatJobs {
		if time.Since(start) > budget {
			s.notTried = cheatJobs - i
			t.Logf("job %d: not tried: the run's budget of %v is spent", i+1, budget)
			break
		}
		before := c.Invocations()
		ctx, cancel := context.WithTimeout(context.Background(), min(perJob, budget-time.Since(start)))
		began := time.Now()
		rec, err := requester.SubmitJob(ctx, sub(), nil)
		took := time.Since(began)
		cancel()
		if err != nil && rec.ID == "" {
			t.Fatalf("job %d not submitted: %v", i+1, err)
		}
		if r, gerr := requester.Job(rec.ID); gerr == nil {
			rec = r // as it stands, with the progress that SubmitJob's return leaves out
		}
		s.records = append(s.records, rec)
		var out string
		if rec.Result != nil {
			out = string(rec.Result.Stdout)
		}
		completed := err == nil && rec.State == node.JobCompleted && rec.Result != nil && rec.Result.ExitCode == 0
		switch {
		case completed && out == tinyOutput:
			s.right++
		case completed && out == cheat.Forged:
			s.forged++
		default:
			s.notRight++
		}
		if rec.Provider == cheatID {
			s.byCheat++
		}
		why := ""
		if err != nil {
			why = ": " + err.Error()
		}
		t.Logf("job %d: %s in %v, output %q, provider %s (the cheat: %v), cheat invoked %d times for it%s",
			i+1, rec.State, took.Round(time.Millisecond), out, shortID(rec.Provider.String()), rec.Provider == cheatID, c.Invocations()-before, why)
	}
	t.Logf("beside a provider that cheats (%s): %s in %v; the cheat was invoked %d times, was the provider of %d jobs when they ended, and was asked %d times to cancel",
		c.Mode(), s, time.Since(start).Round(time.Millisecond), c.Invocations(), s.byCheat, c.Cancels())
	return s
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}

// replicate asks for a job to run on k providers whose results must agree
// as agree says: dms job submit --replicas K --agree all|majority.
func replicate(sub *orchestrator.Submission, k int, agree orchestrator.Agreement) {
	sub.Replication = orchestrator.Replication{Replicas: k, Agree: agree}
}

// TestForgerIsOutvoted: the cheat completes every job it wins at once,
// exit code 0, with output of its own. Run on three providers that must
// agree by majority, every job's result is the honest one, and the cheat,
// once outvoted, is not invoked again.
func TestForgerIsOutvoted(t *testing.T) {
	t.Parallel()
	ln, c := cheatNetwork(t, cheat.Forge)
	s := runBeside(t, ln, c, func() orchestrator.Submission {
		sub := tinyJob()
		replicate(&sub, 3, orchestrator.AgreeMajority)
		return sub
	}, time.Minute, 3*time.Minute)
	if c.Invocations() == 0 {
		t.Fatal("the forger was never invoked: the test shows nothing")
	}
	if s.right != cheatJobs {
		t.Fatalf("beside a forger: %s", s)
	}
	if n := c.Invocations(); n > 1 {
		t.Fatalf("the forger was invoked %d times: once outvoted, it should not be invoked again", n)
	}
}

// TestForgerFailsAJobAllMustAgreeOn: with replicas that must all agree and
// one of them the forger, the job does not complete: the results disagree,
// and a disagreement is never resolved silently. Every provider runs a
// replica, so the forger surely is one of them (with fewer, which bids
// arrive first decides).
func TestForgerFailsAJobAllMustAgreeOn(t *testing.T) {
	t.Parallel()
	ln, c := cheatNetwork(t, cheat.Forge)
	sub := tinyJob()
	replicate(&sub, len(ln.Nodes)-1, orchestrator.AgreeAll) // every node but the requester
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec, err := ln.Nodes[requesterNode].SubmitJob(ctx, sub, nil)
	if c.Invocations() == 0 {
		t.Fatalf("the forger was never invoked (job %s, %v): the test shows nothing", rec.State, err)
	}
	if err == nil || rec.State != node.JobFailed {
		t.Fatalf("job with a forger among replicas that must all agree: %s, %v; want failed for the disagreement", rec.State, err)
	}
	// The forger signs a receipt for what it made up, so the receipt
	// alone passes: only the other replica shows the forgery.
	if !errors.Is(err, orchestrator.ErrDisagreed) {
		t.Fatalf("failed with %v, want the replicas' disagreement", err)
	}
	if rec.Result != nil && string(rec.Result.Stdout) == cheat.Forged {
		t.Fatalf("the failed job carries the forged output %q", rec.Result.Stdout)
	}
	t.Logf("failed as it should: %s", rec.Error)
}

// TestSilentProviderCostsOneStall: the cheat accepts every invocation and
// then sends nothing, not even heartbeats. Every job still completes with
// the right output, and after the first stall the requester invokes the
// cheat no more, whatever it bids.
func TestSilentProviderCostsOneStall(t *testing.T) {
	t.Parallel()
	ln, c := cheatNetwork(t, cheat.Silent)
	s := runBeside(t, ln, c, tinyJob, time.Minute, 3*time.Minute)
	if c.Invocations() == 0 {
		t.Fatal("the silent provider was never invoked: the test shows nothing")
	}
	if s.right != cheatJobs {
		t.Fatalf("beside a silent provider: %s", s)
	}
	if n := c.Invocations(); n != 1 {
		t.Fatalf("the silent provider was invoked %d times: after the first stall it should not be invoked again", n)
	}
}

// TestEndlessHeartbeatsEndAtTheJobsDeadline: the cheat accepts, says the
// job runs, and sends heartbeats for ever. A job of 3 s is given up on at
// its own deadline, whatever the heartbeats say, and runs elsewhere; the
// cheat is not invoked again.
func TestEndlessHeartbeatsEndAtTheJobsDeadline(t *testing.T) {
	t.Parallel()
	ln, c := cheatNetwork(t, cheat.Endless)
	short := func() orchestrator.Submission {
		sub := tinyJob()
		sub.Job.Duration = seconds.Duration(3 * time.Second)
		return sub
	}
	s := runBeside(t, ln, c, short, 45*time.Second, 2*time.Minute)
	if c.Invocations() == 0 {
		t.Fatal("the endless provider was never invoked: the test shows nothing")
	}
	// The job the cheat took first ran elsewhere in the end.
	first := slices.IndexFunc(s.records, func(r node.JobRecord) bool {
		return slices.ContainsFunc(r.Progress, func(p orchestrator.Progress) bool {
			return p.Kind == orchestrator.ProgressAccepted && p.Provider == ln.Nodes[cheatNode].ID()
		})
	})
	if first < 0 {
		t.Fatalf("no job's progress shows the cheat accepting it, though it was invoked %d times", c.Invocations())
	}
	if r := s.records[first]; r.State != node.JobCompleted || r.Provider == ln.Nodes[cheatNode].ID() || r.Result == nil || string(r.Result.Stdout) != tinyOutput {
		out := ""
		if r.Result != nil {
			out = strings.TrimSpace(string(r.Result.Stdout))
		}
		t.Errorf("job %d, which the cheat took: %s on %s, output %q, %s; want completed elsewhere with %q", first+1, r.State, shortID(r.Provider.String()), out, r.Error, tinyOutput)
	}
	if s.right != cheatJobs {
		t.Fatalf("beside a provider that heartbeats for ever: %s", s)
	}
	if n := c.Invocations(); n != 1 {
		t.Fatalf("the endless provider was invoked %d times: after it overran one job it should not be invoked again", n)
	}
}
