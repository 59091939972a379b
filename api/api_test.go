package api_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// serve serves n's control API on a fresh home, as dms run does.
func serve(t *testing.T, n *node.Node) (*api.Server, *api.Client) {
	t.Helper()
	dir := t.TempDir()
	srv := api.NewServer(n, dir, slog.New(slog.DiscardHandler))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	cl, err := api.Dial(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return srv, cl
}

// A running node's errors keep their kind through the socket, with the
// reply that came with them; closing the server ends a call under way,
// saying why, and leaves no socket behind.
func TestAPIOverARunningNode(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{Nodes: 2, Requesters: []int{1},
		Offer: capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: 2 * capability.GiB, Disk: capability.GiB}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, provider := serve(t, ln.Nodes[0])
	reqSrv, requester := serve(t, ln.Nodes[1])

	if id, err := provider.ID(ctx); err != nil || id.PeerID != ln.Nodes[0].ID().String() {
		t.Fatalf("id: %+v %v", id, err)
	}
	if acc, err := provider.Capability(ctx, api.CapabilityRequest{}); err != nil || !acc.Onboarded || acc.Registered.CPU.MilliCores != 1000 {
		t.Fatalf("capability: %+v %v", acc, err)
	}
	huge := uint64(1 << 40)
	var oe *onboarding.OfferError
	if _, err := provider.Onboard(ctx, api.OnboardRequest{CPU: &huge}, nil); !errors.As(err, &oe) || oe.Field != "cpu" {
		t.Fatalf("an offer of 2^40 millicores: %v, want an offer error naming cpu", err)
	}
	if _, err := requester.Job(ctx, "0123456789"); !errors.Is(err, node.ErrNotFound) {
		t.Fatalf("unknown job: %v, want node.ErrNotFound", err)
	}
	if _, err := requester.Job(ctx, " "); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("blank job ID: %v, want api.ErrBadRequest", err)
	}

	// A job that runs until stopped, followed through the requester's API.
	job := api.SubmitJobRequest{Job: orchestrator.JobSpec{
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: capability.GiB},
		Duration:     seconds.Duration(time.Minute), Executor: orchestrator.ExecutorWasm, Module: examples.HelloWasm, Args: []string{"-n", "300000000"},
	}}
	running := make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		once := false
		_, err := requester.SubmitJob(ctx, job, func(p orchestrator.Progress) {
			if p.Kind == orchestrator.ProgressAccepted && !once {
				once = true
				close(running)
			}
		})
		ended <- err
	}()
	select {
	case <-running:
	case err := <-ended:
		t.Fatalf("the job ended before it ran: %v", err)
	case <-ctx.Done():
		t.Fatal("the job never ran")
	}
	// An offboarding refused for the running allocation lists it.
	resp, err := provider.Offboard(ctx, api.OffboardRequest{})
	if !errors.Is(err, onboarding.ErrActiveAllocations) || len(resp.Report.Affected) != 1 {
		t.Fatalf("offboard with a job running: %v %+v, want ErrActiveAllocations listing one lock", err, resp)
	}
	// The list as a table asks for it: one summary per whole record.
	full, err := requester.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := requester.JobSummaries(ctx)
	if err != nil || len(sum.Jobs) != 1 || len(full.Jobs) != 1 {
		t.Fatalf("job summaries: %+v %v, want one beside the record %+v", sum, err, full)
	}
	if want := api.Summarise(full.Jobs[0]); sum.Jobs[0].ID != want.ID || sum.Jobs[0].State != want.State || sum.Jobs[0].Provider != want.Provider {
		t.Errorf("summary %+v, want %+v", sum.Jobs[0], want)
	}
	if err := reqSrv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-ended; !errors.Is(err, node.ErrStopping) {
		t.Fatalf("a submission cut by Close: %v, want node.ErrStopping", err)
	}
	if _, err := api.Dial(ctx, requester.Home()); !errors.Is(err, api.ErrNoNode) {
		t.Fatalf("dial after Close: %v, want ErrNoNode", err)
	}
}
