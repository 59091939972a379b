package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/orchestrator"
)

// dms job bids shows what each provider already held of the job, only
// when one held something.
func TestJobBidsShowWhatProvidersHold(t *testing.T) {
	t.Parallel()
	name := func(p peer.ID) string { return string(p) }
	var buf bytes.Buffer
	bids := []orchestrator.Bid{{Provider: "cacher", HasModule: true, HasInputs: true}, {Provider: "other"}}
	if err := printBids(&buf, bids, "cacher", name); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	if !strings.HasSuffix(lines[0], "HOLDS") || !strings.HasSuffix(lines[1], "module,inputs") || !strings.HasSuffix(lines[2], "-") {
		t.Fatalf("table:\n%s", buf.String())
	}
	buf.Reset()
	if err := printBids(&buf, bids[1:], "", name); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "HOLDS") {
		t.Fatalf("a HOLDS column with nothing held:\n%s", buf.String())
	}
}
