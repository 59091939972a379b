package orchestrator

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/resources"
)

var _ Capacity = (*resources.Ledger)(nil)

// testBook is a book over a real ledger of registered capability, both on
// one hand-moved clock: no host, no sleeping.
type testBook struct {
	*book
	t      *testing.T
	ledger *resources.Ledger
	reg    capability.Capability
	now    time.Time
	jobs   int
}

func newTestBook(t *testing.T, cfg ProviderConfig, reg capability.Capability) *testBook {
	t.Helper()
	tb := &testBook{t: t, reg: reg, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l, err := resources.NewLedger(dssync.MutexWrap(datastore.NewMapDatastore()), resources.WithClock(func() time.Time { return tb.now }))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Register(reg); err != nil {
		t.Fatal(err)
	}
	tb.ledger, tb.book = l, newBook(cfg, l)
	return tb
}

func cpuCap(m uint64) capability.Capability {
	return capability.Capability{CPU: capability.CPU{MilliCores: m}}
}

// bid is a bid for a new job of r, open for ttl.
func (tb *testBook) bid(r peer.ID, cpu uint64, newcomer bool, ttl time.Duration) *placedBid {
	tb.jobs++
	req := &BidRequest{JobID: fmt.Sprintf("job-%05d", tb.jobs), Requester: r, Requirements: cpuCap(cpu), WantBids: 3}
	return &placedBid{Bid: &SignedBid{Bid: Bid{JobID: req.JobID, Requester: r, HoldExpires: tb.now.Add(ttl)}}, Request: req, Newcomer: newcomer}
}

func (tb *testBook) place(r peer.ID, cpu uint64, newcomer bool) (*placedBid, []*placedBid, error) {
	pb := tb.bid(r, cpu, newcomer, time.Minute)
	displaced, err := tb.book.place(pb, tb.reg, tb.now)
	return pb, displaced, err
}

func (tb *testBook) mustPlace(r peer.ID, cpu uint64, newcomer bool) *placedBid {
	tb.t.Helper()
	pb, _, err := tb.place(r, cpu, newcomer)
	if err != nil {
		tb.t.Fatal(err)
	}
	return pb
}

// invoke claims a bid and promotes its hold, as an accepted invocation does.
func (tb *testBook) invoke(pb *placedBid) {
	tb.t.Helper()
	r, job := pb.Request.Requester, pb.Request.JobID
	if _, err := tb.claim(r, job, tb.now); err != nil {
		tb.t.Fatal(err)
	}
	if err := tb.ledger.Promote(HoldID(r, job), "alloc-"+job, nil); err != nil {
		tb.t.Fatal(err)
	}
	tb.invoked(r, job, tb.now)
	if err := tb.ledger.Unlock("alloc-" + job); err != nil {
		tb.t.Fatal(err)
	}
}

func TestBookStandingFromInvocationsAndLapses(t *testing.T) {
	tb := newTestBook(t, DefaultProviderConfig(), cpuCap(10000))
	_, p := testPeer(t)
	if s := tb.standing(p, tb.now); s != Newcomer {
		t.Fatalf("unknown requester: %s, want newcomer", s)
	}
	tb.invoke(tb.mustPlace(p, 100, true))
	if s := tb.standing(p, tb.now); s != Known {
		t.Fatalf("after an invocation: %s, want known", s)
	}
	// Released bids cost nothing; lapsed ones do, past the allowance.
	released := tb.mustPlace(p, 100, false)
	if !tb.withdraw(p, released.Request.JobID, tb.now) || tb.ledger.HasHold(HoldID(p, released.Request.JobID)) {
		t.Fatal("a withdrawn bid kept its hold")
	}
	for range 3 {
		tb.mustPlace(p, 100, false)
	}
	if s := tb.standing(p, tb.now); s != Known {
		t.Fatalf("with bids still open: %s, want known", s)
	}
	tb.now = tb.now.Add(2 * time.Minute)
	if s := tb.standing(p, tb.now); s != Lapsing {
		t.Fatalf("three lapses against one invocation, allowance 1: %s, want lapsing", s)
	}
	if n := len(tb.ledger.Holds()); n != 0 {
		t.Fatalf("%d holds left after every bid expired", n)
	}
	if s := tb.standing(p, tb.now.Add(2*time.Hour)); s != Newcomer {
		t.Fatalf("after the standing memory: %s, want newcomer (forgotten)", s)
	}
}

// The book bounds each requester's bids and, when asked, newcomers'
// together, from its own bids.
func TestBookQuotas(t *testing.T) {
	cfg := DefaultProviderConfig()
	cfg.NewcomerShare = 0.5
	_, known := testPeer(t)
	_, stranger := testPeer(t)
	_, other := testPeer(t)
	reg := capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB}

	tb := newTestBook(t, cfg, reg)
	// One bid of any size, then within the requester's share.
	whole := tb.mustPlace(known, 1000, false)
	tb.release(known, whole.Request.JobID, true, tb.now)
	tb.mustPlace(known, 400, false)
	if _, _, err := tb.place(known, 200, false); err == nil || !strings.Contains(err.Error(), "50%") {
		t.Fatalf("a second bid past the requester's share: %v", err)
	}

	tb = newTestBook(t, cfg, reg)
	for range 4 {
		tb.mustPlace(known, 10, false)
	}
	if _, _, err := tb.place(known, 10, false); err == nil || !strings.Contains(err.Error(), "at most 4") {
		t.Fatalf("a fifth bid: %v", err)
	}

	// Newcomers together within their share.
	tb = newTestBook(t, cfg, reg)
	tb.mustPlace(other, 400, true)
	if _, _, err := tb.place(stranger, 200, true); err == nil || !strings.Contains(err.Error(), "new to this provider") {
		t.Fatalf("newcomers past their share: %v", err)
	}
	if _, _, err := tb.place(stranger, 100, true); err != nil {
		t.Fatalf("a newcomer within the share: %v", err)
	}
	if n := len(tb.ledger.Holds()); n != 2 {
		t.Fatalf("%d holds after a refused bid, want 2", n)
	}
}

// A known requester displaces newcomers' bids, those that owe most first,
// the fewest that make room, never a claimed one; a newcomer that owes no
// less displaces nobody; a displaced bid is void, not lapsed.
func TestBookKnownRequesterDisplacesNewcomers(t *testing.T) {
	cfg := DefaultProviderConfig()
	cfg.LapseAllowance = 0 // a single lapse would show
	_, known := testPeer(t)
	_, stranger := testPeer(t)
	_, other := testPeer(t)
	_, claimer := testPeer(t)
	_, knownToo := testPeer(t)
	tb := newTestBook(t, cfg, cpuCap(1000))
	tb.invoke(tb.mustPlace(known, 10, true))

	claimed := tb.mustPlace(claimer, 200, true)
	if _, err := tb.claim(claimer, claimed.Request.JobID, tb.now); err != nil {
		t.Fatal(err)
	}
	older := tb.mustPlace(other, 300, true)
	tb.mustPlace(knownToo, 100, false)
	newer := tb.mustPlace(stranger, 100, true)
	// Held 6 s unrun: the older newcomer's hold owes 1.8 offer-seconds,
	// the newer's 0.6 (so the older goes first); the known requester's 0.6
	// is within the margin.
	tb.now = tb.now.Add(6 * time.Second)
	// 300m free. A newcomer that does not fit displaces nobody.
	if _, displaced, err := tb.place(stranger, 350, true); !errors.Is(err, capability.ErrInsufficient) || len(displaced) != 0 {
		t.Fatalf("a newcomer that does not fit: displaced %d, %v", len(displaced), err)
	}
	// 700m for a known requester: the older newcomer (300m, owing most)
	// is not enough, the newer (100m) too makes room; the claimed one
	// stays.
	_, displaced, err := tb.place(known, 700, false)
	if err != nil || len(displaced) != 2 || displaced[0] != older || displaced[1] != newer {
		t.Fatalf("displaced %v, %v; want the older newcomer, then the newer", displaced, err)
	}
	for _, pb := range displaced {
		if tb.ledger.HasHold(HoldID(pb.Request.Requester, pb.Request.JobID)) || len(tb.open(pb.Request.JobID)) != 0 {
			t.Fatalf("displaced bid for %s still open", pb.Request.JobID)
		}
		if _, err := tb.claim(pb.Request.Requester, pb.Request.JobID, tb.now); !errors.Is(err, ErrNoHold) {
			t.Fatalf("claim of a displaced bid: %v, want ErrNoHold", err)
		}
	}
	if !tb.ledger.HasHold(HoldID(claimer, claimed.Request.JobID)) {
		t.Fatal("a claimed bid's hold was displaced")
	}
	// Nothing more to displace: a known requester is refused too.
	if _, _, err := tb.place(knownToo, 300, false); !errors.Is(err, capability.ErrInsufficient) {
		t.Fatalf("no room left: %v", err)
	}
	tb.now = tb.now.Add(2 * time.Minute)
	for _, p := range []peer.ID{stranger, other} {
		if s := tb.standing(p, tb.now); s != Newcomer {
			t.Fatalf("a displaced newcomer is %s, want newcomer (its bid void, not lapsed)", s)
		}
	}
}

// A re-send of the same attempt gets no second bid; a later attempt voids
// the earlier bid and frees its hold; a claimed bid is never superseded.
func TestBookSupersede(t *testing.T) {
	cfg := DefaultProviderConfig()
	cfg.LapseAllowance = 0
	tb := newTestBook(t, cfg, cpuCap(1000))
	_, p := testPeer(t)
	first := tb.mustPlace(p, 600, true)
	again := *first.Request
	if err := tb.supersede(&again, tb.now); err == nil {
		t.Fatal("the same attempt again was not refused")
	}
	again.Attempt++
	if err := tb.supersede(&again, tb.now); err != nil {
		t.Fatalf("a later attempt: %v", err)
	}
	if tb.ledger.HasHold(HoldID(p, first.Request.JobID)) {
		t.Fatal("the earlier attempt's hold was kept")
	}
	second := &placedBid{Bid: &SignedBid{Bid: Bid{JobID: again.JobID, Requester: p, HoldExpires: tb.now.Add(time.Minute)}}, Request: &again, Newcomer: true}
	if _, err := tb.book.place(second, tb.reg, tb.now); err != nil {
		t.Fatalf("the later attempt's bid: %v", err)
	}
	if _, err := tb.claim(p, again.JobID, tb.now); err != nil {
		t.Fatal(err)
	}
	later := again
	later.Attempt++
	if err := tb.supersede(&later, tb.now); err == nil {
		t.Fatal("a claimed bid was superseded")
	}
	tb.invoked(p, again.JobID, tb.now)
	if s := tb.standing(p, tb.now.Add(2*time.Minute)); s != Known {
		t.Fatalf("after a superseded and an invoked bid: %s, want known (no lapse)", s)
	}
	if got := tb.registeredBids(again.JobID); len(got) != 2 {
		t.Fatalf("%d bids in the history, want both attempts'", len(got))
	}
}

// A bid is claimed once, by its requester, while it stands; the requester
// can withdraw only an unclaimed one.
func TestBookClaim(t *testing.T) {
	tb := newTestBook(t, DefaultProviderConfig(), cpuCap(1000))
	_, p := testPeer(t)
	_, thief := testPeer(t)
	pb := tb.mustPlace(p, 100, true)
	job := pb.Request.JobID
	if _, err := tb.claim(thief, job, tb.now); !errors.Is(err, ErrNoHold) {
		t.Fatalf("a claim by another peer: %v, want ErrNoHold", err)
	}
	if got, err := tb.claim(p, job, tb.now); err != nil || got != pb {
		t.Fatalf("claim: %v, %v", got, err)
	}
	if _, err := tb.claim(p, job, tb.now); !errors.Is(err, ErrNoHold) {
		t.Fatalf("a second claim: %v, want ErrNoHold", err)
	}
	if tb.withdraw(p, job, tb.now) {
		t.Fatal("a claimed bid was withdrawn")
	}
	tb.release(p, job, true, tb.now)
	if tb.ledger.HasHold(HoldID(p, job)) || len(tb.open(job)) != 0 {
		t.Fatal("a released bid kept its hold")
	}
	// Expired, or its hold gone from the ledger: nothing to claim.
	expired := tb.mustPlace(p, 100, true)
	lost := tb.mustPlace(p, 100, true)
	tb.ledger.Release(HoldID(p, lost.Request.JobID))
	if _, err := tb.claim(p, lost.Request.JobID, tb.now); !errors.Is(err, ErrNoHold) {
		t.Fatalf("claim of a bid whose hold the ledger dropped: %v, want ErrNoHold", err)
	}
	tb.now = tb.now.Add(time.Minute)
	if _, err := tb.claim(p, expired.Request.JobID, tb.now); !errors.Is(err, ErrNoHold) {
		t.Fatalf("claim of an expired bid: %v, want ErrNoHold", err)
	}
}

// The history keeps the last maxPlaced jobs, bid for or declined; a bid
// clears an earlier decline.
func TestBookHistory(t *testing.T) {
	tb := newTestBook(t, DefaultProviderConfig(), cpuCap(1000))
	_, p := testPeer(t)
	tb.decline("job-declined", "no such image")
	if got := tb.declinedWhy("job-declined"); got != "no such image" {
		t.Fatalf("declined %q", got)
	}
	pb := tb.bid(p, 1, true, time.Minute)
	pb.Request.JobID, pb.Bid.Bid.JobID = "job-declined", "job-declined"
	if _, err := tb.book.place(pb, tb.reg, tb.now); err != nil {
		t.Fatal(err)
	}
	if got := tb.declinedWhy("job-declined"); got != "" || len(tb.registeredBids("job-declined")) != 1 {
		t.Fatalf("after a bid: declined %q, %d bids", got, len(tb.registeredBids("job-declined")))
	}
	for i := range maxPlaced {
		tb.decline(fmt.Sprintf("job-%d", i), "why")
	}
	if len(tb.registeredBids("job-declined")) != 0 || tb.declinedWhy("job-0") != "why" {
		t.Fatal("the oldest job was not the one forgotten")
	}
	if len(tb.order) != maxPlaced || len(tb.declined) != maxPlaced {
		t.Fatalf("history of %d jobs (%d declined), want %d", len(tb.order), len(tb.declined), maxPlaced)
	}
}

// The attack of issue 20: a requester runs one tiny job to be known, then
// keeps a whole offer held, releasing each hold just before it lapses. It
// comes to owe what it held, gives way to others, and is throttled once
// per crossing of the limit; time lets it back.
func TestBookHoldingWithoutRunningIsThrottled(t *testing.T) {
	cfg := DefaultProviderConfig()
	_, attacker := testPeer(t)
	_, honest := testPeer(t)
	tb := newTestBook(t, cfg, cpuCap(1000))
	tb.invoke(tb.mustPlace(attacker, 10, true))
	tb.ran(attacker, 0.01, time.Second, tb.now)
	if s := tb.standing(attacker, tb.now); s != Known {
		t.Fatalf("after a tiny job: %s, want known", s)
	}
	hold := 9500 * time.Millisecond // released half a second before a 10 s hold lapses
	cycles := 0
	for ; tb.standing(attacker, tb.now) == Known; cycles++ {
		if cycles > 20 {
			t.Fatal("still known after 20 whole holds released unrun")
		}
		pb := tb.mustPlace(attacker, 1000, false)
		tb.now = tb.now.Add(hold)
		if !tb.withdraw(attacker, pb.Request.JobID, tb.now) {
			t.Fatal("the release found no hold")
		}
	}
	// What it held, less what time forgave: 9.5 offer-seconds a cycle,
	// 2.375 of them forgiven from the second on (4 cycles: 30.9 > 30).
	if cycles != 4 || tb.standing(attacker, tb.now) != Throttled || tb.throttledCount() != 1 {
		t.Fatalf("after %d cycles: %s, throttled %d times; want throttled, once, after 4", cycles, tb.standing(attacker, tb.now), tb.throttledCount())
	}
	a := tb.assess(&BidRequest{Requester: attacker}, tb.reg, tb.now)
	if a.Standing != Throttled || a.Throttled || !a.Displaceable.IsZero() {
		t.Fatalf("assessed again: %+v, want throttled, no new crossing, nothing to displace", a)
	}
	// Time forgives: back to known, and the next crossing counts again.
	tb.now = tb.now.Add(10 * time.Second)
	if a := tb.assess(&BidRequest{Requester: attacker}, tb.reg, tb.now); a.Standing != Known || !a.Unthrottled {
		t.Fatalf("10 s later: %+v, want known again", a)
	}
	// Still owing more than the margin, its new hold gives way at once.
	pb := tb.mustPlace(attacker, 1000, false)
	hb, displaced, err := tb.place(honest, 500, true)
	if err != nil || len(displaced) != 1 || displaced[0] != pb {
		t.Fatalf("a newcomer against a requester that owes: displaced %v, %v", displaced, err)
	}
	tb.release(honest, hb.Request.JobID, true, tb.now)
	// Owing nothing any more, its hold beyond what it earned gives way to
	// an honest newcomer once it has held it longer than the margin...
	tb.now = tb.now.Add(10 * time.Minute)
	pb = tb.mustPlace(attacker, 1000, false)
	margin := time.Duration(cfg.IdleHoldMargin * float64(time.Second)) // for a whole offer
	tb.now = tb.now.Add(margin / 2)
	if _, _, err := tb.place(honest, 500, true); !errors.Is(err, capability.ErrInsufficient) {
		t.Fatalf("a newcomer against a hold held unrun for half the margin: %v, want insufficient", err)
	}
	tb.now = tb.now.Add(margin)
	if a := tb.assess(&BidRequest{Requester: honest, Requirements: cpuCap(500)}, tb.reg, tb.now); a.Displaceable.CPU.MilliCores != 1000 {
		t.Fatalf("the newcomer may displace %s, want the whole hold", a.Displaceable)
	}
	_, displaced, err = tb.place(honest, 500, true)
	if err != nil || len(displaced) != 1 || displaced[0] != pb {
		t.Fatalf("a newcomer against a hold held unrun past the margin: displaced %v, %v", displaced, err)
	}
	// ...and, pushed aside, it owes what it held; it cannot take the room back.
	if a := tb.assess(&BidRequest{Requester: attacker}, tb.reg, tb.now); a.Owed < 1.49*cfg.IdleHoldMargin || !a.Displaceable.IsZero() {
		t.Fatalf("the displaced attacker: %+v, want 3 offer-seconds owed, nothing to displace", a)
	}
}

// Honest patterns stay known: a requester that wins one job in three here
// and releases the others soon after bidding, one that always loses here,
// one that runs long jobs and holds much.
func TestBookHonestReleasesAreNotThrottled(t *testing.T) {
	cfg := DefaultProviderConfig()
	for _, tc := range []struct {
		name      string
		cpu       uint64
		held, gap time.Duration // a bid open for held, then the next job gap later
		winEvery  int           // invoked one job in this many (0: never)
		run       time.Duration
		byTime    bool // time forgives too
	}{
		{"wins one in three, a machine so slow that bids wait 5 s, nothing forgiven by time", 500, 5 * time.Second, 0, 3, 10 * time.Millisecond, false},
		{"wins one in three, short jobs", 500, 300 * time.Millisecond, 100 * time.Millisecond, 3, 50 * time.Millisecond, true},
		{"always loses here", 500, 500 * time.Millisecond, 500 * time.Millisecond, 0, 0, true},
		{"whole offers, slow bidding on a busy machine, wins one in three", 1000, 2 * time.Second, 2 * time.Second, 3, time.Second, true},
		{"long jobs, every one here", 1000, 3 * time.Second, 0, 1, time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, p := testPeer(t)
			cfg := cfg
			if !tc.byTime {
				cfg.IdleHoldForgiven = 0
			}
			tb := newTestBook(t, cfg, cpuCap(1000))
			maxOwed := 0.0
			for job := 1; job <= 2000; job++ {
				pb := tb.mustPlace(p, tc.cpu, tb.standing(p, tb.now) == Newcomer)
				tb.now = tb.now.Add(tc.held)
				maxOwed = max(maxOwed, tb.assess(&BidRequest{Requester: p}, tb.reg, tb.now).Owed)
				if tc.winEvery > 0 && job%tc.winEvery == 0 {
					tb.invoke(pb)
					tb.now = tb.now.Add(tc.run)
					tb.ran(p, float64(tc.cpu)/1000, tc.run, tb.now)
				} else if !tb.withdraw(p, pb.Request.JobID, tb.now) {
					t.Fatal("the release found no hold")
				}
				tb.now = tb.now.Add(tc.gap)
				if s := tb.standing(p, tb.now); s == Throttled || s == Lapsing {
					t.Fatalf("job %d: %s", job, s)
				}
			}
			t.Logf("owed at most %.2f offer-seconds (limit %v)", maxOwed, cfg.IdleHoldLimit)
			if tb.throttledCount() != 0 {
				t.Fatal("throttled")
			}
		})
	}
}

// Who gives way to whom: a pure rule over what each requester owes, holds
// and earned.
func TestMayDisplace(t *testing.T) {
	cfg := DefaultProviderConfig()
	newcomer := account{}
	known := account{Known: true, Holding: 0.5}
	ran := account{Known: true, Holding: 0.5, Earned: 0.5} // what it asks for included
	owing := func(a account, owed float64) account { a.Owed = owed; return a }
	fresh := func(a account) account { a.Fresh = true; return a }
	m := cfg.IdleHoldMargin
	earned := account{Known: true, Holding: 0.5, Earned: 0.5, Owed: 20}
	pooled := func(a account) account { a.Pooled = 2.5 * m; return a }
	ranFor := func(a account, ran float64) account { a.Ran = ran; return a }
	tiny := ranFor(known, 0.01) // known by one tiny job
	for _, tc := range []struct {
		name string
		r, q account
		want bool
	}{
		{"a requester that earned what it asks for, a newcomer", ran, newcomer, true},
		{"a known requester, a newcomer", known, newcomer, true},
		{"a known requester that owes more within the margin, a newcomer", owing(known, 0.9*m), newcomer, true},
		{"a requester that earned what it asks for, a known requester", ran, known, false},
		{"a newcomer, a known requester", newcomer, known, false},
		{"a newcomer, a newcomer", newcomer, newcomer, false},
		{"a known requester, a known requester", known, known, false},
		{"a newcomer, a known requester that owes more by the margin", newcomer, owing(known, 1.1*m), true},
		{"a newcomer, a known requester that owes more within the margin", newcomer, owing(known, 0.9*m), false},
		{"a requester that owes more by the margin, a newcomer", owing(ran, 2.1*m), owing(newcomer, m), false},
		{"a known requester, one that owes more", owing(known, 1), owing(known, 1.1+m), true},
		{"a throttled requester, a newcomer", owing(known, 31), newcomer, false},
		{"anyone, a throttled requester", owing(known, 29), owing(earned, 31), true},
		{"anyone, a hold within what was earned", newcomer, earned, false},
		{"anyone, a hold beyond what was earned", newcomer, account{Known: true, Holding: 0.6, Earned: 0.5, Owed: 20}, true},
		{"a known requester, a newcomer's fresh hold", known, fresh(newcomer), false},
		{"a requester that earned what it asks for, a newcomer's fresh hold", ran, fresh(newcomer), true},
		{"a newcomer, a fresh hold that owes more by the margin", newcomer, fresh(owing(known, 1.1*m)), true},
		{"anyone, a throttled requester's fresh hold", known, fresh(owing(newcomer, 31)), true},
		// While the known that earned little owe much together (Pooled):
		{"one of them, another's hold past FreshHold", pooled(tiny), pooled(tiny), false},
		{"one of them that ran no more, another's hold", pooled(ranFor(known, 0.03)), pooled(tiny), false},
		{"one of them that ran far more, another's fresh hold", pooled(ranFor(known, 0.05)), fresh(pooled(tiny)), true},
		{"a newcomer, a fresh hold of one of them", newcomer, fresh(pooled(tiny)), true},
		{"a newcomer, a fresh hold of one that earned its share", newcomer, fresh(account{Known: true, Holding: 0.5, Earned: 0.5, Ran: 60}), false},
		{"one of them, a newcomer's hold past FreshHold", pooled(tiny), newcomer, false},
		{"one of them that ran far more, a newcomer's hold past FreshHold", pooled(ranFor(known, 1)), newcomer, false},
		{"a newcomer, a newcomer's hold past FreshHold", pooled(newcomer), pooled(newcomer), false},
		{"a known requester when they owe little together, a newcomer's hold past FreshHold", ranFor(known, 0.01), newcomer, true},
	} {
		if got := mayDisplace(tc.r, tc.q, cfg); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct{ ran, want float64 }{{0, 0}, {0.01, 0.01 / 120}, {60, 0.5}, {120, 1}, {1e6, 1}} {
		if got := earnedShare(tc.ran, cfg); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("earned share after %v offer-seconds: %v, want %v", tc.ran, got, tc.want)
		}
	}
	reg := capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB, Disk: capability.GiB}
	if got := dominantShare(capability.Capability{CPU: capability.CPU{MilliCores: 100}, Memory: capability.GiB / 2}, reg); got != 0.5 {
		t.Errorf("dominant share %v, want 0.5 (memory)", got)
	}
}

// Fifty identities, each known by one tiny job, ask for the whole offer
// in turn: an honest newcomer's bid, placed in a moment the offer was
// free, stands against all of them until it is invoked (FreshHold), and
// only then gives way to them as before.
func TestBookFreshNewcomerBidStandsAgainstIdentitiesKnownByATinyJob(t *testing.T) {
	cfg := DefaultProviderConfig()
	tb := newTestBook(t, cfg, cpuCap(1000))
	attackers := make([]peer.ID, 50)
	for i := range attackers {
		_, attackers[i] = testPeer(t)
		tb.invoke(tb.mustPlace(attackers[i], 10, true))
		tb.ran(attackers[i], 0.01, time.Second, tb.now)
	}
	_, honest := testPeer(t)
	hb := tb.mustPlace(honest, 500, true)
	tb.now = tb.now.Add(cfg.FreshHold / 2)
	for _, a := range attackers {
		if a := tb.assess(&BidRequest{Requester: a, Requirements: cpuCap(1000)}, tb.reg, tb.now); !a.Displaceable.IsZero() {
			t.Fatalf("an identity known by a tiny job may displace %s of a fresh newcomer's hold", a.Displaceable)
		}
		if _, _, err := tb.place(a, 1000, false); !errors.Is(err, capability.ErrInsufficient) {
			t.Fatalf("an identity known by a tiny job against a fresh newcomer's hold: %v, want insufficient", err)
		}
	}
	if _, err := tb.claim(honest, hb.Request.JobID, tb.now); err != nil {
		t.Fatalf("the honest newcomer's invocation: %v", err)
	}
	// Not invoked in time, a newcomer's hold gives way to known
	// requesters as before.
	_, late := testPeer(t)
	lb := tb.mustPlace(late, 500, true)
	tb.now = tb.now.Add(cfg.FreshHold)
	_, displaced, err := tb.place(attackers[0], 500, false)
	if err != nil || len(displaced) != 1 || displaced[0] != lb {
		t.Fatalf("a known requester against a newcomer's hold past FreshHold: displaced %v, %v", displaced, err)
	}
}

// Fifty identities, each known by one tiny job, hold the whole offer in
// turns and release each hold unrun. Each owes little, but together they
// owe what they held: once that is more than the margin, their holds past
// FreshHold give way to an honest newcomer, which owes nothing.
func TestBookIdentitiesTakingTurnsOweTogether(t *testing.T) {
	cfg := DefaultProviderConfig()
	tb := newTestBook(t, cfg, cpuCap(1000))
	attackers := make([]peer.ID, 50)
	for i := range attackers {
		_, attackers[i] = testPeer(t)
		tb.invoke(tb.mustPlace(attackers[i], 10, true))
		tb.ran(attackers[i], 0.01, time.Second, tb.now)
	}
	for turn := range 30 {
		a := attackers[turn%len(attackers)]
		pb := tb.mustPlace(a, 1000, false)
		tb.now = tb.now.Add(4500 * time.Millisecond)
		if !tb.withdraw(a, pb.Request.JobID, tb.now) {
			t.Fatalf("turn %d: the hold was not there to release", turn)
		}
	}
	for _, a := range attackers {
		if s := tb.standing(a, tb.now); s == Throttled {
			t.Fatalf("an identity that held once or twice is throttled: the rule would not need the pool")
		}
	}
	// Even a fresh hold of theirs gives way to a newcomer, but not to
	// another of them.
	holder := attackers[30]
	tb.mustPlace(holder, 1000, false)
	if _, _, err := tb.place(attackers[31], 1000, false); !errors.Is(err, capability.ErrInsufficient) {
		t.Fatalf("another identity against a fresh hold: %v, want insufficient", err)
	}
	_, honest := testPeer(t)
	pb, displaced, err := tb.place(honest, 500, true)
	if err != nil || len(displaced) != 1 || displaced[0].Request.Requester != holder {
		t.Fatalf("an honest newcomer beside identities that together held the offer unrun for 135 s: displaced %v, %v; want the holder's hold pushed aside", displaced, err)
	}
	if _, err := tb.claim(honest, pb.Request.JobID, tb.now); err != nil {
		t.Fatalf("the honest newcomer's invocation: %v", err)
	}
}

// holderAttack is the attack of node's TestAKnownRequesterCannotHoldEveryOffer
// on one provider's book, on a hand-moved clock: identities, each known by
// a tiny job, ask for the whole offer in turn every 10 ms (100 a second
// together) and release each hold half a second before it would lapse,
// while an honest requester submits jobs of half the offer, invokes each
// bid latency after it was placed, and runs it for 100 ms (five times what
// each identity's tiny job ran: 10 millicores for 1 s). It returns how
// many of the honest jobs got a bid, and how many of those were invoked.
func holderAttack(t *testing.T, cfg ProviderConfig, identities, jobs int, latency time.Duration) (bid, invoked int) {
	t.Helper()
	tb := newTestBook(t, cfg, cpuCap(1000))
	const hold = 7 * time.Second // a local network's HoldWindow and HoldGrace
	attackers := make([]peer.ID, identities)
	for i := range attackers {
		_, attackers[i] = testPeer(t)
		tb.invoke(tb.mustPlace(attackers[i], 10, true))
		tb.ran(attackers[i], 0.01, time.Second, tb.now)
	}
	_, honest := testPeer(t)
	type release struct {
		at  time.Time
		who peer.ID
		job string
	}
	var releases []release
	tick := func() {
		tb.now = tb.now.Add(10 * time.Millisecond)
		for len(releases) > 0 && !releases[0].at.After(tb.now) {
			tb.withdraw(releases[0].who, releases[0].job, tb.now)
			releases = releases[1:]
		}
	}
	asked := 0
	ask := func() {
		a := attackers[asked%len(attackers)]
		asked++
		pb := tb.bid(a, 1000, false, hold)
		if _, err := tb.book.place(pb, tb.reg, tb.now); err == nil {
			releases = append(releases, release{tb.now.Add(hold - 500*time.Millisecond), a, pb.Request.JobID})
		}
	}
	// The attack under way: every identity has held the offer.
	for range 2 * identities * int(hold/(10*time.Millisecond)) / 10 {
		tick()
		ask()
	}
	for range jobs {
		pb := tb.bid(honest, 500, tb.standing(honest, tb.now) == Newcomer, hold)
		_, err := tb.book.place(pb, tb.reg, tb.now)
		for end := tb.now.Add(latency); tb.now.Before(end); {
			tick()
			ask()
		}
		if err != nil {
			continue
		}
		bid++
		if _, err := tb.claim(honest, pb.Request.JobID, tb.now); err != nil {
			continue
		}
		invoked++
		id := HoldID(honest, pb.Request.JobID)
		if err := tb.ledger.Promote(id, "alloc-"+pb.Request.JobID, nil); err != nil {
			t.Fatal(err)
		}
		tb.invoked(honest, pb.Request.JobID, tb.now)
		for end := tb.now.Add(100 * time.Millisecond); tb.now.Before(end); {
			tick()
			ask()
		}
		if err := tb.ledger.Unlock("alloc-" + pb.Request.JobID); err != nil {
			t.Fatal(err)
		}
		tb.ran(honest, 0.5, 100*time.Millisecond, tb.now)
		for range 50 { // half a second to the next job
			tick()
			ask()
		}
	}
	return bid, invoked
}

// Fifty identities, each known by one tiny job, hold the whole offer in
// turns and release each hold unrun just before it lapses; an honest
// requester new to the provider gets a bid for every job and invokes it,
// however slow its invocations are.
func TestBookFiftyIdentitiesCannotKeepAnHonestRequesterOut(t *testing.T) {
	for _, latency := range []time.Duration{50 * time.Millisecond, 400 * time.Millisecond, 2 * time.Second} {
		t.Run(fmt.Sprint(latency), func(t *testing.T) {
			const jobs = 20
			bid, invoked := holderAttack(t, DefaultProviderConfig(), 50, jobs, latency)
			if bid != jobs || invoked != jobs {
				t.Fatalf("invoking %v after the bid: %d of %d honest jobs got a bid, %d were invoked", latency, bid, jobs, invoked)
			}
		})
	}
}
