package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/p2p"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func ev(at time.Time, o Outcome) OutcomeEvent { return OutcomeEvent{Time: at, Outcome: o} }

func TestDecayHalvesEachHalfLife(t *testing.T) {
	h := 3 * 24 * time.Hour
	for _, c := range []struct {
		age  time.Duration
		want float64
	}{{0, 1}, {-time.Hour, 1}, {h, 0.5}, {2 * h, 0.25}, {10 * h, 1.0 / 1024}} {
		if got := decay(c.age, h); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("decay(%v) = %v, want %v", c.age, got, c.want)
		}
	}
}

func TestTrustCountsCompletionsAndHoldsFailuresAgainst(t *testing.T) {
	h := 3 * 24 * time.Hour
	three := []OutcomeEvent{ev(t0, OutcomeCompleted), ev(t0, OutcomeCompleted), ev(t0, OutcomeCompleted)}
	if got := trust(three, t0, h); got != 3 {
		t.Errorf("three completions now: trust %v, want 3", got)
	}
	if got := trust(three, t0.Add(h), h); got != 1.5 {
		t.Errorf("three completions a half-life ago: trust %v, want 1.5", got)
	}
	mixed := append(three, ev(t0, OutcomeRefused), ev(t0, OutcomeExitedNonZero), ev(t0, OutcomeStalled))
	if got := trust(mixed, t0, h); got != 3-1-0.5-2 {
		t.Errorf("three completions, a refusal, a failure and a stall: trust %v, want %v", got, 3-1-0.5-2)
	}
	for _, c := range []struct {
		trust float64
		tier  int
	}{{-2, 0}, {0, 0}, {0.9, 0}, {1, 1}, {1.9, 1}, {2, 2}, {3.5, 2}, {4, 3}, {100, 7}} {
		if got := trustTier(c.trust); got != c.tier {
			t.Errorf("trustTier(%v) = %d, want %d", c.trust, got, c.tier)
		}
	}
}

func TestAvoidanceCoolDownGrowsWithRepeatOffences(t *testing.T) {
	cfg := DefaultReputationConfig()
	for _, c := range []struct {
		name   string
		events []OutcomeEvent
		now    time.Time
		until  time.Time
		why    string
	}{
		{"nothing but good", []OutcomeEvent{ev(t0, OutcomeCompleted), ev(t0, OutcomeExitedNonZero), ev(t0, OutcomeRefused)}, t0, time.Time{}, ""},
		{"one stall", []OutcomeEvent{ev(t0, OutcomeCompleted), ev(t0, OutcomeStalled)}, t0.Add(time.Minute), t0.Add(time.Hour), "stalled"},
		{"one stall, cool-down over", []OutcomeEvent{ev(t0, OutcomeStalled)}, t0.Add(time.Hour), time.Time{}, ""},
		{"second offence doubles", []OutcomeEvent{ev(t0, OutcomeLost), ev(t0.Add(2*time.Hour), OutcomeBadReceipt)}, t0.Add(2 * time.Hour), t0.Add(4 * time.Hour), "bad-receipt (offence 2)"},
		{"third offence doubles again", []OutcomeEvent{ev(t0, OutcomeOverran), ev(t0, OutcomeDisagreed), ev(t0, OutcomeStalled)}, t0, t0.Add(4 * time.Hour), "stalled (offence 3)"},
		{"an offence long past counts no more", []OutcomeEvent{ev(t0, OutcomeStalled), ev(t0.Add(30*24*time.Hour), OutcomeLost)}, t0.Add(30 * 24 * time.Hour), t0.Add(30*24*time.Hour + time.Hour), "lost"},
		{"capped", func() []OutcomeEvent {
			var evs []OutcomeEvent
			for range 40 {
				evs = append(evs, ev(t0, OutcomeStalled))
			}
			return evs
		}(), t0, t0.Add(cfg.MaxCooldown), "stalled (offence 40)"},
	} {
		until, why := avoidance(c.events, c.now, cfg)
		if !until.Equal(c.until) || why != c.why {
			t.Errorf("%s: avoided until %v (%q), want %v (%q)", c.name, until, why, c.until, c.why)
		}
	}
}

func TestRankingPutsWhatWasSeenBeforeAClaimedScore(t *testing.T) {
	req := &BidRequest{Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}}}
	braggart := &Bid{Provider: "braggart", Price: 1, Score: 1e9}
	known := &Bid{Provider: "known", Price: 1, Score: 10}
	tiers := map[peer.ID]int{"known": 2}
	tier := func(p peer.ID) int { return tiers[p] }
	if c := DefaultPreferences().Comparator()(req, braggart, known); c >= 0 {
		t.Fatalf("without a record the claimed score wins (%d): the test shows nothing", c)
	}
	if c := DefaultPreferences().comparatorWith(tier)(req, known, braggart); c >= 0 {
		t.Errorf("a provider seen completing jobs ranks below one claiming a score of 1e9 (%d)", c)
	}
	// Among providers with similar records the score decides.
	tiers["braggart"] = 2
	if c := DefaultPreferences().comparatorWith(tier)(req, braggart, known); c >= 0 {
		t.Errorf("same record: the higher score should rank first (%d)", c)
	}
	// The user's first criterion still comes first.
	cheap := &Bid{Provider: "cheap", Price: 0.5}
	if c := DefaultPreferences().comparatorWith(tier)(req, cheap, known); c >= 0 {
		t.Errorf("ranking by price first: the cheaper unknown provider should win (%d)", c)
	}
	// A ranking without "score" still prefers the better record to the ID.
	byPrice := Preferences{Ranking: []string{"price"}}
	tiers["braggart"] = 0
	if c := byPrice.comparatorWith(tier)(req, known, braggart); c >= 0 {
		t.Errorf("ranking by price alone, same price: the better record should rank first (%d)", c)
	}
}

func TestOutcomeOfAFollow(t *testing.T) {
	for _, c := range []struct {
		res  *Result
		err  error
		want Outcome
	}{
		{&Result{State: StateCompleted}, nil, OutcomeCompleted},
		{&Result{State: StateCompleted, ExitCode: 2}, nil, OutcomeExitedNonZero},
		{&Result{State: StateFailed}, nil, OutcomeExitedNonZero},
		{&Result{State: StateCancelled}, nil, ""},
		{nil, fmt.Errorf("x: %w", ErrProviderStalled), OutcomeStalled},
		{nil, fmt.Errorf("x: %w", ErrProviderOverran), OutcomeOverran},
		{nil, fmt.Errorf("x: %w", ErrProviderLost), OutcomeLost},
		{nil, context.Canceled, ""},
	} {
		if got := outcomeOf(c.res, c.err); got != c.want {
			t.Errorf("outcomeOf(%+v, %v) = %q, want %q", c.res, c.err, got, c.want)
		}
	}
	if !errors.Is(ErrProviderStalled, ErrProviderLost) || !errors.Is(ErrProviderOverran, ErrProviderLost) {
		t.Error("a stall and an overrun must read as a lost provider to the retry logic")
	}
	if got := runLimit(10*time.Second, 5*time.Second); got != 16*time.Second {
		t.Errorf("run limit of a 10 s job with a 5 s margin: %v, want 16s", got)
	}
}

func TestLosersStayAvoidedForTheWholeJobRefusersForOneAttempt(t *testing.T) {
	next := keepLosers(map[peer.ID]bool{"lost": true, "refused": false})
	if !next["lost"] || next["refused"] || len(next) != 1 {
		t.Errorf("carried to the next attempt: %v, want only the provider that lost the job", next)
	}
}

func TestReputationBoundsItsMemoryAndReloadsWhatItSaved(t *testing.T) {
	cfg := DefaultReputationConfig()
	cfg.MaxEvents, cfg.MaxProviders = 3, 2
	saved := map[peer.ID]ProviderRecord{}
	save := func(rec ProviderRecord) error {
		if len(rec.Events) == 0 {
			delete(saved, rec.Provider)
		} else {
			saved[rec.Provider] = rec
		}
		return nil
	}
	r, err := NewReputation(cfg, nil, save, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	r.now = func() time.Time { return now }
	_, a := testPeer(t)
	_, b := testPeer(t)
	_, c := testPeer(t)
	for range 5 {
		r.Record(a, OutcomeCompleted, "j")
	}
	now = now.Add(time.Minute)
	r.Record(b, OutcomeStalled, "j2")
	if n := r.Count(a, OutcomeCompleted); n != 3 {
		t.Errorf("kept %d events of a, want the newest 3", n)
	}
	now = now.Add(time.Minute)
	r.Record(c, OutcomeCompleted, "j3")
	if _, ok := saved[a]; ok || r.Count(a, OutcomeCompleted) != 0 {
		t.Errorf("a, seen least recently, should be forgotten (and deleted from the store) when a third provider comes")
	}
	if _, why, ok := r.Avoided(b); !ok || !strings.Contains(why, "stalled") {
		t.Errorf("b stalled a minute ago: avoided %v (%q), want avoided for the stall", ok, why)
	}
	var records []ProviderRecord
	for _, rec := range saved {
		records = append(records, rec)
	}
	again, err := NewReputation(cfg, records, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	again.now = r.now
	if got, want := fmt.Sprint(again.Standings()), fmt.Sprint(r.Standings()); got != want {
		t.Errorf("reloaded standings %s, want %s", got, want)
	}
	if st := again.Standings(); len(st) != 2 || st[0].Provider != b || st[0].AvoidedUntil.IsZero() {
		t.Errorf("standings %+v: want the avoided provider first", st)
	}
	_, err = NewReputation(cfg, []ProviderRecord{{Provider: b, Events: []OutcomeEvent{ev(t0, "ate-the-job")}}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "ate-the-job") {
		t.Errorf("a record with an unknown outcome: %v, want an error naming it", err)
	}
}

// misbehaving is a provider over a fake network whose backend and stream
// handlers a test replaces.
type misbehaving struct {
	*slotBackend
	id      peer.ID
	host    *fakeHost
	cancels atomic.Int32
}

func (m *misbehaving) Cancel(id string, _ peer.ID) error {
	m.cancels.Add(1)
	m.end(id)
	return nil
}

// reputationMesh starts a requester with cfg and the given providers; it
// returns the requester.
func reputationMesh(t *testing.T, cfg Config, providers ...*misbehaving) *Service {
	t.Helper()
	fn := newFakeNet()
	t.Cleanup(fn.Close)
	start := func(b Backend) (*Service, peer.ID, *fakeHost) {
		key, id := testPeer(t)
		h := fn.host(id)
		withKey(b, key) // honest providers seal receipts, as nodes do
		svc, err := NewService(h, key, b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		return svc, id, h
	}
	requester, _, _ := start(&fakeBackend{holds: map[string]*fakeHold{}, allocs: map[string][]Event{}})
	for _, p := range providers {
		_, p.id, p.host = start(p)
	}
	return requester
}

// silence makes p take allocation streams and never say a word on them,
// until the requester ends the stream.
func silence(t *testing.T, p *misbehaving) {
	t.Helper()
	if err := p.host.HandleStream(ProtocolAllocation, func(_ context.Context, _ peer.ID, s p2p.FramedStream) {
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
}

// A provider that bids best on everything (cheapest, a claimed score of
// 1e9), accepts and then says nothing: the first job is given up on at the
// stall timeout (the only timer short enough to end it, LostAfter being
// ten minutes) and runs elsewhere; the staller is never invoked again, and
// all 20 jobs complete.
func TestSilentProviderCostsOneStallThenIsNotInvokedAgain(t *testing.T) {
	cfg := LocalConfig()
	cfg.Requester.StallTimeout = time.Second
	cfg.Requester.LostAfter = 10 * time.Minute
	cfg.Reputation.Cooldown, cfg.Reputation.MaxCooldown = time.Hour, time.Hour // not to end on a slow machine before the 20th job
	staller := &misbehaving{slotBackend: newSlotBackend(4000)}
	staller.score = 1e9
	honest := &misbehaving{slotBackend: newSlotBackend(4000)}
	honest.auto = true
	honest.price = capability.PriceInformation{PerCoreHour: 1}
	svc := reputationMesh(t, cfg, staller, honest)
	silence(t, staller)

	var stalls atomic.Int32
	for i := range 20 {
		res, err := svc.Submit(context.Background(), wasmJob(fmt.Sprint(i)), func(p Progress) {
			if p.Kind == ProgressRetry && strings.Contains(p.Message, ErrProviderStalled.Error()) {
				stalls.Add(1)
			}
		})
		if err != nil || res.State != StateCompleted || res.ExitCode != 0 {
			t.Fatalf("job %d: %+v, %v; want completed", i, res, err)
		}
	}
	if n := len(staller.accepted()); n != 1 {
		t.Errorf("the staller was invoked %d times, want once", n)
	}
	if n := len(honest.accepted()); n != 20 {
		t.Errorf("the honest provider ran %d jobs, want 20", n)
	}
	if n := stalls.Load(); n != 1 {
		t.Errorf("%d retries after a stall, want 1", n)
	}
	rep := svc.Reputation()
	if n := rep.Count(staller.id, OutcomeStalled); n != 1 {
		t.Errorf("the staller's record shows %d stalls, want 1", n)
	}
	if _, why, ok := rep.Avoided(staller.id); !ok || !strings.Contains(why, "stalled") {
		t.Errorf("the staller is avoided: %v (%q), want avoided for its stall", ok, why)
	}
	if n := rep.Count(honest.id, OutcomeCompleted); n != 20 {
		t.Errorf("the honest provider's record shows %d completions, want 20", n)
	}
}

// A provider that accepts, starts the job and then sends heartbeats for
// ever: the requester ends the allocation at the job's own deadline,
// cancels it there, and runs the job elsewhere.
func TestEndlessProviderIsStoppedAtTheJobsDeadline(t *testing.T) {
	endless := &misbehaving{slotBackend: newSlotBackend(4000)}
	honest := &misbehaving{slotBackend: newSlotBackend(4000)}
	honest.auto = true
	honest.price = capability.PriceInformation{PerCoreHour: 1}
	svc := reputationMesh(t, LocalConfig(), endless, honest)
	sub := wasmJob("x")
	sub.Job.Duration = seconds.Duration(time.Second)
	var retries []string
	res, err := svc.Submit(context.Background(), sub, func(p Progress) {
		if p.Kind == ProgressRetry {
			retries = append(retries, p.Message)
		}
	})
	if err != nil || res.State != StateCompleted {
		t.Fatalf("%+v, %v; want completed on the honest provider", res, err)
	}
	if len(endless.accepted()) != 1 || len(honest.accepted()) != 1 {
		t.Errorf("invocations: endless %d, honest %d; want one each", len(endless.accepted()), len(honest.accepted()))
	}
	if len(retries) != 1 || !strings.Contains(retries[0], ErrProviderOverran.Error()) {
		t.Errorf("retries %q: want one, after the job ran past its deadline", retries)
	}
	if n := svc.Reputation().Count(endless.id, OutcomeOverran); n != 1 {
		t.Errorf("the endless provider's record shows %d overruns, want 1", n)
	}
	waitFor(t, "the overrunning allocation cancelled", func() bool { return endless.cancels.Load() > 0 })
}

// A job whose only bidder is avoided is not run there: it fails for want of
// a bid, and the summary says the bidder is avoided, and where to look.
func TestOnlyBidderAvoidedIsNotInvokedAndTheSummarySaysWhy(t *testing.T) {
	offender := &misbehaving{slotBackend: newSlotBackend(4000)}
	offender.auto = true
	svc := reputationMesh(t, LocalConfig(), offender)
	svc.Reputation().Record(offender.id, OutcomeBadReceipt, "an-earlier-job")
	_, err := svc.Submit(context.Background(), wasmJob("x"), nil)
	var nm *NoMatchError
	if !errors.Is(err, ErrNoBids) || !errors.As(err, &nm) || !strings.Contains(nm.NoMatch.String(), "is avoided by this requester") {
		t.Fatalf("submit: %v; want no acceptable bid, the bidder being avoided", err)
	}
	if n := len(offender.accepted()); n != 0 {
		t.Errorf("the avoided provider was invoked %d times", n)
	}
}
