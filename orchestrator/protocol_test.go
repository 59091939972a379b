package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/dms-project/dms/capability"
)

func TestJobRunsOnAnotherNode(t *testing.T) {
	t.Parallel()
	nodes := newMesh(t, 4, func(i int) *fakeBackend {
		b := newFakeBackend(2000)
		b.onboarded = i != 1 // the requester offers nothing
		return b
	})
	var steps []ProgressKind
	res, err := nodes[1].svc.Submit(context.Background(), wasmJob("hello"), func(p Progress) { steps = append(steps, p.Kind) })
	if err != nil {
		t.Fatal(err)
	}
	if res.State != StateCompleted || string(res.Stdout) != "ran [hello]" {
		t.Fatalf("result %+v stdout %q", res, res.Stdout)
	}
	want := []ProgressKind{ProgressPublished, ProgressBid, ProgressClosed, ProgressAccepted}
	for _, w := range want {
		found := false
		for _, s := range steps {
			found = found || s == w
		}
		if !found {
			t.Errorf("no %s step in %v", w, steps)
		}
	}
	if len(nodes[1].backend.accepted) != 0 {
		t.Fatal("the requester ran its own job")
	}
	// Losing bidders get their holds back.
	for i, n := range nodes {
		waitFor(t, "holds released", func() bool { return n.backend.heldCount() == 0 })
		_ = i
	}
}

func TestJobThatFitsNowhereFailsClearly(t *testing.T) {
	t.Parallel()
	nodes := newMesh(t, 3, func(int) *fakeBackend { return newFakeBackend(1000) })
	nodes[0].svc.cfg.BiddingWindow = 300 * time.Millisecond
	sub := wasmJob()
	sub.Job.Requirements.CPU.MilliCores = 64000
	_, err := nodes[0].svc.Submit(context.Background(), sub, nil)
	if !errors.Is(err, ErrNoBids) || !strings.Contains(err.Error(), "cpu=64") {
		t.Fatalf("err = %v, want ErrNoBids naming cpu=64", err)
	}
}

// A re-send that cannot go out (here: the requester's own request rate
// has no room left in the window) must not fail the job; bidding runs to
// its end on what the first request brings.
func TestResendThatCannotGoOutEndsInNoBidsNotAPublishError(t *testing.T) {
	t.Parallel()
	nodes := newMesh(t, 3, func(int) *fakeBackend { return newFakeBackend(1000) })
	r := nodes[0].svc.Requester
	r.cfg.BiddingWindow, r.cfg.Widen = 400*time.Millisecond, 50*time.Millisecond
	r.pace = rate.NewLimiter(rate.Limit(0.01), 1) // one request, then none for 100 s
	sub := wasmJob()
	sub.Job.Requirements.CPU.MilliCores = 64000 // fits nowhere: every re-send is tried
	_, err := nodes[0].svc.Submit(context.Background(), sub, nil)
	if !errors.Is(err, ErrNoBids) || strings.Contains(err.Error(), "publish") {
		t.Fatalf("err = %v, want ErrNoBids, not a publish error", err)
	}
}

func TestRefusingWinnerIsReplacedByNextBid(t *testing.T) {
	t.Parallel()
	nodes := newMesh(t, 3, func(i int) *fakeBackend {
		b := newFakeBackend(2000)
		switch i {
		case 0:
			b.onboarded = false
		case 1:
			b.refuse = true
			b.score = 100 // ranked first
		}
		return b
	})
	// Bidding closes when both bids are in, however slow the machine.
	nodes[0].svc.cfg.BiddingWindow = MaxBiddingWindow
	nodes[0].svc.cfg.Grace = nodes[0].svc.cfg.BiddingWindow
	nodes[0].svc.cfg.WantBids = 2
	var refused, accepted int
	res, err := nodes[0].svc.Submit(context.Background(), wasmJob("x"), func(p Progress) {
		t.Logf("%s %s attempt %d provider %s bid %v msg %s", p.Time.Format("05.000"), p.Kind, p.Attempt, p.Provider, p.Bid != nil, p.Message)
		switch p.Kind {
		case ProgressRefused:
			refused++
			t.Logf("refused by %s: %s", p.Provider, p.Message)
		case ProgressAccepted:
			accepted++
			if p.Provider != nodes[2].host.ID() {
				t.Errorf("accepted by %s, want node 2", p.Provider)
			}
		}
	})
	if err != nil || res.State != StateCompleted {
		t.Fatalf("res=%+v err=%v", res, err)
	}
	for i, n := range nodes {
		t.Logf("node %d %s stats %+v", i, n.host.ID(), n.svc.Stats())
	}
	if refused != 1 || accepted != 1 {
		t.Fatalf("refused=%d accepted=%d, want 1 and 1", refused, accepted)
	}
	waitFor(t, "refuser's hold released", func() bool { return nodes[1].backend.heldCount() == 0 })
}

func TestInvocationFromOtherPeerIsRefused(t *testing.T) {
	t.Parallel()
	nodes := newMesh(t, 3, func(i int) *fakeBackend {
		b := newFakeBackend(2000)
		b.onboarded = i == 2
		return b
	})
	// Node 0 asks for bids but never invokes: it keeps bidding open, and we
	// grab the bid from the provider's register.
	sub := wasmJob()
	sub.Job.ID = NewJobID()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go nodes[0].svc.Submit(ctx, sub, nil)
	var bid SignedBid
	waitFor(t, "provider bid", func() bool {
		// The envelope, as a thief that saw it on its way would have it.
		b := nodes[2].svc.provider.book.open(sub.Job.ID)
		if len(b) == 1 {
			bid = *b[0].Bid
		}
		return len(b) == 1
	})
	// Node 1 did not receive the bid: its invocation must be refused.
	msg, _ := EncodeInvokeMessage(&InvokeMessage{Invocation: &Invocation{Bid: bid, Job: sub.Job}})
	data, err := nodes[1].host.Request(context.Background(), nodes[2].host.ID(), ProtocolInvoke, msg, MaxReplySize)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := DecodeInvokeReply(data)
	if err != nil || reply.Accepted || !strings.Contains(reply.Reason, "to "+nodes[1].host.ID().String()) {
		t.Fatalf("reply=%+v err=%v, want refusal naming the requester", reply, err)
	}
	if len(nodes[2].backend.accepted) != 0 {
		t.Fatal("provider accepted an invocation from a stranger")
	}
}

func TestBidWithBadSignatureIsRejected(t *testing.T) {
	t.Parallel()
	nodes := newMesh(t, 2, func(int) *fakeBackend { return newFakeBackend(1000) })
	b := &Bid{JobID: NewJobID(), Nonce: "abcdefgh12", Provider: nodes[1].host.ID(), Requester: nodes[0].host.ID(), HoldExpires: time.Now().Add(time.Minute)}
	sb, err := SealBid(b, nodes[0].key) // sealed with the wrong key
	if err != nil {
		t.Fatal(err)
	}
	_, err = nodes[1].host.Request(context.Background(), nodes[0].host.ID(), ProtocolBid, sb.Envelope, MaxReplySize)
	if err == nil || !strings.Contains(err.Error(), "signed by") {
		t.Fatalf("err = %v, want a signature rejection", err)
	}
}

func TestOfferTooSmallSendsNoBid(t *testing.T) {
	t.Parallel()
	b := newFakeBackend(100)
	req := &BidRequest{Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}}}
	if req.Requirements.Fits(b.Offer().Available) {
		t.Fatal("setup: requirement should not fit")
	}
}

// Content shared with one peer reaches that peer whole, in chunks, and
// nobody else.
func TestFetchSharesWithOnePeerOnly(t *testing.T) {
	t.Parallel()
	nodes := newMesh(t, 3, func(int) *fakeBackend { return newFakeBackend(1000) })
	a, b, c := nodes[0].svc, nodes[1], nodes[2]
	data := make([]byte, 3*fetchChunk+17) // several chunks and a short one
	for i := range data {
		data[i] = byte(i * 7)
	}
	blob := a.Share(data, b.host.ID(), time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := b.svc.Fetch(ctx, nodes[0].host.ID(), blob, MaxModuleSize)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch by the peer it was shared with: %d bytes, %v", len(got), err)
	}
	if _, err := c.svc.Fetch(ctx, nodes[0].host.ID(), blob, MaxModuleSize); !errors.Is(err, ErrNotShared) {
		t.Fatalf("fetch by a stranger: %v, want ErrNotShared", err)
	}
	if _, err := b.svc.Fetch(ctx, nodes[0].host.ID(), Blob{SHA256: blob.SHA256, Size: blob.Size - 1}, MaxModuleSize); err == nil {
		t.Fatal("a fetch that names the wrong size succeeded")
	}
	if _, err := b.svc.Fetch(ctx, nodes[0].host.ID(), blob, blob.Size-1); err == nil {
		t.Fatal("a fetch over its limit succeeded")
	}
	a.Unshare(blob, b.host.ID())
	if _, err := b.svc.Fetch(ctx, nodes[0].host.ID(), blob, MaxModuleSize); !errors.Is(err, ErrNotShared) {
		t.Fatalf("fetch after unshare: %v, want ErrNotShared", err)
	}
	if a.SharedBytes() != 0 {
		t.Fatalf("%d bytes still shared after the last unshare", a.SharedBytes())
	}
}
