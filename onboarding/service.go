package onboarding

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

// The calls the command line makes on a home's offer: change it (Apply),
// withdraw it (Offboard, in onboarding.go), show the accounts, benchmark.
// A running node makes them on its own ledger; with no node running, the
// command line makes them on the home's datastore, which it then holds
// alone. The same code serves both, so the two cannot drift apart.

// ErrIncompleteOffer means a first offer left out a dimension it needs.
var ErrIncompleteOffer = errors.New("incomplete offer")

// MissingError names the dimensions a first offer left out.
type MissingError struct {
	Fields []string // of "cpu", "memory", "disk"
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("a first offer needs cpu, memory and disk; missing %s", strings.Join(e.Fields, ", "))
}

// Unwrap makes errors.Is(err, ErrIncompleteOffer) true.
func (e *MissingError) Unwrap() error { return ErrIncompleteOffer }

// Request is an offer, new or changed. A nil field keeps the current
// offer's value; for a first offer CPU, Memory and Disk are required and
// Price defaults to the one WithDefaultPrice set.
type Request struct {
	CPU     *uint64                      `json:"cpu,omitempty"`    // millicores
	Memory  *uint64                      `json:"memory,omitempty"` // bytes
	Disk    *uint64                      `json:"disk,omitempty"`   // bytes
	GPUs    *[]string                    `json:"gpus,omitempty"`   // index or UUID each
	Price   *capability.PriceInformation `json:"price,omitempty"`
	Reserve *resources.Reserve           `json:"reserve,omitempty"` // nil: the configured reserve
	// Executors, if set, are the kinds of job the provider runs: wasm,
	// docker, native: the node's preferences, which Apply records in the
	// ledger beside the offer.
	Executors *[]string `json:"executors,omitempty"`
	// MaxJobDuration, if set, is the longest job the provider bids for
	// (a preference, recorded like Executors; unset, 24h).
	MaxJobDuration *time.Duration `json:"max_job_duration,omitempty"`
	// Labels, if set, replace the provider's labels (empty: none), which
	// jobs place themselves by (a preference, recorded like Executors).
	Labels *orchestrator.Labels `json:"labels,omitempty"`
	// Benchmark runs a benchmark first when none is stored, so that bids
	// carry a score from the start.
	Benchmark         bool             `json:"benchmark"`
	BenchmarkDuration seconds.Duration `json:"benchmark_duration,omitempty"`
}

// Result is what Apply recorded.
type Result struct {
	Home      string               `json:"home"`
	Record    Record               `json:"record"`
	Benchmark *resources.Benchmark `json:"benchmark,omitempty"` // set when one ran
	// Executors are the kinds of job the node runs, and MaxJobDuration the
	// longest it bids for, when the request set either.
	Executors      []string      `json:"executors,omitempty"`
	MaxJobDuration time.Duration `json:"max_job_duration,omitempty"`
	// Labels are the provider's labels, when the request set any
	// preference.
	Labels orchestrator.Labels `json:"labels,omitempty"`
}

// Accounts are a node's books: what the machine has, what is offered,
// locked, held and available.
type Accounts struct {
	Home       string                `json:"home"`
	Onboarded  bool                  `json:"onboarded"`
	Machine    resources.Machine     `json:"machine"`
	Reserve    capability.Capability `json:"reserve"`
	MaxOffer   capability.Capability `json:"max_offer"`
	Registered capability.Capability `json:"registered"`
	Locked     capability.Capability `json:"locked"`
	Held       capability.Capability `json:"held"`
	// Ceiling is what the owner's current use leaves the node (see
	// resources.Ceiling); Available is capped by it.
	Ceiling   capability.Capability `json:"ceiling"`
	Usage     resources.Usage       `json:"usage"`
	Available capability.Capability `json:"available"`
	Locks     []resources.Lock      `json:"locks"`
	Holds     []resources.Hold      `json:"holds"`
	Benchmark *resources.Benchmark  `json:"benchmark,omitempty"`
	// Executors are the kinds of job the node runs (its preferences).
	Executors []string `json:"executors,omitempty"`
	// Labels describe the provider to jobs' constraints (its preferences).
	Labels orchestrator.Labels `json:"labels,omitempty"`
}

// WithReserveOverride returns a copy of o that keeps r for the owner
// instead (a --reserve given for one call); nil returns o.
func (o *Onboarder) WithReserveOverride(r *resources.Reserve) (*Onboarder, error) {
	if r == nil {
		return o, nil
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	c := *o
	c.reserve = *r
	return &c, nil
}

// Apply merges req into the current offer, runs the first benchmark if
// asked and none is stored, validates the offer against the machine and
// records it; progress, if not nil, follows the benchmark. The preferences
// req sets (executors, the longest job, labels) are merged into the stored ones and
// checked before anything else, and stored only once the offer is
// recorded, so a refused request changes neither.
func (o *Onboarder) Apply(ctx context.Context, req Request, progress func(resources.Progress)) (Result, error) {
	res := Result{Home: o.home}
	o, err := o.WithReserveOverride(req.Reserve)
	if err != nil {
		return res, fmt.Errorf("onboard: %w", err)
	}
	var prefs orchestrator.Preferences
	if req.SetsPreferences() {
		if prefs, err = o.preferencesFor(ctx, req); err != nil {
			return res, fmt.Errorf("onboard: %w", err)
		}
	}
	offer, err := o.merge(req)
	if err != nil {
		return res, fmt.Errorf("onboard: %w", err)
	}
	if _, ok := o.ledger.Benchmark(); req.Benchmark && !ok {
		b, err := o.Benchmark(ctx, req.BenchmarkDuration.Std(), progress)
		if err != nil {
			return res, err
		}
		res.Benchmark = &b
	}
	if res.Record, err = o.Onboard(ctx, offer); err != nil || !req.SetsPreferences() {
		return res, err
	}
	res.Executors, res.MaxJobDuration, res.Labels = prefs.Executors(), prefs.MaxJobDuration(), prefs.Labels
	return res, o.storePreferences(prefs)
}

// merge fills what req leaves out from the current offer.
func (o *Onboarder) merge(req Request) (Offer, error) {
	cur := o.ledger.Registered()
	if cur.IsZero() {
		var missing []string
		for _, m := range []struct {
			name string
			set  bool
		}{{"cpu", req.CPU != nil}, {"memory", req.Memory != nil}, {"disk", req.Disk != nil}} {
			if !m.set {
				missing = append(missing, m.name)
			}
		}
		if len(missing) > 0 {
			return Offer{}, &MissingError{Fields: missing}
		}
	}
	offer := Offer{CPU: cur.CPU.MilliCores, Memory: cur.Memory, Disk: cur.Disk, Price: cur.Price}
	if cur.IsZero() {
		offer.Price = o.price
	}
	for _, g := range cur.GPUs {
		offer.GPUs = append(offer.GPUs, g.UUID)
	}
	if req.CPU != nil {
		offer.CPU = *req.CPU
	}
	if req.Memory != nil {
		offer.Memory = *req.Memory
	}
	if req.Disk != nil {
		offer.Disk = *req.Disk
	}
	if req.GPUs != nil {
		offer.GPUs = *req.GPUs
	}
	if req.Price != nil {
		offer.Price = *req.Price
	}
	return offer, nil
}

// Benchmark measures the machine for d (0: the default) and stores the
// result, whose score then rides on every bid.
func (o *Onboarder) Benchmark(ctx context.Context, d time.Duration, progress func(resources.Progress)) (resources.Benchmark, error) {
	var opts []resources.BenchmarkOption
	if d != 0 {
		opts = append(opts, resources.WithBenchmarkDuration(d))
	}
	if progress != nil {
		opts = append(opts, resources.WithProgress(progress))
	}
	b, err := resources.BenchmarkCapability(ctx, o.home, opts...)
	if err != nil {
		return b, err
	}
	return b, o.ledger.SetBenchmark(b)
}

// Accounts returns the books beside the machine. usage is the host's use
// now; the ledger's ceiling (set by whoever watches the host) caps what is
// available, and without one nothing but the machine does.
func (o *Onboarder) Accounts(ctx context.Context, usage resources.Usage) (Accounts, error) {
	lim, err := o.Limits(ctx)
	if err != nil {
		return Accounts{}, err
	}
	s := o.ledger.Snapshot()
	ceiling := lim.Machine.Total()
	if s.Ceiling != nil {
		ceiling = *s.Ceiling
	}
	return Accounts{
		Home: o.home, Onboarded: !s.Registered.IsZero(),
		Machine: lim.Machine, Reserve: lim.Reserve, MaxOffer: lim.Max,
		Registered: s.Registered, Locked: s.Locked, Held: s.Held, Available: s.Available,
		Ceiling: ceiling, Usage: usage, Locks: s.Locks, Holds: s.Holds, Benchmark: s.Benchmark,
	}, nil
}

// HostCeiling is what the host's use leaves the node when nothing of the
// node runs (the command line's view of a home whose node is stopped).
func (o *Onboarder) HostCeiling(ctx context.Context, usage resources.Usage) (capability.Capability, error) {
	lim, err := o.Limits(ctx)
	if err != nil {
		return capability.Capability{}, err
	}
	return resources.Ceiling(lim.Machine.Total(), lim.Reserve, usage, resources.Usage{}), nil
}
