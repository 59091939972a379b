package node

import (
	"context"
	"fmt"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

// The node's offer and its accounts. Each call here is an onboarding call
// made on the node's own ledger, so that nothing outside the node writes it.

// Onboard offers part of the machine, or changes the offer: req is merged
// into the current offer, checked against the machine less the owner's
// reserve, and recorded. The first time (req.Benchmark), a benchmark runs
// first; progress follows it. An offer below what running allocations have
// locked is refused with onboarding.ErrBelowLocked. The preferences req
// sets (executors, the longest job, labels) are recorded with the offer and take
// effect at once.
func (n *Node) Onboard(ctx context.Context, req onboarding.Request, progress func(resources.Progress)) (onboarding.Result, error) {
	n.offerMu.Lock()
	defer n.offerMu.Unlock()
	res, err := n.onboard.Apply(ctx, req, progress)
	if err != nil || !req.SetsPreferences() {
		return res, err
	}
	// Apply stored the preferences; bidding follows them from now on.
	prefs, err := onboarding.StoredPreferences(n.ledger)
	if err != nil {
		return res, err
	}
	n.prefs.Store(&prefs)
	return res, nil
}

// Offboard withdraws the offer; the node stops bidding. While allocations
// run it is refused with onboarding.ErrActiveAllocations, listing them.
// Forced, it first stops bidding and cancels those allocations, waits (up
// to ctx) for them to end, and only then releases their locks and the
// offer, so that the ledger never shows as free what a running allocation
// still uses. If they do not all end in time, nothing is withdrawn.
func (n *Node) Offboard(ctx context.Context, force bool) (onboarding.OffboardReport, error) {
	n.offerMu.Lock()
	defer n.offerMu.Unlock()
	if !force {
		return n.onboard.Offboard(ctx, false)
	}
	n.mu.Lock()
	n.offboarding.Store(true)
	var running []*allocation
	for _, a := range n.allocs {
		if !a.isFinished() {
			running = append(running, a)
		}
	}
	n.mu.Unlock()
	defer n.offboarding.Store(false)

	affected := n.ledger.Locks()
	var stopped []string
	for _, a := range running {
		if err := a.route(Message{Kind: MessageCancel, Reason: "the provider offboarded", Time: time.Now()}); err == nil {
			n.log.Info("stopping allocation: forced offboarding", "allocation", a.id())
		}
		stopped = append(stopped, a.id())
	}
	for _, a := range running {
		select {
		case <-a.done:
		case <-ctx.Done():
			return onboarding.OffboardReport{WasOnboarded: true, Previous: n.ledger.Registered(), Affected: affected},
				fmt.Errorf("offboard: allocation %s has not stopped yet (%w); the offer and its locks are kept", a.id(), ctx.Err())
		}
	}
	rep, err := n.onboard.Offboard(ctx, true)
	if err != nil {
		return rep, err
	}
	// The locks were released as each allocation ended; report them as the
	// ones this offboarding took away.
	rep.Affected, rep.Stopped = affected, stopped
	return rep, nil
}

// Accounts are the node's books: the machine, the owner's reserve, the
// offer, what is locked, held and available. reserve, if not nil, shows the
// limits under another reserve than the configured one.
func (n *Node) Accounts(ctx context.Context, reserve *resources.Reserve) (onboarding.Accounts, error) {
	o, err := n.onboard.WithReserveOverride(reserve)
	if err != nil {
		return onboarding.Accounts{}, err
	}
	var usage resources.Usage
	if s, ok := n.latestSample(); ok {
		usage = s.Used
	} else if usage, err = resources.NewHostSampler(n.cfg.Home).Sample(ctx); err != nil {
		return onboarding.Accounts{}, err
	}
	acc, err := o.Accounts(ctx, usage)
	prefs := n.Preferences()
	acc.Executors, acc.Labels = prefs.Executors(), prefs.Labels
	return acc, err
}

func (n *Node) latestSample() (resources.Sample, bool) {
	if n.monitor == nil {
		return resources.Sample{}, false
	}
	return n.monitor.Latest()
}

// BenchmarkCapability measures the machine for d (0: the default) and
// stores the score, which becomes part of every bid.
func (n *Node) BenchmarkCapability(ctx context.Context, d time.Duration, progress func(resources.Progress)) (resources.Benchmark, error) {
	n.offerMu.Lock()
	defer n.offerMu.Unlock()
	return n.onboard.Benchmark(ctx, d, progress)
}

// Onboarded reports whether the node offers anything (and is not being
// offboarded).
func (n *Node) Onboarded() bool {
	return !n.offboarding.Load() && !n.ledger.Registered().IsZero()
}

// RegisteredCapability is the node's offer, persisted.
func (n *Node) RegisteredCapability() capability.Capability { return n.ledger.Registered() }

// AvailableCapability is what new jobs can still get: the offer, capped by
// what the owner's use of the machine leaves, less holds and locks.
func (n *Node) AvailableCapability() capability.Capability { return n.ledger.Available() }

// LockedCapabilities lists the firm locks of running allocations.
func (n *Node) LockedCapabilities() []resources.Lock { return n.ledger.Locks() }

// HeldCapabilities lists the short holds that open bids rest on.
func (n *Node) HeldCapabilities() []resources.Hold { return n.ledger.Holds() }

// Preferences returns the node's preferences.
func (n *Node) Preferences() orchestrator.Preferences { return *n.prefs.Load() }

// DeclinedBid says why this node, as a provider, did not bid for a job it
// heard of ("" when it bid, or never heard of it).
func (n *Node) DeclinedBid(jobID string) string { return n.orch.Declined(jobID) }

// RegisteredBids are the bids this node placed for a job.
func (n *Node) RegisteredBids(jobID string) []orchestrator.Bid { return n.orch.RegisteredBids(jobID) }
