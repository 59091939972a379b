// Package onboarding turns a user's offer into the node's registered
// capability: it checks the offer against the measured machine less the
// owner's reserve, records it in the ledger, and withdraws it on offboarding.
package onboarding

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/resources"
)

// Sentinel errors callers branch on.
var (
	// ErrInvalidOffer is wrapped by every *OfferError: the offer itself is
	// wrong for this machine, whatever the node's state.
	ErrInvalidOffer = errors.New("invalid offer")
	// ErrActiveAllocations means offboarding was refused because allocations
	// hold locks; force overrides it.
	ErrActiveAllocations = resources.ErrLocked
	// ErrBelowLocked means a changed offer would not cover what is locked now.
	ErrBelowLocked = resources.ErrBelowLocked
)

// OfferError names the part of an offer that is wrong and why.
type OfferError struct {
	Field  string // "cpu", "memory", "disk", "gpu", "price", or a preference: "executors", "label", ...
	Value  string // as the user gave it, or formatted
	Reason string
}

func (e *OfferError) Error() string {
	return fmt.Sprintf("%s %s: %s", e.Field, e.Value, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidOffer) true.
func (e *OfferError) Unwrap() error { return ErrInvalidOffer }

// Offer is what the user offers of the machine. It is plain data so that the
// command line can send it over a control socket as JSON.
type Offer struct {
	CPU    uint64                      `json:"cpu"`    // millicores
	Memory uint64                      `json:"memory"` // bytes
	Disk   uint64                      `json:"disk"`   // bytes
	GPUs   []string                    `json:"gpus,omitempty"`
	Price  capability.PriceInformation `json:"price,omitzero"`
}

// Limits is what the machine may offer: its totals less the owner's reserve,
// and less the disk already used by others.
type Limits struct {
	Machine resources.Machine     `json:"machine"`
	Reserve capability.Capability `json:"reserve"`
	Max     capability.Capability `json:"max"`
}

// Record reports what Onboard recorded.
type Record struct {
	Registered capability.Capability  `json:"registered"`
	Previous   *capability.Capability `json:"previous,omitempty"` // the offer it replaced
	Locked     capability.Capability  `json:"locked"`
	Limits     Limits                 `json:"limits"`
}

// OffboardReport reports what Offboard did.
type OffboardReport struct {
	WasOnboarded bool                  `json:"was_onboarded"`
	Previous     capability.Capability `json:"previous"`
	// Affected lists the allocations whose locks a forced offboarding removed
	// (or, when refused, the ones in the way).
	Affected []resources.Lock `json:"affected,omitempty"`
	// Stopped lists the allocations a forced offboarding of a running node
	// cancelled, and waited for, before it released their locks.
	Stopped []string `json:"stopped,omitempty"`
}

// Onboarder validates and records offers against one ledger. It is not an
// owner of that ledger: a running node calls it on its own, and the command
// line only on a home whose node is stopped.
type Onboarder struct {
	ledger  *resources.Ledger
	home    string
	measure func(context.Context) (resources.Machine, error)
	reserve resources.Reserve
	price   capability.PriceInformation
	docker  *executor.Docker
	log     *slog.Logger
}

type config struct {
	measure func(context.Context) (resources.Machine, error)
	reserve resources.Reserve
	price   capability.PriceInformation
	docker  *executor.Docker
	log     *slog.Logger
}

// Option configures an Onboarder.
type Option func(*config) error

// WithMachine validates offers against a fixed measurement instead of
// measuring the machine (tests, or a caller that has just measured).
func WithMachine(m resources.Machine) Option {
	return func(c *config) error {
		if m.CPU.MilliCores == 0 || m.Memory == 0 {
			return errors.New("machine: no cores or no memory measured")
		}
		c.measure = func(context.Context) (resources.Machine, error) { return m, nil }
		return nil
	}
}

// WithReserve sets what is kept for the machine's owner (default
// resources.DefaultReserve).
func WithReserve(r resources.Reserve) Option {
	return func(c *config) error {
		if err := r.Validate(); err != nil {
			return err
		}
		c.reserve = r
		return nil
	}
}

// WithDefaultPrice is the price of a first offer that names none (the
// config file's price).
func WithDefaultPrice(p capability.PriceInformation) Option {
	return func(c *config) error {
		if err := p.Validate(); err != nil {
			return err
		}
		c.price = p
		return nil
	}
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("logger: nil")
		}
		c.log = l
		return nil
	}
}

// WithDocker checks that the docker executor can run through d when a
// request allows it; without it, a client is made for that one check. The
// Onboarder does not close d.
func WithDocker(d *executor.Docker) Option {
	return func(c *config) error {
		c.docker = d
		return nil
	}
}

// New returns an Onboarder recording into ledger. Unless WithMachine is
// given, the machine is measured on every call, with the disk measured on the
// filesystem that holds home; the benchmark writes there too.
func New(ledger *resources.Ledger, home string, opts ...Option) (*Onboarder, error) {
	cfg := config{
		measure: func(ctx context.Context) (resources.Machine, error) { return resources.Measure(ctx, home) },
		reserve: resources.DefaultReserve,
		log:     slog.Default().With("subsystem", "onboarding"),
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("onboarding: %w", err)
		}
	}
	if ledger == nil {
		return nil, errors.New("onboarding: nil ledger")
	}
	return &Onboarder{ledger: ledger, home: home, measure: cfg.measure, reserve: cfg.reserve, price: cfg.price, docker: cfg.docker, log: cfg.log}, nil
}

// IsOnboarded reports whether the node offers anything. A provider ignores
// bid requests while it is false.
func (o *Onboarder) IsOnboarded() bool { return IsOnboarded(o.ledger) }

// IsOnboarded reports whether the ledger holds a registered capability.
func IsOnboarded(l *resources.Ledger) bool { return !l.Registered().IsZero() }

// Limits measures the machine and says the most it may offer.
func (o *Onboarder) Limits(ctx context.Context) (Limits, error) {
	m, err := o.measure(ctx)
	if err != nil {
		return Limits{}, fmt.Errorf("limits: %w", err)
	}
	return limitsOf(m, o.reserve, o.ledger.Locked()), nil
}

// limitsOf computes the most an offer may be:
//
//	cpu, memory: total − reserve
//	disk:        total − max(reserve, used by others)
//
// Memory and CPU in use now are the monitor's business (they come and go);
// disk in use mostly stays, so an offer cannot promise space that files
// already fill. Disk used by our own allocations (at most what is locked) is
// not counted against a changed offer.
func limitsOf(m resources.Machine, r resources.Reserve, locked capability.Capability) Limits {
	total := m.Total()
	reserve := r.Resolve(total)
	used := resources.Usage{Disk: m.Disk - min(m.DiskFree, m.Disk)}
	most := resources.Ceiling(total, reserve, used, resources.Usage{Disk: locked.Disk})
	return Limits{Machine: m, Reserve: reserve, Max: most}
}

// Onboard validates offer against the machine and records it as the
// registered capability, replacing any earlier offer. It is refused with an
// *OfferError (ErrInvalidOffer) when the offer is empty or more than the
// machine may give, and with ErrBelowLocked when it would not cover what
// running allocations have locked.
func (o *Onboarder) Onboard(ctx context.Context, offer Offer) (Record, error) {
	lim, err := o.Limits(ctx)
	if err != nil {
		return Record{}, fmt.Errorf("onboard: %w", err)
	}
	c, err := o.validate(offer, lim)
	if err != nil {
		return Record{}, fmt.Errorf("onboard: %w", err)
	}
	prev := o.ledger.Registered()
	if err := o.ledger.Register(c); err != nil {
		return Record{}, fmt.Errorf("onboard: %w", err)
	}
	rec := Record{Registered: o.ledger.Registered(), Locked: o.ledger.Locked(), Limits: lim}
	if !prev.IsZero() {
		rec.Previous = &prev
	}
	o.log.Debug("onboarded", "capability", rec.Registered.String(), "changed", rec.Previous != nil)
	return rec, nil
}

func (o *Onboarder) validate(offer Offer, lim Limits) (capability.Capability, error) {
	m, most := lim.Machine, lim.Max
	tooMuch := func(have, reserve, most string) string {
		return fmt.Sprintf("more than this machine can offer: at most %s (it has %s, %s kept for its owner)", most, have, reserve)
	}
	switch {
	case offer.CPU == 0:
		return capability.Capability{}, &OfferError{"cpu", "0", "must be more than zero"}
	case offer.Memory == 0:
		return capability.Capability{}, &OfferError{"memory", "0", "must be more than zero"}
	case offer.Disk == 0:
		return capability.Capability{}, &OfferError{"disk", "0", "must be more than zero"}
	case offer.CPU > most.CPU.MilliCores:
		return capability.Capability{}, &OfferError{"cpu", capability.FormatCPU(offer.CPU),
			tooMuch(capability.FormatCPU(m.CPU.MilliCores)+" cores", capability.FormatCPU(lim.Reserve.CPU.MilliCores), capability.FormatCPU(most.CPU.MilliCores))}
	case offer.Memory > most.Memory:
		return capability.Capability{}, &OfferError{"memory", capability.FormatBytes(offer.Memory),
			tooMuch(capability.FormatBytes(m.Memory), capability.FormatBytes(lim.Reserve.Memory), capability.FormatBytes(most.Memory))}
	case offer.Disk > most.Disk:
		return capability.Capability{}, &OfferError{"disk", capability.FormatBytes(offer.Disk),
			fmt.Sprintf("more than this machine can offer: at most %s (%s free of %s on %s, %s kept for its owner)",
				capability.FormatBytes(most.Disk), capability.FormatBytes(m.DiskFree), capability.FormatBytes(m.Disk), m.DiskPath, capability.FormatBytes(lim.Reserve.Disk))}
	}
	if err := offer.Price.Validate(); err != nil {
		return capability.Capability{}, &OfferError{"price", offer.Price.String(), err.Error()}
	}
	gpus, err := pickGPUs(offer.GPUs, m.GPUs)
	if err != nil {
		return capability.Capability{}, err
	}
	c := capability.Capability{
		CPU:    capability.CPU{MilliCores: offer.CPU, ClockMHz: m.CPU.ClockMHz, Arch: m.CPU.Arch, Model: m.CPU.Model},
		Memory: offer.Memory,
		Disk:   offer.Disk,
		GPUs:   gpus,
		Price:  offer.Price,
	}
	return c, c.Validate()
}

// pickGPUs resolves each requested GPU, by index or UUID, to one the machine has.
func pickGPUs(want []string, have []capability.GPU) ([]capability.GPU, error) {
	var out []capability.GPU
	for _, w := range want {
		w = strings.TrimSpace(w)
		i := slices.IndexFunc(have, func(g capability.GPU) bool {
			if idx, err := strconv.Atoi(w); err == nil {
				return g.Index == idx
			}
			return g.UUID != "" && strings.EqualFold(g.UUID, w)
		})
		if i < 0 {
			return nil, &OfferError{"gpu", strconv.Quote(w), "no such gpu on this machine (" + describeGPUs(have) + ")"}
		}
		if slices.ContainsFunc(out, func(g capability.GPU) bool { return g == have[i] }) {
			return nil, &OfferError{"gpu", strconv.Quote(w), "offered twice"}
		}
		out = append(out, have[i])
	}
	return out, nil
}

func describeGPUs(gs []capability.GPU) string {
	if len(gs) == 0 {
		return "it has none that nvidia-smi can see"
	}
	var parts []string
	for _, g := range gs {
		parts = append(parts, fmt.Sprintf("%d %s %s", g.Index, g.UUID, g.Model))
	}
	return "it has: " + strings.Join(parts, "; ")
}

// Offboard withdraws the offer. While allocations hold locks it is refused
// with ErrActiveAllocations, the report listing them; with force it goes on,
// removing their locks and allocation records, and lists them as affected.
// Only a caller that knows no allocation runs may force it: a running node
// stops its allocations first (node.Offboard), and with no node running the
// locks are what a crash left. Offboarding a node that is not onboarded does
// nothing and is no error.
func (o *Onboarder) Offboard(ctx context.Context, force bool) (OffboardReport, error) {
	prev := o.ledger.Registered()
	affected, err := o.ledger.Deregister(force)
	rep := OffboardReport{WasOnboarded: !prev.IsZero(), Previous: prev, Affected: affected}
	if err != nil {
		return rep, fmt.Errorf("offboard: %w", err)
	}
	if len(affected) > 0 {
		o.log.Warn("forced offboarding removed the locks of running allocations", "allocations", len(affected))
	}
	return rep, nil
}
