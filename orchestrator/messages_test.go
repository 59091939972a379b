package orchestrator

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
)

func testPeer(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func validRequest(requester peer.ID, now time.Time) *BidRequest {
	return &BidRequest{
		JobID: NewJobID(), Requester: requester,
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: 64 * capability.MiB},
		Duration:     seconds.Duration(time.Minute), Executor: ExecutorWasm, Deadline: now.Add(2 * time.Second),
		Nonce: "0123456789ab", WantBids: 3, SentAt: now,
	}
}

func TestBidRequestRoundTrip(t *testing.T) {
	_, id := testPeer(t)
	req := validRequest(id, time.Now())
	data, err := Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBidRequest(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.JobID != req.JobID || got.Requester != id || !got.Requirements.Equal(req.Requirements) || !got.Deadline.Equal(req.Deadline) {
		t.Fatalf("round trip changed the request: %+v", got)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	_, id := testPeer(t)
	big := strings.Repeat("x", MaxBidRequestSize+1)
	cases := map[string]func(*BidRequest){
		"bad job id":     func(r *BidRequest) { r.JobID = "UPPER/CASE" },
		"no requester":   func(r *BidRequest) { r.Requester = "" },
		"zero needs":     func(r *BidRequest) { r.Requirements = capability.Capability{} },
		"neg duration":   func(r *BidRequest) { r.Duration = seconds.Duration(-time.Second) },
		"executor":       func(r *BidRequest) { r.Executor = "docker-privileged" },
		"short nonce":    func(r *BidRequest) { r.Nonce = "x" },
		"module too big": func(r *BidRequest) { r.ModuleSize = MaxModuleSize + 1 },
		"oversized":      func(r *BidRequest) { r.Nonce = big },
	}
	for name, mutate := range cases {
		r := validRequest(id, time.Now())
		mutate(r)
		data, _ := Encode(r)
		if _, err := DecodeBidRequest(data); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	for _, junk := range []string{"", "{", "null", `{"job_id":1}`, `{} {}`} {
		if _, err := DecodeBidRequest([]byte(junk)); err == nil {
			t.Errorf("decoded junk %q", junk)
		}
	}
}

func TestValidator(t *testing.T) {
	_, id := testPeer(t)
	_, other := testPeer(t)
	now := time.Now()
	v := NewValidator(func() time.Time { return now })
	req := validRequest(id, now)
	data, _ := Encode(req)
	if _, err := v.Validate(id, data); err != nil {
		t.Fatalf("valid request rejected: %v", err)
	}
	if _, err := v.Validate(id, data); err == nil || !strings.Contains(err.Error(), "replayed") {
		t.Fatalf("replay: err = %v", err)
	}
	req.Nonce = "fresh-nonce-1"
	data, _ = Encode(req)
	if _, err := v.Validate(other, data); err == nil || !strings.Contains(err.Error(), "signed by") {
		t.Fatalf("wrong signer: err = %v", err)
	}
	req.Nonce, req.Deadline = "fresh-nonce-2", now.Add(-time.Second)
	data, _ = Encode(req)
	if _, err := v.Validate(id, data); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired: err = %v", err)
	}
	req.Nonce, req.Deadline = "fresh-nonce-3", now.Add(2*MaxBiddingWindow)
	data, _ = Encode(req)
	if _, err := v.Validate(id, data); err == nil {
		t.Fatal("overlong bidding window accepted")
	}
}

func TestValidatorForgetsExpiredNonces(t *testing.T) {
	_, id := testPeer(t)
	now := time.Now()
	v := NewValidator(func() time.Time { return now })
	for i := range 100 {
		r := validRequest(id, now)
		r.Nonce = strings.Repeat("n", 8) + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		data, _ := Encode(r)
		if _, err := v.Validate(id, data); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Hour)
	r := validRequest(id, now)
	data, _ := Encode(r)
	if _, err := v.Validate(id, data); err != nil {
		t.Fatal(err)
	}
	if len(v.seen) != 1 {
		t.Fatalf("validator remembers %d nonces after they expired, want 1", len(v.seen))
	}
}

func TestBidSignature(t *testing.T) {
	k, id := testPeer(t)
	_, req := testPeer(t)
	b := &Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: req, Price: 1.5, HoldExpires: time.Now()}
	if err := b.Sign(k); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(); err != nil {
		t.Fatalf("own signature: %v", err)
	}
	b.Price = 0.1
	if err := b.Verify(); err == nil {
		t.Fatal("tampered price verified")
	}
}

func TestComparatorDefaultRanking(t *testing.T) {
	_, a := testPeer(t)
	_, b := testPeer(t)
	_, c := testPeer(t)
	req := validRequest(a, time.Now())
	offer := capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB}
	bids := []*Bid{
		{Provider: a, Price: 2, Score: 9, Offered: offer},
		{Provider: b, Price: 1, Score: 1, Offered: offer},
		{Provider: c, Price: 1, Score: 5, Offered: offer},
	}
	Rank(req, bids, DefaultPreferences().Comparator())
	if bids[0].Provider != c || bids[1].Provider != b || bids[2].Provider != a {
		t.Fatalf("ranking by price then score: got %s %s %s", bids[0].Provider, bids[1].Provider, bids[2].Provider)
	}
	p := Preferences{Ranking: []string{"score"}}
	Rank(req, bids, p.Comparator())
	if bids[0].Provider != a {
		t.Fatal("ranking by score should put the highest score first")
	}
}

func TestPreferencesAccepts(t *testing.T) {
	_, id := testPeer(t)
	req := validRequest(id, time.Now())
	if ok, _ := DefaultPreferences().Accepts(req); !ok {
		t.Fatal("default preferences refuse a wasm job")
	}
	req.Executor = ExecutorNative
	if ok, why := DefaultPreferences().Accepts(req); ok || !strings.Contains(why, "native") {
		t.Fatalf("native accepted by default (%q)", why)
	}
	req.Executor = ExecutorWasm
	if ok, _ := (Preferences{DeniedRequesters: []peer.ID{id}}).Accepts(req); ok {
		t.Fatal("denied requester accepted")
	}
	if ok, _ := (Preferences{MaxDuration: seconds.Duration(time.Second)}).Accepts(req); ok {
		t.Fatal("overlong job accepted")
	}
	price := 0.5
	req.MaxPrice = &price
	if ok, _ := (Preferences{MinPrice: 1}).Accepts(req); ok {
		t.Fatal("cheap job accepted")
	}
	if err := (Preferences{Ranking: []string{"colour"}}).Validate(); err == nil {
		t.Fatal("unknown ranking accepted")
	}
}

func TestInvokeMessageRoundTrip(t *testing.T) {
	k, id := testPeer(t)
	module := append([]byte("\x00asm\x01\x00\x00\x00"), make([]byte, MaxInlineModule-8)...)
	b := Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: id, HoldExpires: time.Now()}
	if err := b.Sign(k); err != nil {
		t.Fatal(err)
	}
	job := JobSpec{ID: b.JobID, Executor: ExecutorWasm, Duration: seconds.Duration(time.Minute), Module: module, Args: []string{"a"}}
	data, err := EncodeInvokeMessage(&InvokeMessage{Invocation: &Invocation{Bid: b, Job: job}})
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > len(module)+4096 {
		t.Fatalf("encoded invocation of %d bytes for a %d-byte module: the module is not raw", len(data), len(module))
	}
	m, err := DecodeInvokeMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Invocation.Job.Module, module) || m.Invocation.Job.Args[0] != "a" || m.Invocation.Bid.Verify() != nil {
		t.Fatal("invocation changed in the round trip")
	}
	// A module over the inline limit is refused: it travels by fetch.
	big := job
	big.Module = append(module, 0)
	if data, err := EncodeInvokeMessage(&InvokeMessage{Invocation: &Invocation{Bid: b, Job: big}}); err == nil {
		if _, err := DecodeInvokeMessage(data); err == nil {
			t.Error("decoded an invocation with a module over the inline limit")
		}
	}
	for _, bad := range [][]byte{nil, {0x05, '{', '}'}, append([]byte{0x02}, `{}`...), append([]byte{0x02}, "{}\x00asm"...)} {
		if _, err := DecodeInvokeMessage(bad); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}
