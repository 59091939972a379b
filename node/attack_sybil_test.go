package node_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/testnet"
)

// refuser is a provider that ignores the spread: it bids at once on every
// request it hears, cheaper than anyone, and then refuses the invocation.
// Alone among the bids, it fails the job's attempt.
type refuser struct {
	host           *p2p.Host
	key            crypto.PrivKey
	bids, refusals atomic.Int64
	ctx            context.Context
	wg             sync.WaitGroup
}

func newRefuser(t *testing.T, ln *testnet.Local, boot ...peer.AddrInfo) *refuser {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	start, done := context.WithTimeout(ctx, 20*time.Second)
	defer done()
	h, err := p2p.New(start, p2p.WithConfig(p2p.LocalConfig()), p2p.WithPrivKey(key), p2p.WithNetwork(ln.Network), p2p.WithPSK(ln.PSK),
		p2p.WithBootstrap(boot...), p2p.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &refuser{host: h, key: key, ctx: ctx}
	t.Cleanup(func() { cancel(); r.wg.Wait(); h.Close() })
	if err := h.HandleRequest(orchestrator.ProtocolInvoke, orchestrator.MaxInvokeSize, func(context.Context, peer.ID, []byte) ([]byte, error) {
		r.refusals.Add(1)
		return orchestrator.Encode(&orchestrator.InvokeReply{Reason: "refused"})
	}); err != nil {
		t.Fatal(err)
	}
	topic, err := h.JoinTopic(orchestrator.TopicBidRequests, func(_ context.Context, _ peer.ID, data []byte) (peer.ID, any, error) {
		req, err := orchestrator.OpenBidRequest(data)
		if err != nil {
			return "", nil, err
		}
		return req.Requester, req, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.wg.Go(func() {
		for m := range topic.Messages() {
			req := m.Value.(*orchestrator.BidRequest)
			r.wg.Go(func() { r.bid(req) })
		}
	})
	t.Cleanup(func() { topic.Close() })
	return r
}

func (r *refuser) bid(req *orchestrator.BidRequest) {
	b := &orchestrator.Bid{
		JobID: req.JobID, Nonce: req.Nonce, Provider: r.host.ID(), Requester: req.Requester,
		Offered: req.Requirements, HoldExpires: time.Now().Add(time.Minute),
	}
	sb, err := orchestrator.SealBid(b, r.key)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	if _, err := r.host.Request(ctx, req.Requester, orchestrator.ProtocolBid, sb.Envelope, orchestrator.MaxReplySize); err == nil {
		r.bids.Add(1)
	}
}

// submitNoting submits one job, logs its requests and refusals, and
// returns the spread of its first request.
func submitNoting(ctx context.Context, t *testing.T, n *node.Node) (spread string, rec node.JobRecord, err error) {
	var mu sync.Mutex
	rec, err = n.SubmitJob(ctx, tinyJob(), func(p orchestrator.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Kind == orchestrator.ProgressPublished && spread == "" {
			spread = strings.TrimPrefix(p.Message, "spread ")
		}
		if p.Kind == orchestrator.ProgressPublished || p.Kind == orchestrator.ProgressRefused {
			t.Logf("job %s attempt %d: %s %s", p.JobID, p.Attempt, p.Kind, p.Message)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	return spread, rec, err
}

// TestSybilsThatLeaveDoNotShrinkTheSpread: fifty identities join the
// requesting node, send one bid request each, and leave. A node that
// counted every peer it remembers would take the network for ten times
// its size and ask a tenth of the providers to bid; beside a provider that
// bids on everything at once and then refuses, that one bid would often be
// the only one. The honest requester's 20 jobs all complete.
//
// Not parallel: fifty hosts in one process load the machine.
func TestSybilsThatLeaveDoNotShrinkTheSpread(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{Nodes: 5, Requesters: []int{1}, Wasm: sharedWasm})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	honest := ln.Nodes[1]
	bad := newRefuser(t, ln, honest.AddrInfo(), ln.Nodes[0].AddrInfo())

	spread, rec, err := submitNoting(ctx, t, honest)
	t.Logf("before the sybils: spread %s, job %s %v", spread, rec.State, err)

	// Fifty identities: one publishes for all (gossip carries no author),
	// each has a host of its own that connects to the requester.
	publisher := newAttacker(t, ln, true, honest.AddrInfo(), ln.Nodes[0].AddrInfo())
	sybils := make([]*attacker, 50)
	var wg sync.WaitGroup
	for i := range sybils {
		if i == 0 {
			sybils[i] = publisher
			continue
		}
		wg.Go(func() { sybils[i] = newAttacker(t, ln, false, honest.AddrInfo()) })
	}
	wg.Wait()
	for _, s := range sybils {
		if err := publisher.askFor(ctx, s, 10, ""); err != nil {
			t.Fatal(err)
		}
	}
	spread, rec, err = submitNoting(ctx, t, honest)
	t.Logf("with the sybils connected: spread %s, job %s %v", spread, rec.State, err)
	for _, s := range sybils {
		s.host.Close()
	}

	const jobs = 20
	completed := 0
	var spreads []string
	start := time.Now()
	for range jobs {
		spread, rec, err := submitNoting(ctx, t, honest)
		spreads = append(spreads, spread)
		if err == nil && rec.State == node.JobCompleted {
			completed++
		} else {
			t.Logf("honest job: %s %v", rec.State, err)
		}
	}
	t.Logf("after the sybils left: spreads %v", spreads)
	t.Logf("refusing provider: %d bids, %d invocations refused; 50 sybils sent one request each; honest requester: %d of %d jobs completed in %v",
		bad.bids.Load(), bad.refusals.Load(), completed, jobs, time.Since(start).Round(time.Millisecond))
	if bad.bids.Load() == 0 {
		t.Fatal("the refusing provider never bid: the test shows nothing")
	}
	if completed != jobs {
		t.Fatalf("the honest requester completed %d of %d jobs after fifty sybils came and went", completed, jobs)
	}
}
