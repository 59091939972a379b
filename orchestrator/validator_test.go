package orchestrator

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	recordpb "github.com/libp2p/go-libp2p/core/record/pb"
	"google.golang.org/protobuf/proto"
)

// sealN seals n fresh requests of id's, each with its own nonce.
func sealN(t testing.TB, k crypto.PrivKey, id peer.ID, now time.Time, n int) [][]byte {
	t.Helper()
	msgs := make([][]byte, n)
	for i := range msgs {
		r := validRequest(id, now)
		r.Nonce = fmt.Sprintf("nonce-%08d", i)
		msgs[i] = sealReq(t, k, r)
	}
	return msgs
}

// wantDrop fails the test unless err is a drop for want, blaming the
// sender or not.
func wantDrop(t *testing.T, what string, err error, want DropReason, blamed bool) {
	t.Helper()
	if r, ok := dropReasonOf(err); !ok || r != want {
		t.Fatalf("%s: err = %v, want a drop for %s", what, err, want)
	}
	if want == DropPeerRate || want == DropRelayRate || want == DropRequesterRate {
		if !errors.Is(err, ErrRateLimited) {
			t.Fatalf("%s: err = %v, want ErrRateLimited", what, err)
		}
	}
	if errors.Is(err, ErrFlooding) != blamed {
		t.Fatalf("%s: err = %v, blames the sender: %v, want %v", what, err, !blamed, blamed)
	}
}

// TestValidatorDropsOverTheRateUnverified: once a requester is over its
// rate, its requests are dropped before their signature is checked,
// through whichever peer they come.
func TestValidatorDropsOverTheRateUnverified(t *testing.T) {
	k, id := testPeer(t)
	_, relay := testPeer(t)
	now := time.Now()
	v := NewValidator(func() time.Time { return now }, RequestLimits{Rate: 2, Burst: 5})
	msgs := sealN(t, k, id, now, 20)
	for i := range 5 {
		if _, err := v.Validate(relay, msgs[i]); err != nil {
			t.Fatalf("request %d of the burst: %v", i, err)
		}
	}
	if got := v.Verified(); got != 5 {
		t.Fatalf("verified %d signatures for 5 requests", got)
	}
	for i := 5; i < 15; i++ {
		_, err := v.Validate(relay, msgs[i])
		wantDrop(t, fmt.Sprintf("request %d, over the rate via a relay", i), err, DropRequesterRate, false)
	}
	if got := v.Verified(); got != 5 {
		t.Fatalf("verified %d signatures, want still 5: requests over the rate were verified before being dropped", got)
	}
	// From the requester itself, the same drop blames it.
	_, err := v.Validate(id, msgs[15])
	wantDrop(t, "over the rate from the requester itself", err, DropRequesterRate, true)
	if d := v.Dropped(); d[DropRequesterRate] != 11 || d[DropPeerRate]+d[DropRelayRate]+d[DropStale]+d[DropInvalid] != 0 {
		t.Fatalf("dropped %v, want 11 for the requester's rate", d)
	}
	now = now.Add(time.Second) // two more tokens
	for i := 16; i < 18; i++ {
		if _, err := v.Validate(relay, msgs[i]); err != nil {
			t.Fatalf("request %d after a second: %v", i, err)
		}
	}
}

// TestValidatorBoundsEachPeer: one peer sending requests of many
// requesters, each within its own rate, is cut off at the peer's rate,
// unverified and unblamed (honest relays carry many requesters), while
// another peer is not.
func TestValidatorBoundsEachPeer(t *testing.T) {
	_, flooder := testPeer(t)
	_, other := testPeer(t)
	now := time.Now()
	v := NewValidator(func() time.Time { return now }, RequestLimits{Rate: 100, Burst: 200})
	v.peers = newBuckets(RequestLimits{Rate: 10, Burst: 8})
	var msgs [][]byte
	for range 12 {
		k, id := testPeer(t)
		msgs = append(msgs, sealN(t, k, id, now, 1)...)
	}
	for i := range 8 {
		if _, err := v.Validate(flooder, msgs[i]); err != nil {
			t.Fatalf("request %d of the peer's burst: %v", i, err)
		}
	}
	_, err := v.Validate(flooder, msgs[8])
	wantDrop(t, "over the peer's burst", err, DropPeerRate, false)
	if got := v.Verified(); got != 8 {
		t.Fatalf("verified %d signatures, want 8: a request over its peer's rate was verified", got)
	}
	if _, err := v.Validate(other, msgs[9]); err != nil {
		t.Fatalf("another peer is limited by the first one's flood: %v", err)
	}
	now = now.Add(100 * time.Millisecond) // one more token
	if _, err := v.Validate(flooder, msgs[10]); err != nil {
		t.Fatalf("a request at the peer's rate: %v", err)
	}
	_, err = v.Validate(flooder, msgs[11])
	wantDrop(t, "over the peer's rate", err, DropPeerRate, false)
}

// TestValidatorBlamesARelayFarOverARequestersRate: a peer that sends us
// one requester's requests beyond what that requester may publish is not
// blamed at first (an honest relay may have accepted what we refuse), but
// past relayFactor bursts it is: no honest relay forwards that many.
func TestValidatorBlamesARelayFarOverARequestersRate(t *testing.T) {
	k, id := testPeer(t)
	_, publisher := testPeer(t)
	_, honest := testPeer(t)
	now := time.Now()
	l := RequestLimits{Rate: 2, Burst: 5}
	v := NewValidator(func() time.Time { return now }, l)
	msgs := sealN(t, k, id, now, relayFactor*l.Burst+2)
	for i, m := range msgs[:relayFactor*l.Burst] {
		_, err := v.Validate(publisher, m)
		if i < l.Burst {
			if err != nil {
				t.Fatalf("request %d of the burst: %v", i, err)
			}
			continue
		}
		wantDrop(t, fmt.Sprintf("request %d, over the requester's rate", i), err, DropRequesterRate, false)
	}
	_, err := v.Validate(publisher, msgs[relayFactor*l.Burst])
	wantDrop(t, "far over the requester's rate from one peer", err, DropRelayRate, true)
	// Another peer relaying the same requester is not blamed for it.
	_, err = v.Validate(honest, msgs[relayFactor*l.Burst+1])
	wantDrop(t, "over the requester's rate from another peer", err, DropRequesterRate, false)
	if got := v.Verified(); got != int64(l.Burst) {
		t.Fatalf("verified %d signatures, want the %d of the burst", got, l.Burst)
	}
}

// forge returns a request sealed by key but carrying victim's public key,
// so that it claims to be victim's.
func forge(t *testing.T, key crypto.PrivKey, victim crypto.PubKey, r *BidRequest) []byte {
	t.Helper()
	var env recordpb.Envelope
	if err := proto.Unmarshal(sealReq(t, key, r), &env); err != nil {
		t.Fatal(err)
	}
	pk, err := crypto.PublicKeyToProto(victim)
	if err != nil {
		t.Fatal(err)
	}
	env.PublicKey = pk
	data, err := proto.Marshal(&env)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestValidatorForgeriesDoNotDrainTheRequester: requests that name an
// honest requester but are not signed by it are rejected, and the tokens
// they reserved return to it, so the honest requester's own requests
// still pass.
func TestValidatorForgeriesDoNotDrainTheRequester(t *testing.T) {
	k, id := testPeer(t)
	forgerKey, forger := testPeer(t)
	now := time.Now()
	l := RequestLimits{Rate: 1, Burst: 3}
	v := NewValidator(func() time.Time { return now }, l)
	for i := range 3 * l.Burst {
		r := validRequest(id, now)
		r.Nonce = fmt.Sprintf("forged-%08d", i)
		_, err := v.Validate(forger, forge(t, forgerKey, k.GetPublic(), r))
		wantDrop(t, fmt.Sprintf("forgery %d", i), err, DropInvalid, false)
		if errors.Is(err, ErrRateLimited) || errors.Is(err, ErrStale) {
			t.Fatalf("forgery %d: err = %v, want a rejection (the forger is blamed by gossipsub)", i, err)
		}
	}
	// Stale requests give their token back too: an honest relay forwards
	// those.
	r := validRequest(id, now)
	r.Nonce, r.Deadline = "expired-0001", now.Add(-time.Second)
	_, err := v.Validate(id, sealReq(t, k, r))
	wantDrop(t, "expired", err, DropStale, false)
	for i, m := range sealN(t, k, id, now, l.Burst) {
		if _, err := v.Validate(id, m); err != nil {
			t.Fatalf("the requester's own request %d after the forgeries and an expired one: %v", i, err)
		}
	}
}

func TestRequestLimitsValidate(t *testing.T) {
	for _, l := range []RequestLimits{{Rate: 0, Burst: 1}, {Rate: 1, Burst: 0}, {Rate: -1, Burst: 1}} {
		if err := l.Validate(); err == nil {
			t.Errorf("%+v: accepted", l)
		}
	}
	l := RequestLimits{Rate: 3, Burst: 7}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if p := l.perPeer(); p.Rate != peerFactor*3 || p.Burst != peerFactor*7 {
		t.Fatalf("peer limits %+v, want %d times the requester's", p, peerFactor)
	}
	if d := DefaultRequestLimits(); d.perPeer().Rate < 5*d.Rate || d.perRelay().Burst <= d.Burst || d.perRelay().Rate != d.Rate {
		t.Fatalf("default limits %+v: a peer must carry several requesters, and a relay more than one burst", d)
	}
}

// TestDropLogIsRateLimited: the first drop of a reason is logged at once,
// the next ones are counted into one line every dropLogEvery.
func TestDropLogIsRateLimited(t *testing.T) {
	now := time.Now()
	var buf bytes.Buffer
	d := newDropLog(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now })
	if n, ok := d.due(DropPeerRate); !ok || n != 1 {
		t.Fatalf("first drop: due %v with %d, want a line for 1", ok, n)
	}
	for range 99 {
		if _, ok := d.due(DropPeerRate); ok {
			t.Fatal("a drop within dropLogEvery of the last line was logged")
		}
	}
	if _, ok := d.due(DropStale); !ok {
		t.Fatal("another reason's first drop waits for the first reason's")
	}
	now = now.Add(dropLogEvery)
	if n, ok := d.due(DropPeerRate); !ok || n != 100 {
		t.Fatalf("after dropLogEvery: due %v with %d, want a line for the 100 since the last", ok, n)
	}
	d.note("peer", fmt.Errorf("x: %w", &dropError{reason: DropRelayRate, err: ErrFlooding}))
	if out := buf.String(); !bytes.Contains([]byte(out), []byte("reason=relay_rate")) || !bytes.Contains([]byte(out), []byte("level=WARN")) {
		t.Fatalf("log line for a blamed relay: %q", out)
	}
}

// BenchmarkValidateDropped: what a request over its requester's rate
// costs, against BenchmarkValidateBidRequest for one that is verified.
func BenchmarkValidateDropped(b *testing.B) {
	k, id := testPeer(b)
	now := time.Now()
	v := NewValidator(func() time.Time { return now }, RequestLimits{Rate: 1, Burst: 1})
	v.peers = newBuckets(RequestLimits{Rate: 1e12, Burst: 1 << 30})
	msgs := sealN(b, k, id, now, 1024)
	if _, err := v.Validate(id, msgs[0]); err != nil {
		b.Fatal(err)
	}
	_, relay := testPeer(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Through many relays, so that none is blamed for the flood.
		if _, err := v.Validate(relay+peer.ID(rune(i%1000)), msgs[1+i%1023]); !errors.Is(err, ErrRateLimited) {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if v.Verified() != 1 {
		b.Fatalf("verified %d signatures, want 1", v.Verified())
	}
}

// FuzzClaimedRequester: the unverified read of a request's signer never
// panics, and whatever OpenBidRequest accepts it reads as the request's
// requester.
func FuzzClaimedRequester(f *testing.F) {
	k, id := testPeer(f)
	good, _ := SealBidRequest(validRequest(id, time.Now()), k)
	for _, s := range [][]byte{good, good[:len(good)/2], {0x0a, 0x02, 0x08, 0x01}, nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		claimed, err := claimedRequester(data)
		if err == nil && len(data) > MaxBidRequestSize+envelopeOverhead {
			t.Fatalf("read the requester of an oversized request: %d bytes", len(data))
		}
		if r, oerr := OpenBidRequest(data); oerr == nil && (err != nil || claimed != r.Requester) {
			t.Fatalf("claimed requester %s (%v), the request's is %s", claimed, err, r.Requester)
		}
	})
}
