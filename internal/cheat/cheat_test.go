package cheat_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/internal/cheat"
	"github.com/dms-project/dms/orchestrator"
)

// honest stands for the node's own backend: the cheat asks it only for
// preferences.
type honest struct{ orchestrator.Backend }

func (honest) Preferences() orchestrator.Preferences { return orchestrator.DefaultPreferences() }

const requester = peer.ID("requester")

func invoked(t *testing.T, m cheat.Mode) (*cheat.Backend, orchestrator.Backend, string) {
	t.Helper()
	c := cheat.New(m)
	b := c.Wrap(honest{}, nil)
	inv := &orchestrator.Invocation{}
	inv.Bid.Bid.Requester = requester
	id, err := b.Accept("hold", inv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Invocations() != 1 {
		t.Fatalf("invocations %d after one, want 1", c.Invocations())
	}
	return c, b, id
}

func TestCheatBidsBestOnEverything(t *testing.T) {
	b := cheat.New(cheat.Forge).Wrap(honest{}, nil)
	o := b.Offer()
	if !o.Price.IsZero() || o.Score != cheat.Score || o.Available.CPU.Score != cheat.Score {
		t.Fatalf("offer %+v: want price 0 and score %v", o, cheat.Score)
	}
	if !b.Onboarded() || b.Load() != 0 || b.CanRun(context.Background(), &orchestrator.BidRequest{}) != nil {
		t.Fatal("a cheat must say it is onboarded, idle, and can run anything")
	}
	// Room for anything, and twice: it holds nothing.
	for range 2 {
		if _, err := b.Reserve("h", o.Available, time.Now().Add(time.Minute), nil); err != nil || b.Pin("h") != nil || !b.Release("h") {
			t.Fatalf("the cheat refused a hold: %v", err)
		}
	}
}

func TestForgerCompletesWithItsOwnOutput(t *testing.T) {
	_, b, id := invoked(t, cheat.Forge)
	ch, err := b.Watch(context.Background(), id, requester)
	if err != nil {
		t.Fatal(err)
	}
	var stdout string
	var last orchestrator.Event
	for e := range ch {
		if e.AllocationID != id {
			t.Fatalf("event for %s, want %s", e.AllocationID, id)
		}
		if e.Kind == orchestrator.EventStdout {
			stdout += string(e.Data)
		}
		last = e
	}
	if last.Kind != orchestrator.EventResult || last.Result.State != orchestrator.StateCompleted || last.Result.ExitCode != 0 || stdout != cheat.Forged {
		t.Fatalf("ended with %+v after stdout %q; want a completed result, exit 0, after %q", last, stdout, cheat.Forged)
	}
}

func TestSilentCheatSendsNothing(t *testing.T) {
	_, b, id := invoked(t, cheat.Silent)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		ch, err := b.Watch(ctx, id, requester)
		if ch != nil {
			err = errors.New("Watch returned events")
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Watch returned before its stream ended: %v", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch after its stream ended: %v, want context.Canceled", err)
	}
}

func TestEndlessCheatNeverEnds(t *testing.T) {
	c, b, id := invoked(t, cheat.Endless)
	ch, err := b.Watch(context.Background(), id, requester)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []orchestrator.State{orchestrator.StatePending, orchestrator.StateRunning} {
		if e := <-ch; e.Kind != orchestrator.EventState || e.State != want {
			t.Fatalf("event %+v, want state %s", e, want)
		}
	}
	select {
	case e, ok := <-ch:
		t.Fatalf("after running, the endless cheat sent %+v (open: %v)", e, ok)
	default:
	}
	if err := b.Cancel(id, requester); err != nil || c.Cancels() != 1 {
		t.Fatalf("cancel: %v, %d counted; want it taken and counted", err, c.Cancels())
	}
}

func TestCheatLetsOnlyTheRequesterWatch(t *testing.T) {
	_, b, id := invoked(t, cheat.Forge)
	if _, err := b.Watch(context.Background(), id, "someone else"); !errors.Is(err, orchestrator.ErrNotFound) {
		t.Fatalf("watch by another peer: %v, want ErrNotFound", err)
	}
	if err := b.Cancel("nope", requester); !errors.Is(err, orchestrator.ErrNotFound) {
		t.Fatalf("cancel of an unknown allocation: %v, want ErrNotFound", err)
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range cheat.Modes {
		if got, err := cheat.ParseMode(string(m)); err != nil || got != m {
			t.Fatalf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	if _, err := cheat.ParseMode("lazy"); err == nil || !strings.Contains(err.Error(), "forge") {
		t.Fatalf("ParseMode(lazy): %v, want an error naming the modes", err)
	}
}

// TestOnlyTestsImportCheat: no package of the module imports the cheat
// outside its tests, so no build of dms can cheat.
func TestOnlyTestsImportCheat(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the packages with")
	}
	out, err := exec.Command(gobin, "list", "-f", "{{.ImportPath}}: {{.Imports}}", "github.com/dms-project/dms/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const self = "github.com/dms-project/dms/internal/cheat"
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ": ")
		if strings.Contains(imports, self+" ") || strings.Contains(imports, self+"]") {
			t.Errorf("%s imports %s outside its tests", pkg, self)
		}
	}
}
