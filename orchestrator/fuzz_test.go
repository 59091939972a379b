package orchestrator

import (
	"testing"
	"time"

	"github.com/dms-project/dms/internal/seconds"
)

// The decoders below read what peers send; none may panic or accept an
// oversized message, whatever the bytes.

func FuzzDecodeBidRequest(f *testing.F) {
	_, id := testPeer(f)
	good, _ := Encode(validRequest(id, time.Now()))
	newer := append(good[:len(good)-1:len(good)-1], []byte(`,"priority":"high"}`)...)
	placed := append(good[:len(good)-1:len(good)-1], []byte(`,"constraints":["region in (eu-west,eu-north)","!gpu","tier=gold"]}`)...)
	hashed := append(good[:len(good)-1:len(good)-1], []byte(`,"module_hash":"`+ModuleHash([]byte("m"))+`","inputs_hash":"`+ModuleHash([]byte("i"))+`","input_size":1}`)...)
	for _, s := range [][]byte{good, newer, placed, hashed, []byte("{}"), []byte(`{"job_id":"abcdefgh","duration":-1}`), nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeBidRequest(data)
		if err == nil && (len(data) > MaxBidRequestSize || r.check() != nil) {
			t.Fatalf("accepted an invalid request: %q", data)
		}
	})
}

// FuzzOpenBidRequest: what arrives on the topic, a sealed request.
func FuzzOpenBidRequest(f *testing.F) {
	k, id := testPeer(f)
	r := validRequest(id, time.Now())
	good, _ := SealBidRequest(r, k)
	body, _ := Encode(r)
	newer, _ := seal(&jsonRecord{domain: bidRequestDomain, codec: bidRequestCodec, raw: append(body[:len(body)-1:len(body)-1], []byte(`,"priority":"high"}`)...)}, k)
	wrongDomain, _ := seal(&jsonRecord{domain: bidDomain, codec: bidRequestCodec, raw: body}, k)
	for _, s := range [][]byte{good, newer, wrongDomain, good[:len(good)/2], {0x0a, 0x02, 0x08, 0x01}, nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := OpenBidRequest(data)
		if err == nil && (len(data) > MaxBidRequestSize+envelopeOverhead || r.check() != nil) {
			t.Fatalf("accepted an invalid sealed request: %q", data)
		}
	})
}

func FuzzDecodeBid(f *testing.F) {
	_, id := testPeer(f)
	good, _ := Encode(&Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: id, HoldExpires: time.Now()})
	f.Add(good)
	f.Add([]byte(`{"job_id":"abcdefgh","price":-1}`))
	labelled, _ := Encode(&Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: id, HoldExpires: time.Now(), Labels: Labels{"region": "eu-west", "tier": "gold"}})
	f.Add(labelled)
	cached, _ := Encode(&Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: id, HoldExpires: time.Now(), HasModule: true, HasInputs: true})
	f.Add(cached)
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := DecodeBid(data); err == nil && b.check() != nil {
			t.Fatalf("accepted an invalid bid: %q", data)
		}
	})
}

// FuzzOpenBid: what a requester receives on the bid protocol.
func FuzzOpenBid(f *testing.F) {
	k, id := testPeer(f)
	b := &Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: id, HoldExpires: time.Now()}
	sb, _ := SealBid(b, k)
	body, _ := Encode(b)
	newer, _ := seal(&jsonRecord{domain: bidDomain, codec: bidCodec, raw: append(body[:len(body)-1:len(body)-1], []byte(`,"region":"eu"}`)...)}, k)
	for _, s := range [][]byte{sb.Envelope, newer, sb.Envelope[:len(sb.Envelope)-3], []byte(`{"signature":"AA=="}`), nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := OpenBid(data)
		if err == nil && (got.check() != nil || len(got.Envelope) == 0) {
			t.Fatalf("accepted an invalid sealed bid: %q", data)
		}
	})
}

func FuzzDecodeInvokeMessage(f *testing.F) {
	k, id := testPeer(f)
	sb, _ := SealBid(&Bid{JobID: "abcdefgh", Nonce: "abcdefgh", Provider: id, Requester: id, HoldExpires: time.Now()}, k)
	good := &Invocation{Bid: *sb, Job: JobSpec{ID: "abcdefgh", Executor: ExecutorWasm, Duration: seconds.Duration(time.Minute), Module: []byte("\x00asm")}}
	for _, m := range []*InvokeMessage{{ReleaseJob: "abcdefgh"}, {Invocation: good}, {Invocation: &Invocation{Job: JobSpec{Module: []byte("\x00asm")}}}} {
		data, _ := EncodeInvokeMessage(m)
		f.Add(data)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeInvokeMessage(data)
		if err == nil && m.Invocation == nil && m.ReleaseJob == "" {
			t.Fatal("accepted an empty invoke message")
		}
		if err == nil && m.Invocation != nil {
			if _, err := OpenBid(m.Invocation.Bid.Envelope); err != nil {
				t.Fatalf("accepted an invocation whose bid does not open: %v", err)
			}
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"kind":"result","result":{"state":"completed"}}`))
	f.Add([]byte(`{"kind":"stdout","data":"aGk="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEvent(data)
		if err == nil && e.Kind == EventResult && e.Result == nil {
			t.Fatal("result event without result accepted")
		}
	})
}

func FuzzDecodeReplies(f *testing.F) {
	f.Add([]byte(`{"accepted":true,"allocation_id":"a"}`))
	f.Add([]byte(`{"allocation_id":"a","cancel":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := DecodeInvokeReply(data); err == nil && r.Accepted && r.AllocationID == "" {
			t.Fatal("accepted reply without allocation")
		}
		if r, err := DecodeAllocationRequest(data); err == nil && r.AllocationID == "" {
			t.Fatal("allocation request without id")
		}
	})
}

func FuzzDecodeFetch(f *testing.F) {
	f.Add([]byte(`{"sha256":"` + ModuleHash([]byte("x")) + `"}`))
	f.Add([]byte(`{"size":3}`))
	f.Add([]byte(`{"sha256":"zz"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := DecodeFetchRequest(data); err == nil && checkHash("fetch", r.SHA256) != nil {
			t.Fatalf("accepted a fetch of %q", r.SHA256)
		}
		if h, err := decodeFetchHeader(data, 3); err == nil && h.Error == "" && h.Size != 3 {
			t.Fatalf("accepted a header of %d bytes for a blob of 3", h.Size)
		}
	})
}

// FuzzDecodeDecline: what a requester receives on the decline protocol.
func FuzzDecodeDecline(f *testing.F) {
	good, _ := Encode(&Decline{JobID: NewJobID(), Nonce: "abcdefgh", Code: ReasonNoImage, Text: "lacks image pyjob:1"})
	newer := append(good[:len(good)-1:len(good)-1], []byte(`,"detail":{"free":0}}`)...)
	for _, s := range [][]byte{good, newer, []byte(`{"job_id":"abcdefgh","nonce":"abcdefgh","code":"BUSY"}`), []byte("{}"), nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDecline(data)
		if err == nil && (len(data) > MaxDeclineSize || d.check() != nil || len(d.Text) > maxDeclineText) {
			t.Fatalf("accepted an invalid decline: %q", data)
		}
	})
}

// FuzzParseConstraint: constraints arrive as text inside bid requests.
// What parses reads back as itself, and matching never panics.
func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{"region=eu-west", "region!=x", "region in (a, b)", "zone notin(a)", "gpu", "gpu exists", "!gpu", "gpu !exists", "a==b", "in (", "=", "!", "a in ((b))"} {
		f.Add(s)
	}
	labels := Labels{"region": "eu-west", "gpu": "h100", "a": "b"}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConstraint(s)
		if err != nil {
			return
		}
		if err := c.check(); err != nil {
			t.Fatalf("%q parsed to an invalid %q: %v", s, c, err)
		}
		again, err := ParseConstraint(c.String())
		if err != nil || again.String() != c.String() {
			t.Fatalf("%q parsed to %q, which reads back as %q (%v)", s, c, again, err)
		}
		if c.Matches(labels) != again.Matches(labels) {
			t.Fatalf("%q and its canonical form %q match differently", s, c)
		}
		_ = Unmet([]Constraint{c}, labels)
	})
}

// FuzzOpenReceipt: what arrives in a result event, a sealed receipt.
func FuzzOpenReceipt(f *testing.F) {
	k, id := testPeer(f)
	r := Receipt{
		JobID: NewJobID(), AllocationID: "alloc-1", Requester: id, Provider: id, Executor: ExecutorWasm,
		BidSHA256: StreamHash(nil), SpecSHA256: StreamHash(nil), StdoutSHA256: StreamHash(nil), StderrSHA256: StreamHash(nil),
		State: StateCompleted, Ended: time.Now(),
	}
	good, _ := SealReceipt(&r, k)
	body, _ := Encode(&r)
	wrongDomain, _ := seal(&jsonRecord{domain: bidDomain, codec: receiptCodec, raw: body}, k)
	badPath, _ := seal(&jsonRecord{domain: receiptDomain, codec: receiptCodec, raw: append(body[:len(body)-1:len(body)-1], []byte(`,"outputs":[{"path":"../x","sha256":"00"}]}`)...)}, k)
	for _, s := range [][]byte{good, wrongDomain, badPath, good[:len(good)/2], nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := OpenReceipt(data)
		if err == nil && (len(data) > MaxReceiptSize+envelopeOverhead || r.check() != nil) {
			t.Fatalf("accepted an invalid receipt: %q", data)
		}
	})
}
