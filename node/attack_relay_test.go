package node_test

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// TestARelayThatFloodsIsCutOffBeforeVerifying: one identity signs bid
// requests and another peer publishes them as fast as it can, while an
// honest requester submits 20 jobs in a row. The requests ask for more
// than any offer, so they cost the victims only the work of looking at
// them: what this test shows is that the validator drops the flood before
// verifying it (the requester's and the sender's rates are checked
// first), so every honest job completes, no node verifies more of the
// signer's requests than its rate allows, and each blames the publisher
// (it relays one requester far over its rate), no honest node.
//
// The network runs at a tenth of the default rates, so that the flood is
// far over them on any machine, the race detector's included: what
// matters is the flood's size against the limits.
//
// Not parallel: the flood takes what CPU the machine has, and tests beside
// it would measure that rather than the protocol.
func TestARelayThatFloodsIsCutOffBeforeVerifying(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	limits := orchestrator.RequestLimits{Rate: 10, Burst: 20}
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{
		Nodes: 4, Requesters: []int{1}, Wasm: sharedWasm,
		Configure: func(i int, c *node.Config) {
			c.Orchestrator.Requests = limits
			if i == 1 {
				// Bidding closes 25 ms after the first acceptable bid; the
				// long window only matters on a machine too busy to bid
				// within the usual 2 s.
				c.Orchestrator.Requester.BiddingWindow = 10 * time.Second
			}
		},
		Offer: capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: 2 * capability.GiB, Disk: capability.GiB},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	honest := ln.Nodes[1]
	// The first job compiles the module (seconds on a busy machine): done
	// before the attack, so the latencies below are the attack's.
	if rec, err := honest.SubmitJob(ctx, helloJob("warm-up"), nil); err != nil || rec.State != node.JobCompleted {
		t.Fatalf("warm-up job: %s %v", rec.State, err)
	}

	// The publisher is connected to every node, so each hears the whole
	// flood from it first hand.
	var all []peer.AddrInfo
	for _, n := range ln.Nodes {
		all = append(all, n.AddrInfo())
	}
	publisher := newFlooder(t, ln, all...)
	signer := newAttacker(t, ln, false, ln.Nodes[0].AddrInfo())

	verified := func() []int64 {
		v := make([]int64, len(ln.Nodes))
		for i, n := range ln.Nodes {
			v[i] = n.Diagnostics().Stats().SignaturesVerified
		}
		return v
	}
	before := verified()
	cpuBefore := processCPU(t)
	start := time.Now()

	attack, stop := context.WithCancel(ctx)
	defer stop()
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for attack.Err() == nil {
			// More than any offer: nobody bids, nobody holds.
			if publisher.askFor(attack, signer, 1<<40, "") == nil {
				sent.Add(1)
			}
		}
	})
	// What a node may verify of the signer's requests by elapsed: its
	// burst and its rate, beside the honest requests (a few per job) and
	// some slack for requests in flight when the clock was read.
	const jobs = 20
	allowedBy := func(elapsed time.Duration) int64 {
		return int64(limits.Burst) + int64(limits.Rate*elapsed.Seconds()) + 4*jobs + 100
	}

	completed := 0
	var latencies []time.Duration
	for i := range jobs {
		jctx, jcancel := context.WithTimeout(ctx, 2*time.Minute)
		t0 := time.Now()
		rec, err := honest.SubmitJob(jctx, tinyJob(), nil)
		jcancel()
		latencies = append(latencies, time.Since(t0).Round(time.Millisecond))
		if err == nil && rec.State == node.JobCompleted {
			completed++
		} else {
			t.Logf("honest job %d: %s %v", i, rec.State, err)
		}
	}
	// On a slow machine twenty jobs may end before the flood is far over
	// what a node may verify: it goes on until it is, or shows nothing.
	poll.Until(t, 2*time.Minute, "the flood to be far over what a node may verify", func() bool {
		return sent.Load() > 2*allowedBy(time.Since(start))
	})
	stop()
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU(t) - cpuBefore
	after := verified()

	t.Logf("honest jobs completed: %d of %d; latencies %v", completed, jobs, latencies)
	t.Logf("the publisher sent %d requests in %v (%.0f a second); the process used %.2f cores meanwhile (attacker and victims together)",
		sent.Load(), elapsed.Round(time.Millisecond), float64(sent.Load())/elapsed.Seconds(), cpu.Seconds()/elapsed.Seconds())
	allowed := allowedBy(elapsed)
	for i, n := range ln.Nodes {
		t.Logf("node %d verified %d signatures during the attack (its limits allow %d), dropped %v, holds %.0f against the publisher",
			i, after[i]-before[i], allowed, n.Diagnostics().Stats().RequestsDropped, n.Diagnostics().Penalty(publisher.host.ID()))
	}
	if completed != jobs {
		t.Errorf("the honest requester completed %d of %d jobs under the flood", completed, jobs)
	}
	for i := range ln.Nodes {
		if d := after[i] - before[i]; d > allowed {
			t.Errorf("node %d verified %d signatures during the attack, more than the %d its limits allow: the flood was verified before it was dropped", i, d, allowed)
		}
	}
	for i, n := range ln.Nodes {
		if got := metricValue(t, n.Metrics(), "dms_bid_requests_dropped_total", map[string]string{"reason": "requester_rate"}); got < 1 {
			t.Errorf("node %d counts %v requests dropped for their requester's rate", i, got)
		}
	}
	// The publisher sent its peers far more of one requester's requests
	// than an honest relay forwards: each blamed it. No node blamed
	// another: they forwarded only what they accepted.
	for _, p := range publisher.topic.ListPeers() {
		n := byPeer(ln.Nodes, p)
		if n == nil {
			continue
		}
		if pen := n.Diagnostics().Penalty(publisher.host.ID()); pen >= 0 {
			t.Errorf("node %s heard the flood from the publisher and did not blame it (penalty %v)", p, pen)
		}
	}
	for i, n := range ln.Nodes {
		for j, m := range ln.Nodes {
			if pen := n.Diagnostics().Penalty(m.ID()); i != j && pen != 0 {
				t.Errorf("node %d blamed honest node %d (penalty %v)", i, j, pen)
			}
		}
	}
}

func byPeer(nodes []*node.Node, p peer.ID) *node.Node {
	for _, n := range nodes {
		if n.ID() == p {
			return n
		}
	}
	return nil
}

// newFlooder is an attacker on the topic whose validator passes its own
// messages unchecked (it signed them itself), so that its time goes to
// signing and publishing the flood.
func newFlooder(t *testing.T, ln *testnet.Local, boot ...peer.AddrInfo) *attacker {
	t.Helper()
	a := newAttacker(t, ln, false, boot...)
	self := a.host.ID()
	var err error
	a.topic, err = a.host.JoinTopic(orchestrator.TopicBidRequests, func(_ context.Context, via peer.ID, data []byte) (peer.ID, any, error) {
		if via == self {
			return self, nil, nil
		}
		r, err := orchestrator.OpenBidRequest(data)
		if err != nil {
			return "", nil, err
		}
		return r.Requester, r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { // drain
		for range a.topic.Messages() {
		}
	}()
	return a
}

// processCPU is the user and system time this process has used.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
