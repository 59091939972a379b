package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/internal/randid"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

// startAllocation turns the job's hold (holdID) into a lock, written in one batch
// with the allocation record, and starts the allocation: its files are
// fetched and laid out first (staging), then it runs.
func (n *Node) startAllocation(holdID string, inv *orchestrator.Invocation) (string, error) {
	ex, err := n.executorFor(inv.Job.Executor)
	if err != nil {
		return "", err
	}
	if err := n.checkMachine(inv.Job.Requirements); err != nil {
		return "", err
	}
	id := "alloc-" + randid.Hex(8)
	a := newAllocation(id, inv, inv.Bid.Requester, time.Now())
	meta, err := json.Marshal(a.Info())
	if err != nil {
		return "", err
	}
	if err := n.ledger.Promote(holdID, id, meta); err != nil {
		return "", fmt.Errorf("lock capability: %w", err)
	}
	n.mu.Lock()
	var refused error
	switch {
	case n.ctx.Err() != nil:
		refused = ErrStopping
	case n.offboarding.Load():
		refused = errors.New("the provider is offboarding")
	}
	if refused != nil {
		n.mu.Unlock()
		_ = n.ledger.Unlock(id)
		return "", refused
	}
	n.allocs[id] = a
	n.mu.Unlock()
	if n.metrics != nil {
		n.metrics.bidsWon.Inc()
	}
	n.log.Info("allocation started", "allocation", id, "job", inv.Job.ID, "requester", inv.Bid.Requester, "capability", inv.Job.Requirements.String())
	go a.run(n.ctx, n.workFor(id, ex, inv), Supervisor{Strategy: n.cfg.Supervisor}, n.cfg.Orchestrator.Provider.AbandonGrace, func(res *orchestrator.Result, stats Statistics) {
		// Locks are released whatever way the allocation ends.
		if err := n.ledger.Unlock(id); err != nil && !errors.Is(err, resources.ErrUnknownLock) {
			n.log.Error("release lock", "allocation", id, "err", err)
		}
		n.log.Info("allocation ended", "allocation", id, "state", res.State, "exit", res.ExitCode, "reason", res.Reason, "restarts", stats.Restarts)
		n.orch.Ran(inv.Bid.Requester, inv.Job.Requirements, stats.RunTime.Std())
		if n.metrics != nil {
			n.metrics.allocRunTime.WithLabelValues(string(res.State)).Observe(stats.RunTime.Seconds())
		}
		n.retire(id)
	})
	return id, nil
}

// checkMachine looks at the machine once more before an allocation starts:
// the monitor's ceiling may have dropped since the bid.
func (n *Node) checkMachine(need capability.Capability) error {
	snap := n.ledger.Snapshot()
	if snap.Ceiling == nil {
		return nil
	}
	room, err := snap.Ceiling.Subtract(snap.Locked)
	if err == nil {
		// This job's own hold is part of Held; everything else held competes.
		others, _ := snap.Held.Subtract(need)
		room, err = room.Subtract(others)
	}
	if err != nil || !need.Fits(room) {
		return fmt.Errorf("the machine no longer has room for %s (the host's own use grew since the bid)", need)
	}
	return nil
}

// executorFor is the executor of a kind, if the preferences allow it.
func (n *Node) executorFor(kind string) (executor.Executor, error) {
	if !slices.Contains(n.Preferences().Executors(), kind) {
		return nil, fmt.Errorf("%w: this provider does not run %s jobs", executor.ErrNotAllowed, kind)
	}
	switch kind {
	case orchestrator.ExecutorWasm:
		return n.wasm, nil
	case orchestrator.ExecutorDocker:
		return n.docker, nil
	case orchestrator.ExecutorNative:
		n.nativeOnce.Do(func() {
			n.native, n.nativeErr = executor.NewNative(true, executor.WithLogger(n.log.With("subsystem", "native")))
		})
		if n.native == nil {
			if n.nativeErr == nil {
				return nil, ErrStopping
			}
			return nil, fmt.Errorf("native executor: %w", n.nativeErr)
		}
		return n.native, nil
	}
	return nil, fmt.Errorf("executor %q: want wasm, docker or native", kind)
}

// retire keeps an ended allocation listed, forgetting the oldest past
// KeepFinished that ended over KeepResults ago.
func (n *Node) retire(id string) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.finished = append(n.finished, id)
	ended := make([]time.Time, len(n.finished))
	for i, f := range n.finished {
		if a := n.allocs[f]; a != nil {
			ended[i] = a.Info().Ended
		}
	}
	forget := toForget(ended, max(n.cfg.KeepFinished, 1), n.cfg.KeepResults, now)
	for _, f := range n.finished[:forget] {
		delete(n.allocs, f)
	}
	n.finished = n.finished[forget:]
}

// toForget is how many of the oldest ended allocations (ended, oldest
// first) to forget: those beyond keep in number, but not one that ended
// less than keepFor before now, whose requester may yet come for its
// result, unless they are more than keptAtMost times keep (requesters
// that run many short jobs must not make a provider hold every output).
func toForget(ended []time.Time, keep int, keepFor time.Duration, now time.Time) int {
	n := 0
	for len(ended)-n > keep && (now.Sub(ended[n]) >= keepFor || len(ended)-n > keptAtMost*keep) {
		n++
	}
	return n
}

// keptAtMost bounds, as a multiple of KeepFinished, the ended allocations
// kept for requesters that may come back for them.
const keptAtMost = 4

func (n *Node) allocation(id string) (*allocation, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.allocs[id]
	if !ok {
		return nil, fmt.Errorf("allocation %s: %w", id, ErrNotFound)
	}
	return a, nil
}

// Allocation returns an allocation's record.
func (n *Node) Allocation(id string) (AllocationInfo, bool) {
	a, err := n.allocation(id)
	if err != nil {
		return AllocationInfo{}, false
	}
	return a.Info(), true
}

// Allocations lists the allocations this node runs or ran, oldest first.
func (n *Node) Allocations() []AllocationInfo {
	n.mu.Lock()
	list := make([]*allocation, 0, len(n.allocs))
	for _, a := range n.allocs {
		list = append(list, a)
	}
	n.mu.Unlock()
	out := make([]AllocationInfo, 0, len(list))
	for _, a := range list {
		out = append(out, a.Info())
	}
	slices.SortFunc(out, func(a, b AllocationInfo) int { return a.Created.Compare(b.Created) })
	return out
}

// RouteToAllocation delivers a message to a running allocation.
func (n *Node) RouteToAllocation(id string, msg Message) error {
	a, err := n.allocation(id)
	if err != nil {
		return err
	}
	if msg.Time.IsZero() {
		msg.Time = time.Now()
	}
	return a.route(msg)
}
