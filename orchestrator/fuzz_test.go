package orchestrator

import (
	"testing"
	"time"
)

// The decoders below read what peers send; none may panic or accept an
// oversized message, whatever the bytes.

func FuzzDecodeBidRequest(f *testing.F) {
	_, id := testPeer(f)
	good, _ := Encode(validRequest(id, time.Now()))
	for _, s := range [][]byte{good, []byte("{}"), []byte(`{"job_id":"abcdefgh","duration":-1}`), nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeBidRequest(data)
		if err == nil && (len(data) > MaxBidRequestSize || r.check() != nil) {
			t.Fatalf("accepted an invalid request: %q", data)
		}
	})
}

func FuzzDecodeBid(f *testing.F) {
	k, id := testPeer(f)
	b := &Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: id, HoldExpires: time.Now()}
	_ = b.Sign(k)
	good, _ := Encode(b)
	f.Add(good)
	f.Add([]byte(`{"signature":"AA=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := DecodeBid(data); err == nil {
			_ = b.Verify() // must not panic on any provider id
		}
	})
}

func FuzzDecodeInvokeMessage(f *testing.F) {
	for _, m := range []*InvokeMessage{{ReleaseJob: "abcdefgh"}, {Invocation: &Invocation{Job: JobSpec{Module: []byte("\x00asm")}}}} {
		data, _ := EncodeInvokeMessage(m)
		f.Add(data)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeInvokeMessage(data)
		if err == nil && m.Invocation == nil && m.ReleaseJob == "" {
			t.Fatal("accepted an empty invoke message")
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
