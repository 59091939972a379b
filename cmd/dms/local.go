package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/resources"
)

// localController carries out the controller calls on a ledger. Without a
// node it works on the home directly, opening its datastore for each call
// so that it holds pebble's lock only as long as it must (while a node runs
// on the home, the datastore is that node's and every call fails with
// resources.ErrHomeInUse). Inside a running node (newNodeController) the
// same logic works on the node's own ledger, and the control socket serves
// it to the CLI.
type localController struct {
	home     node.Home
	settings node.Settings
	log      *slog.Logger
	// measure is resources.Measure; tests replace it.
	measure func(ctx context.Context, dir string) (resources.Machine, error)
	// ledger lends f the node's ledger for one call: the home's datastore
	// opened for the call (openLedger), or a running node's ledger.
	ledger func(f func(*resources.Ledger) error) error
	// live is set when the ledger is a running node's: then its monitor,
	// not a call, owns the ledger's ceiling, and its allocations use part of
	// the machine.
	live bool
}

var _ controller = (*localController)(nil)

func newLocalController(home node.Home, settings node.Settings, log *slog.Logger) *localController {
	c := &localController{home: home, settings: settings, log: log, measure: func(ctx context.Context, dir string) (resources.Machine, error) {
		return resources.Measure(ctx, dir, resources.WithMeasureLogger(log))
	}}
	c.ledger = c.openLedger
	return c
}

// newNodeController is the controller inside a running node: the calls
// work on n's ledger, which n keeps using for its bids.
func newNodeController(n *node.Node, home node.Home, settings node.Settings, log *slog.Logger) *localController {
	c := newLocalController(home, settings, log)
	c.ledger = func(f func(*resources.Ledger) error) error { return f(n.Ledger()) }
	c.live = true
	return c
}

// withLedger runs f on the ledger.
func (c *localController) withLedger(f func(*resources.Ledger) error) error { return c.ledger(f) }

// openLedger opens the datastore and ledger, runs f, and closes the datastore.
func (c *localController) openLedger(f func(*resources.Ledger) error) (err error) {
	store, err := c.home.OpenDatastore()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, store.Close()) }()
	l, err := resources.NewLedger(store, resources.WithLedgerLogger(c.log.With("subsystem", "ledger")))
	if err != nil {
		return err
	}
	return f(l)
}

func (c *localController) reserve(r *resources.Reserve) resources.Reserve {
	if r != nil {
		return *r
	}
	return c.settings.Reserve
}

func (c *localController) Onboard(ctx context.Context, req OnboardRequest, progress func(resources.Progress)) (OnboardResponse, error) {
	resp := OnboardResponse{Home: c.home.Dir}
	m, err := c.measure(ctx, c.home.Dir)
	if err != nil {
		return resp, err
	}
	err = c.withLedger(func(l *resources.Ledger) error {
		offer, err := mergeOffer(req, l.Registered(), c.settings.Price)
		if err != nil {
			return err
		}
		if _, ok := l.Benchmark(); req.Benchmark && !ok {
			b, err := c.runBenchmark(ctx, req.BenchmarkDuration, progress)
			if err != nil {
				return err
			}
			if err := l.SetBenchmark(b); err != nil {
				return err
			}
			resp.Benchmark = &b
		}
		o, err := onboarding.New(l, c.home.Dir, onboarding.WithMachine(m), onboarding.WithReserve(c.reserve(req.Reserve)),
			onboarding.WithLogger(c.log.With("subsystem", "onboarding")))
		if err != nil {
			return err
		}
		resp.Record, err = o.Onboard(ctx, offer)
		return err
	})
	return resp, err
}

// mergeOffer fills what req leaves out from the current offer; for a first
// offer, CPU, memory and disk are required and the price defaults to the
// configured one.
func mergeOffer(req OnboardRequest, cur capability.Capability, defaultPrice capability.PriceInformation) (onboarding.Offer, error) {
	if cur.IsZero() {
		var missing []string
		for _, m := range []struct {
			name string
			set  bool
		}{{"--cpu", req.CPU != nil}, {"--memory", req.Memory != nil}, {"--disk", req.Disk != nil}} {
			if !m.set {
				missing = append(missing, m.name)
			}
		}
		if len(missing) > 0 {
			return onboarding.Offer{}, usagef("missing required flag %s: a first offer needs --cpu (cores, e.g. 1 or 0.5), --memory and --disk (sizes, e.g. 1GiB)", joinFlags(missing))
		}
	}
	offer := onboarding.Offer{CPU: cur.CPU.MilliCores, Memory: cur.Memory, Disk: cur.Disk, Price: cur.Price}
	if cur.IsZero() {
		offer.Price = defaultPrice
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

func joinFlags(fs []string) string {
	switch len(fs) {
	case 1:
		return fs[0]
	case 2:
		return fs[0] + " and " + fs[1]
	}
	return fmt.Sprintf("%s, %s and %s", fs[0], fs[1], fs[2])
}

func (c *localController) Offboard(ctx context.Context, req OffboardRequest) (OffboardResponse, error) {
	resp := OffboardResponse{Home: c.home.Dir}
	err := c.withLedger(func(l *resources.Ledger) error {
		o, err := onboarding.New(l, c.home.Dir, onboarding.WithLogger(c.log.With("subsystem", "onboarding")))
		if err != nil {
			return err
		}
		resp.Report, err = o.Offboard(ctx, req.Force)
		return err
	})
	return resp, err
}

func (c *localController) Capability(ctx context.Context, req CapabilityRequest) (CapabilityResponse, error) {
	resp := CapabilityResponse{Home: c.home.Dir}
	m, err := c.measure(ctx, c.home.Dir)
	if err != nil {
		return resp, err
	}
	// One sample stands in for the monitor a running node keeps.
	usage, err := resources.NewHostSampler(c.home.Dir).Sample(ctx)
	if err != nil {
		return resp, err
	}
	err = c.withLedger(func(l *resources.Ledger) error {
		o, err := onboarding.New(l, c.home.Dir, onboarding.WithMachine(m), onboarding.WithReserve(c.reserve(req.Reserve)))
		if err != nil {
			return err
		}
		lim, err := o.Limits(ctx)
		if err != nil {
			return err
		}
		var ceiling capability.Capability
		if !c.live {
			// No node runs while we hold the datastore, so no allocation of
			// ours uses the machine: all use is the owner's.
			ceiling = resources.Ceiling(m.Total(), lim.Reserve, usage, resources.Usage{})
			l.SetCeiling(ceiling)
		}
		s := l.Snapshot()
		if c.live {
			// A running node's monitor sets the ceiling that caps Available;
			// show that one. Without a monitor (a test network, where every
			// node shares the machine) nothing caps it but the machine.
			ceiling = m.Total()
			if s.Ceiling != nil {
				ceiling = *s.Ceiling
			}
		}
		resp.Onboarded = o.IsOnboarded()
		resp.Machine, resp.Reserve, resp.MaxOffer = m, lim.Reserve, lim.Max
		resp.Registered, resp.Locked, resp.Held, resp.Available = s.Registered, s.Locked, s.Held, s.Available
		resp.Ceiling, resp.Usage = ceiling, usage
		resp.Locks, resp.Holds, resp.Benchmark = s.Locks, s.Holds, s.Benchmark
		return nil
	})
	return resp, err
}

func (c *localController) Benchmark(ctx context.Context, req BenchmarkRequest, progress func(resources.Progress)) (BenchmarkResponse, error) {
	resp := BenchmarkResponse{Home: c.home.Dir}
	err := c.withLedger(func(l *resources.Ledger) error {
		b, err := c.runBenchmark(ctx, req.Duration, progress)
		if err != nil {
			return err
		}
		if err := l.SetBenchmark(b); err != nil {
			return err
		}
		resp.Benchmark, resp.Registered = b, l.Registered()
		return nil
	})
	return resp, err
}

func (c *localController) runBenchmark(ctx context.Context, d time.Duration, progress func(resources.Progress)) (resources.Benchmark, error) {
	opts := []resources.BenchmarkOption{}
	if d != 0 {
		opts = append(opts, resources.WithBenchmarkDuration(d))
	}
	if progress != nil {
		opts = append(opts, resources.WithProgress(progress))
	}
	return resources.BenchmarkCapability(ctx, c.home.Dir, opts...)
}

func (c *localController) Close() error { return nil }
