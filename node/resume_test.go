package node_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// restartable is a local network whose node 1, the requester, can be
// stopped and started again with the same home, datastore and key, as
// `dms run` on the same home would be.
type restartable struct {
	t         *testing.T
	ln        *testnet.Local
	requester *node.Node
	configure func(*node.Config)
}

func newRestartable(t *testing.T, providerCPU uint64, requesterConfig func(*node.Config)) *restartable {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	store, home := node.MemoryDatastore(), t.TempDir()
	r := &restartable{t: t}
	r.configure = func(c *node.Config) {
		c.Datastore, c.Key, c.Home = store, key, home
		if requesterConfig != nil {
			requesterConfig(c)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r.ln, err = testnet.StartLocal(ctx, testnet.LocalConfig{
		Nodes: 3, Requesters: []int{1}, Wasm: sharedWasm,
		Offer: capability.Capability{CPU: capability.CPU{MilliCores: providerCPU}, Memory: 2 * capability.GiB, Disk: capability.GiB},
		Configure: func(i int, c *node.Config) {
			// A restart on a busy machine may take longer than the test
			// network's 3 s: the providers wait for the requester longer.
			c.Orchestrator.Provider.AbandonGrace = 3 * time.Minute
			if i == 1 {
				r.configure(c)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ln.Close() })
	r.requester = r.ln.Nodes[1]
	return r
}

// restart stops the requester and starts it again on the same home.
func (r *restartable) restart(between func()) {
	r.t.Helper()
	if err := r.requester.Close(); err != nil {
		r.t.Fatal(err)
	}
	if between != nil {
		between()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	boot := []peer.AddrInfo{r.ln.Nodes[0].AddrInfo(), r.ln.Nodes[2].AddrInfo()}
	n, err := r.ln.StartNode(ctx, nil, boot, r.configure)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { n.Close() })
	r.requester = n
}

func (r *restartable) provider(id peer.ID) *node.Node {
	for _, n := range r.ln.Nodes {
		if n.ID() == id {
			return n
		}
	}
	r.t.Fatalf("no provider %s in the network", id)
	return nil
}

// runningJob starts a files job that ticks for ticks tenths of a second,
// and returns it once its allocation runs.
func (r *restartable) runningJob(ticks int) (node.JobRecord, *node.Node) {
	r.t.Helper()
	in := inputs(r.t, map[string]string{"inputs/a.txt": "alpha\n"})
	id, err := r.requester.StartJob(filesJob(orchestrator.ExecutorWasm, in, "-tick", fmt.Sprint(ticks)))
	if err != nil {
		r.t.Fatal(err)
	}
	var rec node.JobRecord
	poll.Until(r.t, 2*time.Minute, "the job to be accepted", func() bool {
		rec, _ = r.requester.Job(id)
		if rec.Final() {
			r.t.Fatalf("the job ended before it ran: %s %s", rec.State, rec.Error)
		}
		return rec.State == node.JobRunning
	})
	provider := r.provider(rec.Provider)
	poll.Until(r.t, 2*time.Minute, "the allocation to run", func() bool {
		info, _ := provider.Allocation(rec.AllocationID)
		return info.State == orchestrator.StateRunning || info.State.Final()
	})
	return rec, provider
}

// waitCompleted waits for the restarted requester to see the job end, and
// checks that it completed with all its output and files.
func (r *restartable) waitCompleted(id string, ticks int) node.JobRecord {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rec, err := r.requester.WaitJob(ctx, id)
	if err != nil {
		r.t.Fatal(err)
	}
	if rec.State != node.JobCompleted || rec.Result == nil {
		r.t.Fatalf("job after the restart: %s (%s), result %+v", rec.State, rec.Error, rec.Result)
	}
	out := string(rec.Result.Stdout)
	for _, want := range []string{"tick 1\n", fmt.Sprintf("tick %d\n", ticks), "1 files, 6 bytes"} {
		if !strings.Contains(out, want) {
			r.t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	checkOutputs(r.t, rec, map[string]string{"a.txt.upper": "ALPHA\n", "summary.txt": "file a.txt: 6 bytes\n1 files, 6 bytes\n"})
	kinds := map[orchestrator.ProgressKind]bool{}
	for _, p := range rec.Progress {
		kinds[p.Kind] = true
	}
	if !kinds[node.ProgressInterrupted] || !kinds[node.ProgressResumed] {
		r.t.Errorf("the steps do not say the node stopped and took the job up again: %+v", rec.Progress)
	}
	return rec
}

// The defect of issue 18: a requester stopped while its detached job ran
// recorded it as "cancelled by the requester" and lost its output. Now the
// job goes on at its provider, and the requester, started again on the
// same home, follows it to its end and gets its output and files.
func TestJobRunsThroughItsRequestersRestart(t *testing.T) {
	t.Parallel()
	r := newRestartable(t, 1000, nil)
	const ticks = 50
	rec, provider := r.runningJob(ticks)
	r.restart(nil)
	got := r.waitCompleted(rec.ID, ticks)
	if got.AllocationID != rec.AllocationID {
		t.Fatalf("the job ran again as %s rather than being followed on %s", got.AllocationID, rec.AllocationID)
	}
	// The allocation ran once, to its end: nobody cancelled it.
	info, _ := provider.Allocation(rec.AllocationID)
	if info.State != orchestrator.StateCompleted {
		t.Fatalf("allocation %s", info.State)
	}
}

// A job that ends while its requester is down: the provider keeps its
// result and outputs, and the requester collects them when it is back.
func TestJobThatEndedWhileItsRequesterWasDownIsCollected(t *testing.T) {
	t.Parallel()
	r := newRestartable(t, 1000, nil)
	const ticks = 5
	rec, provider := r.runningJob(ticks)
	r.restart(func() {
		poll.Until(t, 2*time.Minute, "the allocation to end with nobody following", func() bool {
			info, _ := provider.Allocation(rec.AllocationID)
			return info.State.Final()
		})
	})
	r.waitCompleted(rec.ID, ticks)
}

// A job still looking for a provider when its requester stopped is
// submitted again when the requester starts.
func TestJobStillBiddingIsSubmittedAgainAfterARestart(t *testing.T) {
	t.Parallel()
	// No provider can take 1.5 cores, so the job is still bidding when its
	// requester stops (a window of the longest allowed: it does not fail
	// first); one that can is onboarded while the requester is down.
	r := newRestartable(t, 1000, func(c *node.Config) { c.Orchestrator.Requester.BiddingWindow = orchestrator.MaxBiddingWindow })
	sub := filesJob(orchestrator.ExecutorWasm, inputs(t, map[string]string{"inputs/a.txt": "alpha\n"}), "-tick", "3")
	sub.Job.Requirements.CPU.MilliCores = 1500
	id, err := r.requester.StartJob(sub)
	if err != nil {
		t.Fatal(err)
	}
	r.restart(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := testnet.Onboard(ctx, r.ln.Nodes[0], capability.Capability{CPU: capability.CPU{MilliCores: 2000}, Memory: 2 * capability.GiB, Disk: capability.GiB}); err != nil {
			t.Fatal(err)
		}
	})
	rec := r.waitCompleted(id, 3)
	if rec.Provider != r.ln.Nodes[0].ID() {
		t.Fatalf("ran on %s, want the only provider that can take it", rec.Provider)
	}
	if !slices.ContainsFunc(rec.Progress, func(p orchestrator.Progress) bool {
		return p.Kind == node.ProgressResumed && strings.Contains(p.Message, "submitting the job again")
	}) {
		t.Fatalf("steps do not say it was submitted again: %+v", rec.Progress)
	}
}
