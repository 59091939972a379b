package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/p2p"
)

func TestDirectCount(t *testing.T) {
	for _, tc := range []struct {
		spread float64
		n      int
		want   int
	}{
		{1, 100, 0},     // everyone: the topic
		{0, 100, 0},     // everyone
		{0.06, 100, 6},  // SpreadFor(3, 100, 2)
		{0.24, 100, 24}, // widened four times
		{0.061, 100, 7}, // rounds up: never fewer than the spread lets bid
		{0.001, 100, 1}, // at least one
		{0.5, 0, 0},     // nobody known: the topic
	} {
		if got := DirectCount(tc.spread, tc.n); got != tc.want {
			t.Errorf("DirectCount(%v, %d) = %d, want %d", tc.spread, tc.n, got, tc.want)
		}
	}
}

func TestNearestIsByDistanceToTheJob(t *testing.T) {
	var known []peer.ID
	for range 30 {
		_, id := testPeer(t)
		known = append(known, id)
	}
	self := known[7]
	withDup := append(slices.Clone(known), known[3], "")
	got := Nearest(withDup, self, "job-1", 5)
	if len(got) != 5 {
		t.Fatalf("got %d peers, want 5", len(got))
	}
	others := slices.DeleteFunc(slices.Clone(known), func(p peer.ID) bool { return p == self })
	slices.SortFunc(others, func(a, b peer.ID) int {
		da, db := Distance(a, "job-1"), Distance(b, "job-1")
		switch {
		case da < db:
			return -1
		case da > db:
			return 1
		}
		return 0
	})
	if !slices.Equal(got, others[:5]) {
		t.Fatalf("Nearest = %v, want the five nearest %v", got, others[:5])
	}
	if all := Nearest(known, self, "job-1", 100); len(all) != 29 || slices.Contains(all, self) {
		t.Fatalf("asking for more than known: %d peers (self included: %v), want the 29 others", len(all), slices.Contains(all, self))
	}
}

// Targets asks the nearest connected peers first and fills up with the
// nearest of the rest.
func TestTargetsPreferConnectedPeers(t *testing.T) {
	var known []peer.ID
	for range 20 {
		_, id := testPeer(t)
		known = append(known, id)
	}
	connected := known[:4]
	got := Targets(known, connected, "", "job-2", 6)
	if len(got) != 6 {
		t.Fatalf("got %d targets, want 6", len(got))
	}
	want := append(Nearest(connected, "", "job-2", 4), Nearest(known[4:], "", "job-2", 2)...)
	if !slices.Equal(got, want) {
		t.Fatalf("Targets = %v, want the 4 connected by distance, then the 2 nearest of the rest: %v", got, want)
	}
	if got := Targets(known, known, "", "job-2", 3); !slices.Equal(got, Nearest(known, "", "job-2", 3)) {
		t.Fatalf("all connected: %v, want the 3 nearest", got)
	}
}

// seenBy counts, per node, the bid requests its provider side heard.
func seenBy(nodes []*fakeNode) []int64 {
	out := make([]int64, len(nodes))
	for i, n := range nodes {
		out[i] = n.svc.Stats().RequestsSeen
	}
	return out
}

// In a mesh larger than the spread, a job's request reaches the providers
// nearest the job and nobody else; the job runs.
func TestDirectRequestsReachOnlyTheNearest(t *testing.T) {
	nodes := newFakeMesh(t, 20, func(i int) *fakeBackend { return newFakeBackend(2000) })
	sub := wasmJob("near")
	sub.Job.ID = "direct-job-1"
	res, err := nodes[0].svc.Submit(context.Background(), sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != StateCompleted {
		t.Fatalf("result %+v", res)
	}
	var ids []peer.ID
	for _, n := range nodes {
		ids = append(ids, n.host.ID())
	}
	// 3 bids wanted, SpreadFactor 2, 19 others: the 6 nearest are asked.
	near := Nearest(ids, nodes[0].host.ID(), sub.Job.ID, 6)
	for i, seen := range seenBy(nodes) {
		asked := slices.Contains(near, nodes[i].host.ID())
		switch {
		case i == 0 && seen != 0:
			t.Errorf("the requester's provider side heard %d requests", seen)
		case i > 0 && asked && seen == 0:
			t.Errorf("node %d is among the 6 nearest the job and heard nothing", i)
		case i > 0 && !asked && seen != 0:
			t.Errorf("node %d is not among the 6 nearest the job and heard %d requests", i, seen)
		}
	}
}

// Only one provider fits, and it is the farthest from the job: asking the
// nearest draws no bid, widening reaches it, the job runs there.
func TestAFarProviderStillGetsTheJob(t *testing.T) {
	nodes := newFakeMesh(t, 20, func(i int) *fakeBackend {
		b := newFakeBackend(2000)
		b.onboarded = false
		return b
	})
	sub := wasmJob("far")
	sub.Job.ID = "far-job-1"
	far, farD := -1, -1.0
	for i, n := range nodes[1:] {
		if d := Distance(n.host.ID(), sub.Job.ID); d > farD {
			far, farD = i+1, d
		}
	}
	nodes[far].backend.mu.Lock()
	nodes[far].backend.onboarded = true
	nodes[far].backend.mu.Unlock()
	res, err := nodes[0].svc.Submit(context.Background(), sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != StateCompleted {
		t.Fatalf("result %+v", res)
	}
	if got := nodes[far].backend.acceptedJobs(); !slices.Equal(got, []string{sub.Job.ID}) {
		t.Fatalf("the far provider ran %v, want the job", got)
	}
}

// A direct request is taken only from its requester, and within its
// rate: a flood sent by name is refused before the signature, and its
// sender loses score.
func TestDirectRequestsKeepTheValidatorsRules(t *testing.T) {
	cfg := LocalConfig()
	cfg.Requests = RequestLimits{Rate: 1, Burst: 4}
	nodes := newFakeMeshWith(t, 3, cfg, func(i int) *fakeBackend { return newFakeBackend(2000) })
	ctx := context.Background()
	relay, to := nodes[1].host, nodes[2].host.ID()
	req := NewProbe(nodes[0].host.ID())
	data, err := SealBidRequest(req, nodes[0].svc.key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = relay.Request(ctx, to, ProtocolBidRequest, data, maxDirectAnswer)
	var re *p2p.RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, errNotRequester.Error()) {
		t.Fatalf("a request relayed by name: %v, want refused as not from its requester", err)
	}

	// The requester itself, far over its rate.
	from := nodes[0].host
	limits := cfg.Requests
	refused := 0
	for i := range limits.Burst + 10 {
		req := NewProbe(from.ID())
		req.Nonce = fmt.Sprintf("flood-%06d", i)
		data, err := SealBidRequest(req, nodes[0].svc.key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := from.Request(ctx, to, ProtocolBidRequest, data, maxDirectAnswer); err != nil {
			if !strings.Contains(err.Error(), ErrRateLimited.Error()) {
				t.Fatalf("request %d refused for another reason: %v", i, err)
			}
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("%d direct requests at once from one requester, burst %d: none refused", limits.Burst+10, limits.Burst)
	}
	waitFor(t, "the flooding requester to lose score", func() bool {
		nodes[2].host.mu.Lock()
		defer nodes[2].host.mu.Unlock()
		return slices.Contains(nodes[2].host.penalized, from.ID())
	})
}

// As the network grows past the size where requests stop going on the
// topic and go by name, and shrinks back, a provider keeps receiving, and
// bidding on, every request for a job it is nearest: no request is lost
// where the requester's estimate of the network changes the path.
func TestNoRequestIsLostAsTheNetworkGrowsAndShrinks(t *testing.T) {
	fn := newFakeNet()
	t.Cleanup(fn.Close)
	cfg := LocalConfig()
	type member struct {
		id  peer.ID
		svc *Service
	}
	// Only the provider offers anything, so it wins each job it bids on
	// and never comes to hold more than it runs (which would have it turn
	// the requester away, book.go).
	start := func(onboarded bool) member {
		key, id := testPeer(t)
		b := &recordingBackend{fakeBackend: newFakeBackend(1_000_000)} // never runs out: accepted jobs keep their capacity in the fake
		b.onboarded = onboarded
		withKey(b, key)
		svc, err := NewService(fn.host(id), key, b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		b.svc = svc
		return member{id, svc}
	}
	requester, provider := start(false), start(true)
	var others []member
	jobs := 0
	// submit runs a job whose ID puts provider nearest of all.
	submit := func(size int) {
		t.Helper()
		ids := []peer.ID{provider.id}
		for _, o := range others {
			ids = append(ids, o.id)
		}
		var job string
		for i := 0; job == ""; i++ {
			id := fmt.Sprintf("grow-%d-%d", size, i)
			if Nearest(ids, requester.id, id, 1)[0] == provider.id {
				job = id
			}
		}
		sub := wasmJob(job)
		sub.Job.ID = job
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := requester.svc.Submit(ctx, sub, nil)
		if err != nil || res.State != StateCompleted {
			t.Fatalf("%d nodes: job %s: %v %+v", size, job, err, res)
		}
		if len(provider.svc.RegisteredBids(job)) == 0 {
			t.Fatalf("%d nodes: the provider nearest job %s did not bid on it", size, job)
		}

		jobs++
	}
	for len(others) < 30 {
		submit(2 + len(others))
		others = append(others, start(false))
	}
	for len(others) > 0 {
		submit(2 + len(others))
		last := others[len(others)-1]
		others = others[:len(others)-1]
		fn.remove(last.id)
		last.svc.Close()
	}
	submit(2)
	t.Logf("%d jobs, each bid on by the provider nearest it, from 2 to 32 nodes and back", jobs)
}

// A provider that bids twice in one round (its first bid gone, expired or
// pushed aside, and the request heard again) honours only the second: the
// requester invokes the latest bid of each provider, not the first.
func TestTheLatestBidOfAProviderStands(t *testing.T) {
	fn := newFakeNet()
	t.Cleanup(fn.Close)
	reqKey, reqID := testPeer(t)
	b := &recordingBackend{fakeBackend: newFakeBackend(0)}
	b.onboarded = false
	cfg := LocalConfig()
	cfg.Requester.Grace = time.Second // both bids are in before bidding closes, however busy the machine
	svc, err := NewService(fn.host(reqID), reqKey, b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })

	provKey, provID := testPeer(t)
	prov := fn.host(provID)
	invoked := make(chan float64, 4)
	// Speaks the direct protocol, so that the requester counts and asks it.
	must(t, prov.HandleRequest(ProtocolBidRequest, MaxBidRequestSize+envelopeOverhead, func(ctx context.Context, from peer.ID, data []byte) ([]byte, error) {
		req, err := OpenBidRequest(data)
		if err != nil {
			return nil, err
		}
		go func() {
			for _, price := range []float64{1, 2} { // the second is dearer: only "latest" picks it
				sb, err := SealBid(&Bid{JobID: req.JobID, Nonce: req.Nonce, Provider: provID, Requester: req.Requester,
					Price: price, Offered: req.Requirements, HoldExpires: time.Now().Add(5 * time.Second)}, provKey)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := prov.Request(context.Background(), req.Requester, ProtocolBid, sb.Envelope, MaxReplySize); err != nil {
					t.Error(err)
				}
			}
		}()
		return nil, nil
	}))
	must(t, prov.HandleRequest(ProtocolInvoke, MaxInvokeSize, func(_ context.Context, _ peer.ID, data []byte) ([]byte, error) {
		msg, err := DecodeInvokeMessage(data)
		if err != nil {
			return nil, err
		}
		if msg.Invocation != nil {
			invoked <- msg.Invocation.Bid.Bid.Price
		}
		return json.Marshal(InvokeReply{Reason: "refused by the test"})
	}))
	// Enough silent peers that the spread asks a share, so the request
	// goes by name: they speak the protocol and never bid.
	for range 9 {
		_, id := testPeer(t)
		must(t, fn.host(id).HandleRequest(ProtocolBidRequest, MaxBidRequestSize+envelopeOverhead, func(context.Context, peer.ID, []byte) ([]byte, error) { return nil, nil }))
	}
	sub := wasmJob("twice")
	for i := 0; sub.Job.ID == ""; i++ { // a job the provider is nearest, so it is asked
		if id := fmt.Sprintf("twice-%04d", i); Nearest(fn.nodeIDs(), reqID, id, 1)[0] == provID {
			sub.Job.ID = id
		}
	}
	sub.QueueTimeout = 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = svc.Submit(ctx, sub, nil) // the provider refuses: the job fails
	t.Logf("submit: %v", err)
	select {
	case price := <-invoked:
		if price != 2 {
			t.Fatalf("invoked the bid at price %v, the provider's first; want its latest, at 2", price)
		}
	default:
		t.Fatal("the provider was never invoked")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
