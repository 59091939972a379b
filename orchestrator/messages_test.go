package orchestrator

import (
	"bytes"
	"errors"
	"fmt"
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
		"module hash":    func(r *BidRequest) { r.ModuleHash = "../../etc/passwd" },
		"inputs hash":    func(r *BidRequest) { r.InputsHash = strings.Repeat("A", 64) },
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

// sealReq seals r with k, failing the test if it cannot.
func sealReq(t testing.TB, k crypto.PrivKey, r *BidRequest) []byte {
	t.Helper()
	data, err := SealBidRequest(r, k)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestValidator(t *testing.T) {
	k, id := testPeer(t)
	otherKey, _ := testPeer(t)
	now := time.Now()
	v := NewValidator(func() time.Time { return now }, DefaultRequestLimits())
	req := validRequest(id, now)
	data := sealReq(t, k, req)
	if _, err := v.Validate(id, data); err != nil {
		t.Fatalf("valid request rejected: %v", err)
	}
	if _, err := v.Validate(id, data); err == nil || !strings.Contains(err.Error(), "replayed") {
		t.Fatalf("replay: err = %v", err)
	}
	req.Nonce = "fresh-nonce-1"
	if _, err := v.Validate(id, sealReq(t, otherKey, req)); err == nil || !strings.Contains(err.Error(), "signed by") {
		t.Fatalf("sealed by another key than the requester's: err = %v", err)
	}
	req.Nonce, req.Deadline = "fresh-nonce-2", now.Add(-time.Second)
	if _, err := v.Validate(id, sealReq(t, k, req)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired: err = %v", err)
	}
	req.Nonce, req.Deadline = "fresh-nonce-3", now.Add(MaxBiddingWindow+time.Second)
	if _, err := v.Validate(id, sealReq(t, k, req)); err == nil || !strings.Contains(err.Error(), "bidding window") {
		t.Fatalf("overlong bidding window: err = %v", err)
	}
	// The attack of issue 11: sent 29 s in the future with a 60 s window.
	req.Nonce, req.SentAt, req.Deadline = "fresh-nonce-4", now.Add(29*time.Second), now.Add(89*time.Second)
	if _, err := v.Validate(id, sealReq(t, k, req)); err == nil || !strings.Contains(err.Error(), "in the future") {
		t.Fatalf("from the future: err = %v", err)
	}
	// Within the skew allowance and the window, but a deadline further
	// out than a request sent now could have.
	req.Nonce, req.SentAt, req.Deadline = "fresh-nonce-5", now.Add(ClockSkew), now.Add(ClockSkew+MaxBiddingWindow)
	if _, err := v.Validate(id, sealReq(t, k, req)); err != nil {
		t.Fatalf("request at the edge of the skew allowance: %v", err)
	}
	// Tampering with the sealed bytes breaks the seal.
	req.Nonce, req.SentAt, req.Deadline = "fresh-nonce-6", now, now.Add(time.Second)
	data = sealReq(t, k, req)
	i := bytes.Index(data, []byte(`"fresh-nonce-6"`))
	data[i+1] = 'F'
	if _, err := v.Validate(id, data); err == nil || !strings.Contains(err.Error(), "envelope") {
		t.Fatalf("tampered request: err = %v", err)
	}
}

func TestValidatorLimitsEachRequestersRate(t *testing.T) {
	k, id := testPeer(t)
	k2, id2 := testPeer(t)
	now := time.Now()
	v := NewValidator(func() time.Time { return now }, RequestLimits{Rate: 2, Burst: 5})
	send := func(k crypto.PrivKey, id peer.ID, i int) error {
		r := validRequest(id, now)
		r.Nonce = fmt.Sprintf("nonce-%08d", i)
		_, err := v.Validate(id, sealReq(t, k, r))
		return err
	}
	for i := range 5 {
		if err := send(k, id, i); err != nil {
			t.Fatalf("request %d of the burst: %v", i, err)
		}
	}
	if err := send(k, id, 5); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("request over the burst: err = %v, want ErrRateLimited", err)
	}
	if err := send(k2, id2, 6); err != nil {
		t.Fatalf("another requester is limited by the first one's flood: %v", err)
	}
	now = now.Add(time.Second) // two more tokens
	for i := 7; i < 9; i++ {
		if err := send(k, id, i); err != nil {
			t.Fatalf("request %d after refill: %v", i, err)
		}
	}
	if err := send(k, id, 9); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("request over the rate: err = %v, want ErrRateLimited", err)
	}
}

func TestValidatorForgetsExpiredNonces(t *testing.T) {
	k, id := testPeer(t)
	now := time.Now()
	v := NewValidator(func() time.Time { return now }, RequestLimits{Rate: 1000, Burst: 1000})
	for i := range 100 {
		r := validRequest(id, now)
		r.Nonce = strings.Repeat("n", 8) + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		if _, err := v.Validate(id, sealReq(t, k, r)); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Hour)
	r := validRequest(id, now)
	if _, err := v.Validate(id, sealReq(t, k, r)); err != nil {
		t.Fatal(err)
	}
	if len(v.seen) != 1 {
		t.Fatalf("validator remembers %d nonces after they expired, want 1", len(v.seen))
	}
}

func TestBidSeal(t *testing.T) {
	k, id := testPeer(t)
	otherKey, _ := testPeer(t)
	_, req := testPeer(t)
	b := &Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: req, Price: 1.5, HoldExpires: time.Now()}
	sb, err := SealBid(b, k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenBid(sb.Envelope)
	if err != nil || got.Price != 1.5 || !bytes.Equal(got.Envelope, sb.Envelope) {
		t.Fatalf("own seal: %+v, %v", got, err)
	}
	tampered := bytes.Replace(sb.Envelope, []byte(`"price":1.5`), []byte(`"price":0.1`), 1)
	if bytes.Equal(tampered, sb.Envelope) {
		t.Fatal("setup: price not found in the envelope")
	}
	if _, err := OpenBid(tampered); err == nil {
		t.Fatal("tampered price verified")
	}
	forged, err := SealBid(b, otherKey) // names id, sealed by someone else
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBid(forged.Envelope); err == nil || !strings.Contains(err.Error(), "signed by") {
		t.Fatalf("bid sealed by another than its provider: %v", err)
	}
	// A bid request envelope is no bid, even from the right key.
	r := validRequest(id, time.Now())
	if _, err := OpenBid(sealReq(t, k, r)); err == nil {
		t.Fatal("a sealed bid request opened as a bid")
	}
}

// A newer provider adds a field to its bids: an older requester, which
// does not know the field, still verifies the bid and can invoke it,
// because the signature covers the bytes sent, not a re-encoding.
func TestBidWithAFieldFromTheFutureVerifies(t *testing.T) {
	k, id := testPeer(t)
	_, req := testPeer(t)
	payload := fmt.Sprintf(`{"job_id":%q,"nonce":"abcdefgh","provider":%q,"requester":%q,"price":2,"offered":{},"score":1,"hold_expires":%q,"region":"eu-west","sla":{"uptime":0.999}}`,
		NewJobID(), id, req, time.Now().Add(time.Minute).Format(time.RFC3339Nano))
	env, err := seal(&jsonRecord{domain: bidDomain, codec: bidCodec, raw: []byte(payload)}, k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenBid(env)
	if err != nil {
		t.Fatalf("bid with unknown fields: %v", err)
	}
	if got.Price != 2 || got.Provider != id {
		t.Fatalf("decoded %+v", got.Bid)
	}
	// It survives the invocation's round trip byte for byte.
	inv, err := EncodeInvokeMessage(&InvokeMessage{Invocation: &Invocation{Bid: *got, Job: JobSpec{ID: got.JobID, Executor: ExecutorWasm, Duration: seconds.Duration(time.Minute), Module: []byte("\x00asm")}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeInvokeMessage(inv)
	if err != nil || !bytes.Equal(m.Invocation.Bid.Envelope, env) {
		t.Fatalf("invocation round trip: %v", err)
	}
	// Likewise a bid request with a field this version does not know.
	rk, rid := testPeer(t)
	r := validRequest(rid, time.Now())
	body, _ := Encode(r)
	body = append(body[:len(body)-1], []byte(`,"priority":"high"}`)...)
	env, err = seal(&jsonRecord{domain: bidRequestDomain, codec: bidRequestCodec, raw: body}, rk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewValidator(nil, DefaultRequestLimits()).Validate(rid, env); err != nil {
		t.Fatalf("bid request with unknown fields: %v", err)
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
	sb, err := SealBid(&Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: id, HoldExpires: time.Now()}, k)
	if err != nil {
		t.Fatal(err)
	}
	b := *sb
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
	if !bytes.Equal(m.Invocation.Job.Module, module) || m.Invocation.Job.Args[0] != "a" || !bytes.Equal(m.Invocation.Bid.Envelope, b.Envelope) {
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
