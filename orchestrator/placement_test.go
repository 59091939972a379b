package orchestrator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
)

// placementMesh is a requester (node 0, offering nothing) and three
// providers with different labels; node 2 is the dearest.
func placementMesh(t *testing.T) []*fakeNode {
	t.Helper()
	labels := []Labels{nil, {"region": "eu-west", "tier": "gold"}, {"region": "us-east", "tier": "gold"}, {"region": "eu-north", "tier": "silver"}}
	nodes := newFakeMesh(t, 4, func(i int) *fakeBackend {
		b := newFakeBackend(2000)
		b.onboarded = i != 0
		b.labels = labels[i]
		b.price = capability.PriceInformation{Currency: "DMS", PerCoreHour: 1}
		if i == 2 {
			b.price.PerCoreHour = 5
		}
		return b
	})
	// Every provider is asked (no spread), and bidding closes when every
	// provider's bid is in, however slow the machine, so that ranking sees
	// them all.
	r := nodes[0].svc.Requester
	r.cfg.BiddingWindow, r.cfg.WantBids, r.cfg.SpreadFactor = MaxBiddingWindow, 3, 0
	r.cfg.Grace = r.cfg.BiddingWindow
	return nodes
}

// ranOn says which nodes accepted the job.
func ranOn(nodes []*fakeNode, jobID string) []int {
	var out []int
	for i, n := range nodes {
		for _, j := range n.backend.acceptedJobs() {
			if j == jobID {
				out = append(out, i)
			}
		}
	}
	return out
}

func TestConstraintPlacesTheJob(t *testing.T) {
	t.Parallel()
	nodes := placementMesh(t)
	nodes[0].svc.Requester.cfg.WantBids = 1 // only one provider may bid: close on its bid
	sub := wasmJob("placed")
	sub.Job.ID = NewJobID()
	sub.Job.Constraints = mustConstraints(t, "region in (eu-north,ap-south)", "tier!=gold")
	res, err := nodes[0].svc.Submit(context.Background(), sub, nil)
	if err != nil || res.State != StateCompleted {
		t.Fatalf("result %+v, err %v", res, err)
	}
	if got := ranOn(nodes, sub.Job.ID); len(got) != 1 || got[0] != 3 {
		t.Fatalf("the job ran on nodes %v, want on node 3 alone (region=eu-north, tier=silver)", got)
	}
	for _, i := range []int{1, 2} {
		waitFor(t, "the others' declines to be recorded", func() bool { return nodes[i].svc.Declined(sub.Job.ID) != "" })
		if why := nodes[i].svc.Declined(sub.Job.ID); !strings.HasPrefix(why, "constraint ") || !strings.Contains(why, "not met") {
			t.Errorf("node %d declined: %q, want the constraint it misses", i, why)
		}
	}
}

func TestConstraintNobodyMeetsIsNamed(t *testing.T) {
	t.Parallel()
	nodes := placementMesh(t)
	nodes[0].svc.Requester.cfg.BiddingWindow = 500 * time.Millisecond
	sub := wasmJob()
	sub.Job.ID = NewJobID()
	sub.Job.Constraints = mustConstraints(t, "region=ap-south")
	_, err := nodes[0].svc.Submit(context.Background(), sub, nil)
	if !errors.Is(err, ErrNoBids) || !strings.Contains(err.Error(), "region=ap-south") {
		t.Fatalf("err = %v, want ErrNoBids naming region=ap-south", err)
	}
	if got := ranOn(nodes, sub.Job.ID); len(got) != 0 {
		t.Fatalf("the job ran on nodes %v", got)
	}
	want := map[int]string{
		1: "constraint region=ap-south not met (region=eu-west)",
		2: "constraint region=ap-south not met (region=us-east)",
		3: "constraint region=ap-south not met (region=eu-north)",
	}
	for i, w := range want {
		waitFor(t, "the declines to be recorded", func() bool { return nodes[i].svc.Declined(sub.Job.ID) != "" })
		if why := nodes[i].svc.Declined(sub.Job.ID); why != w {
			t.Errorf("node %d declined: %q, want %q", i, why, w)
		}
	}
}

// Preferences outrank price: node 2, the dearest, is the only one in
// us-east.
func TestPreferenceRanksTheBids(t *testing.T) {
	t.Parallel()
	nodes := placementMesh(t)
	sub := wasmJob()
	sub.Job.ID = NewJobID()
	sub.Job.Prefer = mustConstraints(t, "region=us-east", "tier=gold")
	if _, err := nodes[0].svc.Submit(context.Background(), sub, nil); err != nil {
		t.Fatal(err)
	}
	if got := ranOn(nodes, sub.Job.ID); len(got) != 1 || got[0] != 2 {
		t.Fatalf("the job ran on nodes %v, want node 2 (the one preferred, though dearest)", got)
	}
	// Without preferences, price decides.
	sub.Job.ID, sub.Job.Prefer = NewJobID(), nil
	if _, err := nodes[0].svc.Submit(context.Background(), sub, nil); err != nil {
		t.Fatal(err)
	}
	if got := ranOn(nodes, sub.Job.ID); len(got) != 1 || got[0] == 2 {
		t.Fatalf("without preferences the job ran on nodes %v, want a cheaper one than node 2", got)
	}
}
