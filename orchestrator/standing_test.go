package orchestrator

import (
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
)

func TestStandingFromInvocationsAndLapses(t *testing.T) {
	b := newBook(1, time.Hour)
	now := time.Now()
	_, p := testPeer(t)
	if s := b.standing(p, now); s != Newcomer {
		t.Fatalf("unknown requester: %s, want newcomer", s)
	}
	b.placed(p, "job-00001", now.Add(time.Second), now)
	b.settle(p, "job-00001", true, now)
	if s := b.standing(p, now); s != Known {
		t.Fatalf("after an invocation: %s, want known", s)
	}
	// Released bids cost nothing; lapsed ones do, past the allowance.
	b.placed(p, "job-00002", now.Add(time.Second), now)
	b.settle(p, "job-00002", false, now)
	for _, j := range []string{"job-00003", "job-00004", "job-00005"} {
		b.placed(p, j, now.Add(time.Second), now)
	}
	if s := b.standing(p, now); s != Known {
		t.Fatalf("with bids still open: %s, want known", s)
	}
	later := now.Add(2 * time.Second)
	if s := b.standing(p, later); s != Lapsing {
		t.Fatalf("three lapses against one invocation, allowance 1: %s, want lapsing", s)
	}
	if s := b.standing(p, later.Add(2*time.Hour)); s != Newcomer {
		t.Fatalf("after the standing memory: %s, want newcomer (forgotten)", s)
	}
}

// admission bounds each requester's holds and, when asked, newcomers'
// together; a known requester may displace newcomers, newest first.
func TestAdmission(t *testing.T) {
	p := &Provider{cfg: DefaultProviderConfig()}
	p.cfg.NewcomerShare = 0.5
	reg := capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB}
	_, known := testPeer(t)
	_, stranger := testPeer(t)
	_, other := testPeer(t)
	bid := func(r peer.ID, cpu uint64, newcomer bool) *PlacedBid {
		req := &BidRequest{JobID: NewJobID(), Requester: r, Requirements: capability.Capability{CPU: capability.CPU{MilliCores: cpu}}}
		return &PlacedBid{Bid: &SignedBid{Bid: Bid{JobID: req.JobID, Requester: r}}, Request: req, Newcomer: newcomer}
	}
	req := func(r peer.ID, cpu uint64) *BidRequest { return bid(r, cpu, false).Request }

	// One hold of any size, then within the requester's share.
	if _, err := p.admission(req(known, 1000), false)(reg, nil); err != nil {
		t.Fatalf("a first hold of the whole offer: %v", err)
	}
	open := []*PlacedBid{bid(known, 400, false)}
	if _, err := p.admission(req(known, 200), false)(reg, open); err == nil || !strings.Contains(err.Error(), "50%") {
		t.Fatalf("a second hold past the requester's share: %v", err)
	}
	open = []*PlacedBid{bid(known, 10, false), bid(known, 10, false), bid(known, 10, false), bid(known, 10, false)}
	if _, err := p.admission(req(known, 10), false)(reg, open); err == nil || !strings.Contains(err.Error(), "at most 4") {
		t.Fatalf("a fifth hold: %v", err)
	}
	// Newcomers together within their share.
	open = []*PlacedBid{bid(other, 400, true)}
	if _, err := p.admission(req(stranger, 200), true)(reg, open); err == nil || !strings.Contains(err.Error(), "new to this provider") {
		t.Fatalf("newcomers past their share: %v", err)
	}
	if _, err := p.admission(req(stranger, 100), true)(reg, open); err != nil {
		t.Fatalf("a newcomer within the share: %v", err)
	}
	// A known requester may displace newcomers, newest first, and only them.
	older, newer, mine := bid(other, 300, true), bid(stranger, 100, true), bid(known, 100, false)
	pre, err := p.admission(req(known, 300), false)(reg, []*PlacedBid{older, mine, newer})
	if err != nil || len(pre) != 2 || pre[0] != newer || pre[1] != older {
		t.Fatalf("preemptible %v, %v; want the newer newcomer, then the older", pre, err)
	}
	if pre, _ := p.admission(req(stranger, 100), true)(reg, []*PlacedBid{older}); len(pre) != 0 {
		t.Fatalf("a newcomer may displace %d holds, want none", len(pre))
	}
}
