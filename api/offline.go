package api

import (
	"context"
	"errors"
	"log/slog"

	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/resources"
)

// Controller is what the offer commands (onboard, offboard, capability,
// benchmark) ask of a home. The node running on the home answers them
// (Client); when none runs, the home's own datastore does (Offline). Both
// make the same onboarding calls: only where the ledger lives differs.
type Controller interface {
	Onboard(ctx context.Context, req OnboardRequest, progress func(resources.Progress)) (OnboardResponse, error)
	Offboard(ctx context.Context, req OffboardRequest) (OffboardResponse, error)
	Capability(ctx context.Context, req CapabilityRequest) (CapabilityResponse, error)
	Benchmark(ctx context.Context, req BenchmarkRequest, progress func(resources.Progress)) (BenchmarkResponse, error)
	Close() error
}

var (
	_ Controller = (*Client)(nil)
	_ Controller = (*Offline)(nil)
)

// Open returns a Controller for h: the running node's, if one answers on
// the home's socket, else the home's own. If a node is starting (it holds
// the datastore but does not answer yet), the offline calls fail with
// resources.ErrHomeInUse, which names it.
func Open(ctx context.Context, h home.Home, s home.Settings, log *slog.Logger) (Controller, error) {
	c, err := Dial(ctx, h.Dir)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, ErrNoNode) {
		return nil, err
	}
	return &Offline{Home: h, Settings: s, Log: log}, nil
}

// Offline makes the offer calls on a home no node runs on. Each call opens
// the datastore and closes it again, holding its lock (which a node
// starting meanwhile would wait for) only as long as it must. With no node,
// no allocation of the home runs: every lock found is one a crash left.
type Offline struct {
	Home     home.Home
	Settings home.Settings
	Log      *slog.Logger
	// Machine, if set, is what offers are checked against instead of a
	// fresh measurement (a test network measures once for all its homes).
	Machine *resources.Machine
}

// Use opens the home's datastore and runs f on an onboarder over its
// ledger, then closes the datastore. reserve, if not nil, replaces the
// configured one.
func (o *Offline) Use(ctx context.Context, reserve *resources.Reserve, f func(*onboarding.Onboarder, *resources.Ledger) error) (err error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	store, err := o.Home.OpenDatastore()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, store.Close()) }()
	l, err := resources.NewLedger(store, resources.WithLedgerLogger(log.With("subsystem", "ledger")))
	if err != nil {
		return err
	}
	r := o.Settings.Reserve
	if reserve != nil {
		r = *reserve
	}
	opts := []onboarding.Option{onboarding.WithReserve(r), onboarding.WithDefaultPrice(o.Settings.Price), onboarding.WithLogger(log.With("subsystem", "onboarding"))}
	if o.Machine != nil {
		opts = append(opts, onboarding.WithMachine(*o.Machine))
	}
	ob, err := onboarding.New(l, o.Home.Dir, opts...)
	if err != nil {
		return err
	}
	return f(ob, l)
}

// Onboard records an offer, and the preferences it sets, on the home.
func (o *Offline) Onboard(ctx context.Context, req OnboardRequest, progress func(resources.Progress)) (resp OnboardResponse, err error) {
	resp.Home = o.Home.Dir
	err = o.Use(ctx, req.Reserve, func(ob *onboarding.Onboarder, _ *resources.Ledger) error {
		req.Reserve = nil // applied by Use
		resp, err = ob.Apply(ctx, req, progress)
		return err
	})
	return resp, err
}

// Offboard withdraws the home's offer. Forced, it removes the locks a
// crash left (no node runs, so no allocation of them does).
func (o *Offline) Offboard(ctx context.Context, req OffboardRequest) (resp OffboardResponse, err error) {
	resp.Home = o.Home.Dir
	err = o.Use(ctx, nil, func(ob *onboarding.Onboarder, _ *resources.Ledger) error {
		resp.Report, err = ob.Offboard(ctx, req.Force)
		return err
	})
	return resp, err
}

// Capability shows the home's accounts. One sample of the host stands in
// for the monitor a running node keeps, and all use counts as the owner's.
func (o *Offline) Capability(ctx context.Context, req CapabilityRequest) (resp CapabilityResponse, err error) {
	usage, err := resources.NewHostSampler(o.Home.Dir).Sample(ctx)
	if err != nil {
		return resp, err
	}
	err = o.Use(ctx, req.Reserve, func(ob *onboarding.Onboarder, l *resources.Ledger) error {
		ceiling, err := ob.HostCeiling(ctx, usage)
		if err != nil {
			return err
		}
		l.SetCeiling(ceiling)
		if resp, err = ob.Accounts(ctx, usage); err != nil {
			return err
		}
		prefs, err := onboarding.StoredPreferences(l)
		resp.Executors, resp.Labels = prefs.Executors(), prefs.Labels
		return err
	})
	return resp, err
}

// Benchmark runs and stores the home's benchmark.
func (o *Offline) Benchmark(ctx context.Context, req BenchmarkRequest, progress func(resources.Progress)) (resp BenchmarkResponse, err error) {
	resp.Home = o.Home.Dir
	err = o.Use(ctx, nil, func(ob *onboarding.Onboarder, l *resources.Ledger) error {
		resp.Benchmark, err = ob.Benchmark(ctx, req.Duration.Std(), progress)
		resp.Registered = l.Registered()
		return err
	})
	return resp, err
}

// Close does nothing: each call closed what it opened.
func (o *Offline) Close() error { return nil }
