package orchestrator

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// bidDomain separates bid signatures from anything else the same key signs.
const bidDomain = "dms/bid/1\n"

func (b *Bid) signingBytes() ([]byte, error) {
	c := *b
	c.Signature = nil
	body, err := Encode(&c)
	if err != nil {
		return nil, err
	}
	return append([]byte(bidDomain), body...), nil
}

// Sign signs the bid with the provider's key.
func (b *Bid) Sign(key crypto.PrivKey) error {
	msg, err := b.signingBytes()
	if err != nil {
		return err
	}
	sig, err := key.Sign(msg)
	if err != nil {
		return fmt.Errorf("sign bid for job %s: %w", b.JobID, err)
	}
	b.Signature = sig
	return nil
}

// Verify checks that the bid was signed by the key of its Provider.
func (b *Bid) Verify() error {
	pub, err := b.Provider.ExtractPublicKey()
	if err != nil {
		return invalid("bid provider %s: no public key in its peer id: %v", b.Provider, err)
	}
	msg, err := b.signingBytes()
	if err != nil {
		return err
	}
	ok, err := pub.Verify(msg, b.Signature)
	if err != nil || !ok {
		return invalid("bid for job %s: signature does not match provider %s", b.JobID, b.Provider)
	}
	return nil
}
