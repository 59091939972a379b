package orchestrator

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A requester that remembers. A provider on an open mesh is a stranger,
// and what it says of itself (its price, its benchmark score) costs it
// nothing to make up. So the requester keeps, per provider, what it saw
// that provider do, and ranks bids with it: a provider that stalled, ran
// past its deadline, was lost or cheated is not invoked again for a
// cool-down that grows with each repeat, whatever it bids; among the rest,
// a record of completed jobs counts before a claimed score. Everything
// here is a pure function of the recorded events and the time, so that it
// is tested in milliseconds; Reputation only holds the events, under one
// lock, and hands each changed record to its store.

// Outcome is what one invocation of a provider came to, as its requester
// saw it.
type Outcome string

// Outcomes. They are stable, for scripts and the datastore.
const (
	// OutcomeCompleted: the job ran and exited 0.
	OutcomeCompleted Outcome = "completed"
	// OutcomeExitedNonZero: the job ran and failed (exit code not 0, or
	// failed on the provider). Most often the job's own doing: it only
	// lowers the provider's rank a little.
	OutcomeExitedNonZero Outcome = "exited-nonzero"
	// OutcomeRefused: the provider bid, then refused the invocation or
	// did not answer it.
	OutcomeRefused Outcome = "refused"
	// OutcomeLost: the provider stopped answering while the job ran.
	OutcomeLost Outcome = "lost"
	// OutcomeStalled: the provider accepted the job, then sent nothing
	// (no start, no heartbeat) within the stall timeout.
	OutcomeStalled Outcome = "stalled"
	// OutcomeOverran: the allocation was still going at the requester's
	// own deadline for it (the job's duration plus a margin).
	OutcomeOverran Outcome = "overran"
	// OutcomeDisagreed: a replica's result disagreed with the majority.
	OutcomeDisagreed Outcome = "disagreed"
	// OutcomeBadReceipt: the provider's execution receipt did not verify.
	OutcomeBadReceipt Outcome = "bad-receipt"
)

// Outcomes lists every outcome, in the order a record shows them.
var Outcomes = []Outcome{OutcomeCompleted, OutcomeExitedNonZero, OutcomeRefused, OutcomeLost, OutcomeStalled, OutcomeOverran, OutcomeDisagreed, OutcomeBadReceipt}

// Valid reports whether o is one of Outcomes.
func (o Outcome) Valid() bool { return slices.Contains(Outcomes, o) }

// offence reports whether o is one a provider is avoided for: it cost the
// job time (lost, stalled, overran) or gave a result that cannot be
// trusted (disagreed, bad receipt).
func (o Outcome) offence() bool {
	switch o {
	case OutcomeLost, OutcomeStalled, OutcomeOverran, OutcomeDisagreed, OutcomeBadReceipt:
		return true
	}
	return false
}

// ReputationConfig tunes how long the requester remembers and avoids.
type ReputationConfig struct {
	// HalfLife: an event counts half as much this long after it happened.
	HalfLife time.Duration
	// Cooldown is how long a provider is avoided after its first offence;
	// each repeat doubles it (the earlier offences counted as they have
	// decayed), up to MaxCooldown.
	Cooldown    time.Duration
	MaxCooldown time.Duration
	// MaxEvents bounds the events kept per provider (the newest stay), and
	// MaxProviders the providers remembered (the least recently seen go).
	MaxEvents    int
	MaxProviders int
}

// DefaultReputationConfig remembers for days and avoids an offender for an
// hour, then two, four, up to three days.
func DefaultReputationConfig() ReputationConfig {
	return ReputationConfig{HalfLife: 3 * 24 * time.Hour, Cooldown: time.Hour, MaxCooldown: 3 * 24 * time.Hour, MaxEvents: 64, MaxProviders: 4096}
}

// Validate checks the settings.
func (c ReputationConfig) Validate() error {
	var errs []error
	if c.HalfLife <= 0 {
		errs = append(errs, fmt.Errorf("reputation half-life %v: must be positive", c.HalfLife))
	}
	if c.Cooldown <= 0 || c.MaxCooldown < c.Cooldown {
		errs = append(errs, fmt.Errorf("reputation cool-down %v to %v: want more than 0, the most no less than the first", c.Cooldown, c.MaxCooldown))
	}
	if c.MaxEvents <= 0 || c.MaxProviders <= 0 {
		errs = append(errs, fmt.Errorf("reputation bounds %d events per provider, %d providers: want at least 1 each", c.MaxEvents, c.MaxProviders))
	}
	return errors.Join(errs...)
}

// OutcomeEvent is one thing a provider was seen to do.
type OutcomeEvent struct {
	Time    time.Time `json:"time"`
	Outcome Outcome   `json:"outcome"`
	JobID   string    `json:"job_id,omitempty"`
}

// ProviderRecord is what a requester keeps of one provider: its events,
// oldest first. A record with no events is one to forget.
type ProviderRecord struct {
	Provider peer.ID        `json:"provider"`
	Events   []OutcomeEvent `json:"events"`
}

// Check says what is wrong with a record read back from storage.
func (r ProviderRecord) Check() error {
	if err := r.Provider.Validate(); err != nil {
		return fmt.Errorf("provider record: provider %q: %w", r.Provider, err)
	}
	for i, e := range r.Events {
		if !e.Outcome.Valid() {
			return fmt.Errorf("provider record of %s: event %d: outcome %q, want one of %v", r.Provider, i, e.Outcome, Outcomes)
		}
	}
	return nil
}

// ProviderStanding is a provider's record as `dms providers` shows it.
type ProviderStanding struct {
	Provider peer.ID `json:"provider"`
	// Counts are the kept events by outcome.
	Counts   map[Outcome]int `json:"counts"`
	LastSeen time.Time       `json:"last_seen"`
	// Trust is the decayed record that ranks bids: completions less
	// refusals, failures and offences, each weighed by its age.
	Trust float64 `json:"trust"`
	// AvoidedUntil is set while the provider is not invoked; Why says for
	// what.
	AvoidedUntil time.Time `json:"avoided_until,omitzero"`
	Why          string    `json:"why,omitempty"`
}

// decay is how much an event of age d still counts.
func decay(d, halfLife time.Duration) float64 {
	if d <= 0 {
		return 1
	}
	return math.Exp2(-float64(d) / float64(halfLife))
}

// trust weighs a provider's events at now: each completion counts 1, an
// exit non-zero -1/2 (most often the job's own fault), a refusal -1 and an
// offence -2, each decayed by its age.
func trust(events []OutcomeEvent, now time.Time, halfLife time.Duration) float64 {
	t := 0.0
	for _, e := range events {
		w := decay(now.Sub(e.Time), halfLife)
		switch {
		case e.Outcome == OutcomeCompleted:
			t += w
		case e.Outcome == OutcomeExitedNonZero:
			t -= w / 2
		case e.Outcome == OutcomeRefused:
			t -= w
		case e.Outcome.offence():
			t -= 2 * w
		}
	}
	return t
}

// trustTier buckets trust so that providers with similar records tie, and
// the bid itself (its score) decides between them: nothing known or worse,
// then 1, 2-3, 4-7... completions to the good.
func trustTier(t float64) int {
	if t < 1 {
		return 0
	}
	return 1 + int(math.Log2(t))
}

// avoidance says until when a provider with these events is avoided at
// now, and why; a zero time when it is not. The latest offence sets it:
// a cool-down of cfg.Cooldown doubled for each earlier offence, counted as
// it had decayed by then, up to cfg.MaxCooldown.
func avoidance(events []OutcomeEvent, now time.Time, cfg ReputationConfig) (time.Time, string) {
	last := -1
	for i, e := range events {
		if e.Outcome.offence() && (last < 0 || !e.Time.Before(events[last].Time)) {
			last = i
		}
	}
	if last < 0 {
		return time.Time{}, ""
	}
	latest := events[last]
	prior := 0.0
	for i, e := range events {
		if i != last && e.Outcome.offence() && !e.Time.After(latest.Time) {
			prior += decay(latest.Time.Sub(e.Time), cfg.HalfLife)
		}
	}
	repeats := int(math.Round(prior))
	cool := cfg.MaxCooldown
	if repeats < 32 {
		cool = min(cfg.Cooldown<<repeats, cfg.MaxCooldown)
		if cool <= 0 { // overflowed
			cool = cfg.MaxCooldown
		}
	}
	until := latest.Time.Add(cool)
	if !now.Before(until) {
		return time.Time{}, ""
	}
	why := string(latest.Outcome)
	if repeats > 0 {
		why = fmt.Sprintf("%s (offence %d)", why, repeats+1)
	}
	if latest.JobID != "" {
		why += fmt.Sprintf(" on job %.12s", latest.JobID)
	}
	return until, why
}

// standing is a record as shown, at now.
func standing(rec ProviderRecord, now time.Time, cfg ReputationConfig) ProviderStanding {
	s := ProviderStanding{Provider: rec.Provider, Counts: map[Outcome]int{}, Trust: trust(rec.Events, now, cfg.HalfLife)}
	for _, e := range rec.Events {
		s.Counts[e.Outcome]++
		if e.Time.After(s.LastSeen) {
			s.LastSeen = e.Time
		}
	}
	s.AvoidedUntil, s.Why = avoidance(rec.Events, now, cfg)
	return s
}

// Reputation is a requester's memory of providers. It is safe for
// concurrent use.
type Reputation struct {
	cfg  ReputationConfig
	now  func() time.Time
	save func(ProviderRecord) error
	log  *slog.Logger

	mu   sync.Mutex
	recs map[peer.ID]*ProviderRecord
}

// NewReputation starts from the records kept before (nil: none). save,
// if not nil, is handed each record that changed, under the reputation's
// lock so that saves of one provider come in order; a record with no
// events is one to delete. A failed save is logged: the memory stays
// right, only a restart forgets.
func NewReputation(cfg ReputationConfig, records []ProviderRecord, save func(ProviderRecord) error, log *slog.Logger) (*Reputation, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Reputation{cfg: cfg, now: time.Now, save: save, log: log.With("subsystem", "reputation"), recs: map[peer.ID]*ProviderRecord{}}
	for _, rec := range records {
		if err := rec.Check(); err != nil {
			return nil, err
		}
		rec.Events = slices.Clone(rec.Events)
		slices.SortStableFunc(rec.Events, func(a, b OutcomeEvent) int { return a.Time.Compare(b.Time) })
		if n := len(rec.Events) - cfg.MaxEvents; n > 0 {
			rec.Events = rec.Events[n:]
		}
		if len(rec.Events) > 0 {
			r.recs[rec.Provider] = &rec
		}
	}
	for len(r.recs) > cfg.MaxProviders {
		r.forgetOldest()
	}
	return r, nil
}

// Record notes what p did on job jobID.
func (r *Reputation) Record(p peer.ID, o Outcome, jobID string) {
	if r == nil || p == "" || !o.Valid() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.recs[p]
	if !ok {
		if len(r.recs) >= r.cfg.MaxProviders {
			r.forgetOldest()
		}
		rec = &ProviderRecord{Provider: p}
		r.recs[p] = rec
	}
	rec.Events = append(rec.Events, OutcomeEvent{Time: r.now(), Outcome: o, JobID: jobID})
	if n := len(rec.Events) - r.cfg.MaxEvents; n > 0 {
		rec.Events = slices.Delete(rec.Events, 0, n)
	}
	if o.offence() {
		until, why := avoidance(rec.Events, r.now(), r.cfg)
		r.log.Info("provider avoided", "provider", p, "until", until, "why", why)
	}
	r.store(*rec)
}

// forgetOldest drops the provider seen least recently. Called with mu held.
func (r *Reputation) forgetOldest() {
	var oldest *ProviderRecord
	for _, rec := range r.recs {
		if oldest == nil || rec.Events[len(rec.Events)-1].Time.Before(oldest.Events[len(oldest.Events)-1].Time) {
			oldest = rec
		}
	}
	if oldest != nil {
		delete(r.recs, oldest.Provider)
		r.store(ProviderRecord{Provider: oldest.Provider})
	}
}

func (r *Reputation) store(rec ProviderRecord) {
	if r.save == nil {
		return
	}
	rec.Events = slices.Clone(rec.Events)
	if err := r.save(rec); err != nil {
		r.log.Warn("provider record not saved", "provider", rec.Provider, "err", err)
	}
}

// Avoided says until when p is not invoked, and why; ok is false when it
// may be.
func (r *Reputation) Avoided(p peer.ID) (until time.Time, why string, ok bool) {
	if r == nil {
		return time.Time{}, "", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, found := r.recs[p]
	if !found {
		return time.Time{}, "", false
	}
	until, why = avoidance(rec.Events, r.now(), r.cfg)
	return until, why, !until.IsZero()
}

// Count is how many events of outcome o are kept for p.
func (r *Reputation) Count(p peer.ID, o Outcome) int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	if rec, ok := r.recs[p]; ok {
		for _, e := range rec.Events {
			if e.Outcome == o {
				n++
			}
		}
	}
	return n
}

// Standings are every remembered provider's record, as shown now: the
// avoided first, then by trust, best first.
func (r *Reputation) Standings() []ProviderStanding {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	now := r.now()
	out := make([]ProviderStanding, 0, len(r.recs))
	for _, rec := range r.recs {
		out = append(out, standing(*rec, now, r.cfg))
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b ProviderStanding) int {
		return cmp.Or(cmp.Compare(b.AvoidedUntil.UnixNano(), a.AvoidedUntil.UnixNano()), cmp.Compare(b.Trust, a.Trust), cmp.Compare(a.Provider, b.Provider))
	})
	return out
}

// tiers returns each provider's trust tier at now, for ranking one round
// of bids without holding the lock while sorting.
func (r *Reputation) tiers(providers []peer.ID) map[peer.ID]int {
	out := make(map[peer.ID]int, len(providers))
	if r == nil {
		return out
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, p := range providers {
		if rec, ok := r.recs[p]; ok {
			out[p] = trustTier(trust(rec.Events, now, r.cfg.HalfLife))
		}
	}
	return out
}

// outcomeOf is the outcome of a follow that ended in res or err; "" when
// there is nothing to hold against or for the provider (the job was
// cancelled, or the requester itself gave up).
func outcomeOf(res *Result, err error) Outcome {
	switch {
	case errors.Is(err, ErrProviderStalled):
		return OutcomeStalled
	case errors.Is(err, ErrProviderOverran):
		return OutcomeOverran
	case errors.Is(err, ErrProviderLost):
		return OutcomeLost
	case err != nil || res == nil:
		return ""
	case res.State == StateCompleted && res.ExitCode == 0:
		return OutcomeCompleted
	case failed(res):
		return OutcomeExitedNonZero
	}
	return ""
}

// avoidedText is how a bid from an avoided provider reads in a summary
// of a round with no acceptable bid (after a count of providers).
const avoidedText = "is avoided by this requester for what it did before (dms providers)"

// shunned reports whether b's provider is avoided now; its bid is then
// not taken, and its hold let go.
func (r *Requester) shunned(b *SignedBid) bool {
	until, why, ok := r.rep.Avoided(b.Bid.Provider)
	if !ok {
		return false
	}
	r.log.Debug("bid from an avoided provider", "job", b.Bid.JobID, "provider", b.Bid.Provider, "until", until, "why", why)
	r.release([]*SignedBid{b})
	return true
}

// rank sorts one round's bids best first: by the node's ranking, with what
// this requester has seen of each provider before its claimed score, and
// the job's own preference over both.
func (r *Requester) rank(req *BidRequest, bids []*SignedBid, prefer []Constraint) {
	providers := make([]peer.ID, len(bids))
	for i, b := range bids {
		providers[i] = b.Bid.Provider
	}
	tiers := r.rep.tiers(providers)
	rankSigned(req, bids, preferring(prefer, r.prefs().comparatorWith(func(p peer.ID) int { return tiers[p] })))
}
