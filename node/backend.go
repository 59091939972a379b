package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/orchestrator"
)

// backend is the node as the bidding protocol's provider side sees it. It
// is unexported so that the node's own API shows what users call, not what
// the protocol calls back.
type backend struct{ n *Node }

var _ orchestrator.Backend = backend{}

func (b backend) Onboarded() bool                       { return b.n.Onboarded() }
func (b backend) Preferences() orchestrator.Preferences { return b.n.Preferences() }

func (b backend) Offer() orchestrator.Offer {
	n := b.n
	reg := n.ledger.Registered()
	score := reg.CPU.Score
	if bm, ok := n.ledger.Benchmark(); ok {
		score = bm.Score
	}
	avail := n.ledger.Available()
	avail.CPU.Arch, avail.CPU.Model, avail.CPU.ClockMHz = n.machine.CPU.Arch, n.machine.CPU.Model, n.machine.CPU.ClockMHz
	return orchestrator.Offer{Registered: reg, Available: avail, Price: reg.Price, Score: score}
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
			d := orchestrator.Declined(orchestrator.ReasonCannotRun, "has no container engine answering")
			d.Err = err
			return d
		}
		if len(req.Requirements.GPUs) > 0 && !info.GPU {
			return orchestrator.Declined(orchestrator.ReasonGPU, "has no NVIDIA runtime to give a container GPUs")
		}
		err = b.n.docker.HasImage(ctx, req.Image)
		if errors.Is(err, executor.ErrNoImage) {
			d := orchestrator.Declined(orchestrator.ReasonNoImage, "lacks image %s", req.Image)
			d.Err = err
			return d
		}
		return err
	default:
		if len(req.Requirements.GPUs) > 0 {
			return orchestrator.Declined(orchestrator.ReasonGPU, "cannot give a %s job GPUs", req.Executor)
		}
	}
	return nil
}

// Holds trusts the cache's index: a bid only claims, and staging checks
// the content before it uses it.
func (b backend) Holds(requester peer.ID, sha256 string, kind orchestrator.BlobKind) bool {
	return b.n.blobs.usable(requester, sha256, kind)
}

// Reserve holds a bid's requirements in the ledger; an offboarding node
// takes no more.
func (b backend) Reserve(holdID string, c capability.Capability, expires time.Time, displaceable []string) ([]string, error) {
	if b.n.offboarding.Load() {
		return nil, errors.New("the provider is offboarding")
	}
	return b.n.ledger.Reserve(holdID, c, expires, displaceable)
}

func (b backend) Release(holdID string) bool { return b.n.ledger.Release(holdID) }
func (b backend) Pin(holdID string) error    { return b.n.ledger.Pin(holdID) }

// Accept turns the job's hold into a lock and starts the allocation.
func (b backend) Accept(holdID string, inv *orchestrator.Invocation) (string, error) {
	return b.n.startAllocation(holdID, inv)
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
