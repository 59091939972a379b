package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

// backend is the node as the bidding protocol's provider side sees it. It
// is unexported so that the node's own API shows what users call, not what
// the protocol calls back.
type backend struct{ n *Node }

var _ orchestrator.Backend = backend{}

func (b backend) Onboarded() bool                       { return b.n.Onboarded() }
func (b backend) Preferences() orchestrator.Preferences { return b.n.Preferences() }

func (b backend) Offer() (capability.Capability, capability.PriceInformation, float64) {
	n := b.n
	reg := n.ledger.Registered()
	score := reg.CPU.Score
	if bm, ok := n.ledger.Benchmark(); ok {
		score = bm.Score
	}
	avail := n.ledger.Available()
	avail.CPU.Arch, avail.CPU.Model, avail.CPU.ClockMHz = n.machine.CPU.Arch, n.machine.CPU.Model, n.machine.CPU.ClockMHz
	return avail, reg.Price, score
}

// Load is the share of the offer that is held or locked, in its tightest
// dimension.
func (b backend) Load() float64 {
	s := b.n.ledger.Snapshot()
	used, err := s.Held.Add(s.Locked)
	if err != nil {
		return 1
	}
	frac := func(u, r uint64) float64 {
		if r == 0 {
			return 0
		}
		return float64(u) / float64(r)
	}
	return max(frac(used.CPU.MilliCores, s.Registered.CPU.MilliCores), frac(used.Memory, s.Registered.Memory), frac(used.Disk, s.Registered.Disk))
}

// CanRun checks what capacity does not: a container job needs an engine,
// the image on this machine, and the NVIDIA runtime if it asks for GPUs; a
// wasm job asking for GPUs could not use them.
func (b backend) CanRun(ctx context.Context, req *orchestrator.BidRequest) error {
	switch req.Executor {
	case orchestrator.ExecutorDocker:
		info, err := b.n.docker.Engine(ctx)
		if err != nil {
			return err
		}
		if len(req.Requirements.GPUs) > 0 && !info.GPU {
			return errors.New("the Docker engine here has no NVIDIA runtime to give a container GPUs")
		}
		return b.n.docker.HasImage(ctx, req.Image)
	default:
		if len(req.Requirements.GPUs) > 0 {
			return fmt.Errorf("a %s job cannot use GPUs", req.Executor)
		}
	}
	return nil
}

func (b backend) Hold(pb *orchestrator.PlacedBid, admit func(capability.Capability, []*orchestrator.PlacedBid) ([]*orchestrator.PlacedBid, error)) ([]*orchestrator.PlacedBid, error) {
	if b.n.offboarding.Load() {
		return nil, errors.New("the provider is offboarding")
	}
	id := orchestrator.HoldID(pb.Request.Requester, pb.Bid.JobID)
	dropped, err := b.n.ledger.HoldIf(id, pb.Request.Requirements, pb.Bid.HoldExpires, pb, func(registered capability.Capability, holds []resources.Hold) ([]string, error) {
		open := make([]*orchestrator.PlacedBid, 0, len(holds))
		for _, h := range holds {
			if other, ok := h.Attached.(*orchestrator.PlacedBid); ok {
				open = append(open, other)
			}
		}
		preemptible, err := admit(registered, open)
		ids := make([]string, len(preemptible))
		for i, o := range preemptible {
			ids[i] = orchestrator.HoldID(o.Request.Requester, o.Bid.JobID)
		}
		return ids, err
	})
	if err != nil {
		return nil, err
	}
	displaced := make([]*orchestrator.PlacedBid, 0, len(dropped))
	for _, h := range dropped {
		if o, ok := h.Attached.(*orchestrator.PlacedBid); ok {
			displaced = append(displaced, o)
		}
	}
	return displaced, nil
}

func (b backend) HasHold(requester peer.ID, jobID string) bool {
	return b.n.ledger.HasHold(orchestrator.HoldID(requester, jobID))
}

func (b backend) ClaimHold(requester peer.ID, jobID string, check func(*orchestrator.PlacedBid) error) (*orchestrator.PlacedBid, error) {
	got, err := b.n.ledger.ClaimHold(orchestrator.HoldID(requester, jobID), func(attached any) error {
		pb, ok := attached.(*orchestrator.PlacedBid)
		if !ok {
			return fmt.Errorf("job %s: %w (held for something else)", jobID, orchestrator.ErrNoHold)
		}
		return check(pb)
	})
	if errors.Is(err, resources.ErrUnknownHold) {
		return nil, fmt.Errorf("job %s: %w", jobID, orchestrator.ErrNoHold)
	}
	if err != nil {
		return nil, err
	}
	return got.(*orchestrator.PlacedBid), nil
}

func (b backend) ReleaseHold(requester peer.ID, jobID string) bool {
	return b.n.ledger.ReleaseHold(orchestrator.HoldID(requester, jobID))
}

// Accept turns the job's hold into a lock and starts the allocation.
func (b backend) Accept(inv *orchestrator.Invocation) (string, error) {
	return b.n.startAllocation(inv)
}

// Watch lets only the allocation's requester follow it.
func (b backend) Watch(ctx context.Context, id string, requester peer.ID) (<-chan orchestrator.Event, error) {
	a, err := b.n.allocation(id)
	if err != nil {
		return nil, err
	}
	if a.Info().Requester != requester {
		return nil, fmt.Errorf("allocation %s belongs to another requester", id)
	}
	a.followed(ctx)
	return a.watch(ctx), nil
}

// Cancel lets only the allocation's requester stop it.
func (b backend) Cancel(id string, requester peer.ID) error {
	a, err := b.n.allocation(id)
	if err != nil {
		return err
	}
	if a.Info().Requester != requester {
		return fmt.Errorf("allocation %s belongs to another requester", id)
	}
	return b.n.RouteToAllocation(id, Message{Kind: MessageCancel, From: requester, Reason: "cancelled by the requester", Time: time.Now()})
}
