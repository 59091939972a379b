package orchestrator

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
)

// Bid requests and bids travel in libp2p signed envelopes (core/record):
// the signature covers the exact payload bytes sent, under a domain of
// their own. A receiver verifies those bytes and decodes them, never
// re-encodes what it decoded, so a newer peer may add fields that an older
// one ignores without its signatures turning into forgeries.
const (
	bidRequestDomain = "dms/bid-request"
	bidDomain        = "dms/bid"
)

// Payload types (multicodec-style names; they are signed with the payload).
var (
	bidRequestCodec = []byte("/dms/bid-request/json/1")
	bidCodec        = []byte("/dms/bid/json/1")
)

// envelopeOverhead bounds what an envelope adds around its payload: the
// signer's public key (an RSA key is the largest, about 550 bytes), the
// payload type and the signature (512 bytes for RSA-4096), and protobuf
// framing.
const envelopeOverhead = 2 << 10

// jsonRecord is a record.Record whose payload is JSON: sealing encodes v,
// opening decodes at most max bytes into v and keeps the raw payload.
type jsonRecord struct {
	domain string
	codec  []byte
	max    int
	v      any
	raw    []byte // set, instead of encoding v, to seal exact bytes
}

var _ record.Record = (*jsonRecord)(nil)

func (r *jsonRecord) Domain() string { return r.domain }
func (r *jsonRecord) Codec() []byte  { return r.codec }

func (r *jsonRecord) MarshalRecord() ([]byte, error) {
	if r.raw != nil {
		return r.raw, nil
	}
	return Encode(r.v)
}

func (r *jsonRecord) UnmarshalRecord(data []byte) error {
	r.raw = data
	return decode(data, r.max, r.v)
}

// seal signs rec's payload with key and returns the envelope's bytes.
func seal(rec *jsonRecord, key crypto.PrivKey) ([]byte, error) {
	env, err := record.Seal(rec, key)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", rec.domain, err)
	}
	data, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", rec.domain, err)
	}
	return data, nil
}

// open checks an envelope's size, payload type and signature, decodes its
// payload into rec, and returns the signer.
func open(data []byte, rec *jsonRecord, what string) (peer.ID, error) {
	if limit := rec.max + envelopeOverhead; len(data) > limit {
		return "", invalid("%s of %d bytes exceeds the limit of %d", what, len(data), limit)
	}
	env, err := record.ConsumeTypedEnvelope(data, rec)
	if err != nil {
		return "", invalid("%s: not a valid signed envelope: %v", what, err)
	}
	if !bytes.Equal(env.PayloadType, rec.codec) {
		return "", invalid("%s: payload type %q, want %q", what, env.PayloadType, rec.codec)
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return "", invalid("%s: signer's key: %v", what, err)
	}
	return signer, nil
}

// claimedRequester reads, without checking the signature, whose key
// sealed a bid request: enough to charge the request to its requester's
// rate before the expensive check. OpenBidRequest then verifies that key's
// signature, and that the request names the same requester.
func claimedRequester(data []byte) (peer.ID, error) {
	if limit := MaxBidRequestSize + envelopeOverhead; len(data) > limit {
		return "", invalid("bid request of %d bytes exceeds the limit of %d", len(data), limit)
	}
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return "", invalid("bid request: not a valid signed envelope: %v", err)
	}
	if !bytes.Equal(env.PayloadType, bidRequestCodec) {
		return "", invalid("bid request: payload type %q, want %q", env.PayloadType, bidRequestCodec)
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return "", invalid("bid request: signer's key: %v", err)
	}
	return signer, nil
}

// SealBidRequest signs a bid request with the requester's key and returns
// what is published on the topic.
func SealBidRequest(r *BidRequest, key crypto.PrivKey) ([]byte, error) {
	return seal(&jsonRecord{domain: bidRequestDomain, codec: bidRequestCodec, max: MaxBidRequestSize, v: r}, key)
}

// OpenBidRequest verifies a sealed bid request and decodes it: its shape
// is checked and its signer must be the requester it names (its freshness
// is the Validator's).
func OpenBidRequest(data []byte) (*BidRequest, error) {
	var r BidRequest
	signer, err := open(data, &jsonRecord{domain: bidRequestDomain, codec: bidRequestCodec, max: MaxBidRequestSize, v: &r}, "bid request")
	if err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	if r.Requester != signer {
		return nil, invalid("bid request %s names requester %s but was signed by %s", r.JobID, r.Requester, signer)
	}
	return &r, nil
}

// SignedBid is a bid as its provider signed it: the envelope's exact bytes
// and the bid decoded from them. In JSON it is the envelope (base64), and
// decoding it verifies the signature.
type SignedBid struct {
	Bid
	Envelope []byte
}

// SealBid signs a bid with the provider's key.
func SealBid(b *Bid, key crypto.PrivKey) (*SignedBid, error) {
	env, err := seal(&jsonRecord{domain: bidDomain, codec: bidCodec, max: MaxBidSize, v: b}, key)
	if err != nil {
		return nil, err
	}
	return &SignedBid{Bid: *b, Envelope: env}, nil
}

// OpenBid verifies a sealed bid and decodes it: its shape is checked and
// its signer must be the provider it names.
func OpenBid(data []byte) (*SignedBid, error) {
	var b Bid
	signer, err := open(data, &jsonRecord{domain: bidDomain, codec: bidCodec, max: MaxBidSize, v: &b}, "bid")
	if err != nil {
		return nil, err
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	if b.Provider != signer {
		return nil, invalid("bid for job %s names provider %s but was signed by %s", b.JobID, b.Provider, signer)
	}
	return &SignedBid{Bid: b, Envelope: bytes.Clone(data)}, nil
}

// MarshalJSON writes the envelope, as base64.
func (s SignedBid) MarshalJSON() ([]byte, error) { return json.Marshal(s.Envelope) }

// UnmarshalJSON opens the envelope: a bid that does not verify does not
// decode.
func (s *SignedBid) UnmarshalJSON(data []byte) error {
	var env []byte
	if err := json.Unmarshal(data, &env); err != nil {
		return invalid("signed bid: want the envelope in base64: %v", err)
	}
	b, err := OpenBid(env)
	if err != nil {
		return err
	}
	*s = *b
	return nil
}
