package node

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/cache"
	"github.com/dms-project/dms/orchestrator"
)

// A module kept from one requester's job serves anyone's; inputs only the
// requester they were fetched from, so that no bid or missing fetch tells
// another requester that someone ran a job on them here.
func TestCachedInputsServeOnlyTheirRequester(t *testing.T) {
	t.Parallel()
	store, err := cache.Open(t.TempDir(), 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newBlobCache(store)
	name := func(data []byte) string { s := sha256.Sum256(data); return hex.EncodeToString(s[:]) }
	module, inputs := []byte("a module"), []byte("someone's inputs")
	if err := c.put("alice", name(module), module, orchestrator.BlobModule); err != nil {
		t.Fatal(err)
	}
	if err := c.put("alice", name(inputs), inputs, orchestrator.BlobInputs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who  string
		data []byte
		kind orchestrator.BlobKind
		want bool
	}{
		{"alice", module, orchestrator.BlobModule, true},
		{"bob", module, orchestrator.BlobModule, true},
		{"alice", inputs, orchestrator.BlobInputs, true},
		{"bob", inputs, orchestrator.BlobInputs, false},
	} {
		_, got := c.get(peer.ID(tc.who), name(tc.data), tc.kind)
		if c.usable(peer.ID(tc.who), name(tc.data), tc.kind) != tc.want || got != tc.want {
			t.Errorf("%s's job, %s: usable/get = %v, want %v", tc.who, tc.kind, got, tc.want)
		}
	}
	// Once bob has sent them too (a fetch proves he has them), they serve
	// his jobs as well.
	if err := c.put("bob", name(inputs), inputs, orchestrator.BlobInputs); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.get("bob", name(inputs), orchestrator.BlobInputs); !ok {
		t.Fatal("inputs bob fetched do not serve his next job")
	}
}
