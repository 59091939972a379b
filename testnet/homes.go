package testnet

// The homes of a process test network, node-0 … node-(N-1) in its
// directory, and the compiled-module cache they share.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/resources"
)

// sharedBenchmark is how long the one benchmark shared by every node of a
// test network runs: they all run on this machine, so one score fits all.
const sharedBenchmark = 200 * time.Millisecond

// prepareTestnetHomes initialises DIR/node-0 … node-(N-1) (keeping what an
// earlier network of DIR left: identities, datastores) and onboards each
// with opts.Offer. The machine is measured and benchmarked once for all:
// every node runs on it. Each node is checked against the whole machine,
// as it would be alone, so N nodes together offer N times what one may:
// a test network overcommits the machine by design, its jobs being tiny.
func prepareTestnetHomes(ctx context.Context, dir string, opts Options) ([]string, error) {
	return prepareHomesFrom(ctx, dir, opts, 0)
}

// prepareHomesFrom is prepareTestnetHomes for node-first onwards.
func prepareHomesFrom(ctx context.Context, dir string, opts Options, first int) ([]string, error) {
	homes := make([]string, opts.Nodes)
	var shared string
	if !opts.Containers {
		var err error
		if shared, err = sharedWasmCache(dir); err != nil {
			return nil, err
		}
	}
	for i := range homes {
		rep, err := home.Init(filepath.Join(dir, fmt.Sprintf("node-%d", first+i)))
		if err != nil {
			return nil, err
		}
		homes[i] = rep.Home
		if shared != "" {
			if err := linkWasmCache(rep.Home, shared); err != nil {
				return nil, err
			}
		}
	}
	var machine resources.Machine
	var bench resources.Benchmark
	if opts.Offer != nil {
		var err error
		if machine, err = resources.Measure(ctx, dir, resources.WithMeasureLogger(opts.Log)); err != nil {
			return nil, err
		}
		if bench, err = resources.BenchmarkCapability(ctx, dir, resources.WithBenchmarkDuration(sharedBenchmark)); err != nil {
			return nil, err
		}
	}
	for i, dir := range homes {
		h, err := home.Open(dir)
		if err != nil {
			return nil, err
		}
		s, err := h.Settings(os.Getenv)
		if err != nil {
			return nil, err
		}
		off := &api.Offline{Home: h, Settings: s, Log: opts.Log, Machine: &machine}
		if opts.Offer == nil {
			// A home kept from an earlier network may hold an offer; its
			// allocations ended with that network.
			if _, err := off.Offboard(ctx, api.OffboardRequest{Force: true}); err != nil {
				return nil, fmt.Errorf("node-%d: offboard: %w", i, err)
			}
			continue
		}
		// The shared benchmark first, then the offer, which carries its
		// score (and the executors, which Onboard records).
		err = off.Use(ctx, nil, func(_ *onboarding.Onboarder, l *resources.Ledger) error { return l.SetBenchmark(bench) })
		if err == nil {
			_, err = off.Onboard(ctx, *opts.Offer, nil)
		}
		if err != nil {
			// An *onboarding.OfferError stays inside, so that a command line
			// can name the flag behind it.
			return nil, fmt.Errorf("node-%d: onboard: %w", i, err)
		}
	}
	return homes, nil
}

// WasmCacheShared is the compiled-module cache that the homes of a process
// test network share, in its directory.
const WasmCacheShared = "wasm-cache"

// sharedWasmCache makes the compiled-module cache that a process test
// network's homes share, and returns its absolute path: its nodes run this
// machine's one build of dms, so a module one of them compiled need not be
// compiled again by each (2 s for the 2.2 MiB hello module on a loaded
// machine, on every node's first run of it). wazero's file cache writes by
// rename, so processes may share it. Not for containers, where a link
// would point outside the container.
func sharedWasmCache(dir string) (string, error) {
	shared, err := filepath.Abs(filepath.Join(dir, WasmCacheShared))
	if err == nil {
		err = os.MkdirAll(shared, 0o700)
	}
	if err != nil {
		return "", fmt.Errorf("shared wasm cache: %w", err)
	}
	return shared, nil
}

// linkWasmCache points a new home's compiled-module cache at shared; a
// home that already has a cache of its own keeps it.
func linkWasmCache(homeDir, shared string) error {
	link := filepath.Join(homeDir, home.WasmCacheDir)
	if _, err := os.Lstat(link); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		return fmt.Errorf("shared wasm cache: %w", err)
	}
	if err := os.Symlink(shared, link); err != nil {
		return fmt.Errorf("shared wasm cache: %w", err)
	}
	return nil
}
