package orchestrator

import (
	"testing"
	"time"
)

// A release names the request its bid answered: one for a bid of an
// earlier attempt, arriving after this node bid anew for the same job,
// leaves the new bid and its hold alone.
func TestALateReleaseLeavesALaterBidAlone(t *testing.T) {
	tb := newTestBook(t, DefaultProviderConfig(), cpuCap(10000))
	_, p := testPeer(t)
	first := tb.bid(p, 100, true, time.Minute)
	first.Request.Attempt, first.Bid.Bid.Nonce = 1, "nonce-attempt-1"
	if _, err := tb.book.place(first, tb.reg, tb.now); err != nil {
		t.Fatal(err)
	}
	again := *first.Request
	again.Attempt, again.Nonce = 2, "nonce-attempt-2"
	if err := tb.supersede(&again, tb.now); err != nil {
		t.Fatal(err)
	}
	second := &placedBid{Bid: &SignedBid{Bid: Bid{JobID: again.JobID, Requester: p, Nonce: again.Nonce, HoldExpires: tb.now.Add(time.Minute)}}, Request: &again, Newcomer: true}
	if _, err := tb.book.place(second, tb.reg, tb.now); err != nil {
		t.Fatal(err)
	}
	if tb.withdrawAnswer(p, again.JobID, "nonce-attempt-1", tb.now) {
		t.Fatal("the first attempt's release withdrew the second attempt's bid")
	}
	if !tb.ledger.HasHold(HoldID(p, again.JobID)) {
		t.Fatal("the second attempt's hold is gone")
	}
	if _, err := tb.claim(p, again.JobID, tb.now); err != nil {
		t.Fatalf("the second attempt's bid cannot be invoked: %v", err)
	}
	if tb.withdrawAnswer(p, again.JobID, "nonce-attempt-2", tb.now) {
		t.Fatal("a claimed bid was withdrawn")
	}
}

// A release of the very bid that stands withdraws it.
func TestAReleaseOfTheStandingBidWithdrawsIt(t *testing.T) {
	tb := newTestBook(t, DefaultProviderConfig(), cpuCap(10000))
	_, p := testPeer(t)
	pb := tb.bid(p, 100, true, time.Minute)
	pb.Bid.Bid.Nonce = "nonce-standing"
	if _, err := tb.book.place(pb, tb.reg, tb.now); err != nil {
		t.Fatal(err)
	}
	if !tb.withdrawAnswer(p, pb.Request.JobID, "nonce-standing", tb.now) || tb.ledger.HasHold(HoldID(p, pb.Request.JobID)) {
		t.Fatal("the release of the standing bid left it holding")
	}
}
