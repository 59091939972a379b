package node_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

// TestAKnownRequesterCannotHoldEveryOffer: a peer runs one tiny job on
// every provider, so that each knows it, then asks for whole offers as
// fast as it may and releases every hold just before it would lapse: no
// lapse, no job, every offer held. An honest requester new to the
// providers submits jobs of the sample module meanwhile (20); all of them
// complete. Holds released without running cost their requester in
// proportion to what they held, and one that has held far more than it
// ran gives way to others.
//
// Then fifty identities do the same, each at 2 requests a second, each
// known by a tiny job on every provider: 100 requests a second in all, as
// before, every offer held in turns. Each owes little, but together they
// owe what they held; having run no more than a tiny job each, none of
// them takes the honest requester's place on that debt, however slowly it
// invokes, while it takes theirs (a newcomer, or one that has run here far
// more than they have: see orchestrator/book.go; under the rule before
// it, 2 and 8 of 10 honest jobs completed in two runs). Fifty hosts under
// the race detector load a small machine, so this one runs 10 honest jobs
// on two providers (fifty identities for two offers: a stronger attack,
// not a weaker one).
//
// Not parallel: the attacker publishes 100 requests a second, and tests
// beside it would then measure the load, not the protocol.
func TestAKnownRequesterCannotHoldEveryOffer(t *testing.T) {
	for _, tc := range []struct {
		name       string
		identities int
		every      time.Duration // each identity asks this often
		providers  int
		jobs       int // the honest requester's
	}{
		{"one identity, 100 requests a second", 1, 10 * time.Millisecond, 3, 20},
		{"50 identities, 2 requests a second each", 50, 500 * time.Millisecond, 2, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			holdEveryOffer(t, tc.identities, tc.every, tc.providers, tc.jobs)
		})
	}
}

// holdEveryOffer runs the attack with identities identities, each asking
// for a whole offer every so often, on offers providers, beside an
// honest requester's jobs.
func holdEveryOffer(t *testing.T, identities int, every time.Duration, offers, jobs int) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var log *slog.Logger
	if path := os.Getenv("DMS_TEST_DEBUG_FILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{
		Nodes: 1 + offers, Requesters: []int{1}, Wasm: sharedWasm, Logger: log,
		Configure: func(i int, c *node.Config) {
			if i == 1 {
				// Asks every provider: attacking peers would otherwise
				// count in its estimate of the network and shrink the
				// share it asks to bid, another attack with a test of its
				// own; this one is about holds.
				c.Orchestrator.Requester.SpreadFactor = 0
				// The longest window: a hundred requests a second
				// under the race detector on a busy machine delay its
				// requests and bids by seconds, and a request that
				// arrives after its window is dropped unseen, which
				// says nothing about holds. Bidding still closes a
				// moment after the first bid.
				c.Orchestrator.Requester.BiddingWindow = orchestrator.MaxBiddingWindow
			}
		},
		Offer: capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB, Disk: capability.GiB},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// The sample module is compiled once per process, ahead: a minute of
	// it under the race detector is not what the honest jobs measure.
	if err := sharedWasm.Compile(ctx, examples.HelloWasm); err != nil {
		t.Fatal(err)
	}
	honest := ln.Nodes[1]
	var providers []*node.Node
	for i, n := range ln.Nodes {
		if i != 1 {
			providers = append(providers, n)
		}
	}
	// One machine publishes for every identity (gossip carries no
	// author); each identity has a light host of its own for its bids.
	publisher := newAttacker(t, ln, true, providers[0].AddrInfo(), providers[1].AddrInfo())
	attackers := make([]*attacker, identities)
	var wg sync.WaitGroup
	for i := range attackers {
		if i == 0 {
			attackers[i] = publisher
			continue
		}
		wg.Go(func() {
			attackers[i] = newAttacker(t, ln, false, providers[i%len(providers)].AddrInfo(), providers[(i+1)%len(providers)].AddrInfo())
		})
	}
	wg.Wait()

	// One tiny job on each provider (10 millicores, 1 s at most), invoked
	// by the protocol as dms does: from then on every provider knows each
	// identity.
	tiny := orchestrator.JobSpec{
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 10}, Memory: 64 * capability.MiB},
		Duration:     seconds.Duration(time.Second), Executor: orchestrator.ExecutorWasm, Module: examples.TinyWasm,
	}
	var tinyRun atomic.Int64
	for _, a := range attackers {
		wg.Go(func() {
			ranOn := map[peer.ID]bool{}
			tinyJobs := map[string]bool{}
			deadline := time.Now().Add(3 * time.Minute)
			for len(ranOn) < len(providers) && time.Now().Before(deadline) {
				job := tiny
				job.ID = orchestrator.NewJobID()
				tinyJobs[job.ID] = true
				if err := publisher.publishFor(ctx, a, &job, time.Now().Add(5*time.Second)); err != nil {
					t.Error(err)
					return
				}
				wait := time.NewTimer(2 * time.Second)
			collect:
				for len(ranOn) < len(providers) {
					select {
					case sb := <-a.got:
						if !tinyJobs[sb.Bid.JobID] || ranOn[sb.Bid.Provider] {
							continue
						}
						job.ID = sb.Bid.JobID
						if reply, err := a.send(ctx, sb.Bid.Provider, &orchestrator.InvokeMessage{Invocation: &orchestrator.Invocation{Bid: *sb, Job: job}}); err == nil && reply.Accepted {
							ranOn[sb.Bid.Provider] = true
							tinyRun.Add(1)
						}
					case <-wait.C:
						break collect
					}
				}
				wait.Stop()
			}
		})
	}
	wg.Wait()
	if n := tinyRun.Load(); n != int64(identities*len(providers)) {
		t.Fatalf("the attackers ran %d tiny jobs, want one on each provider for each of %d identities", n, identities)
	}

	// Whole offers, each identity asking every so often, each hold
	// released half a second before it would lapse.
	displacedSoFar := func() int64 {
		n := int64(0)
		for _, p := range providers {
			n += p.Diagnostics().Stats().HoldsDisplaced
		}
		return n
	}
	// Tiny jobs' bids pushed aside before the attack do not count.
	displacedBefore := displacedSoFar()
	attack, stop := context.WithCancel(ctx)
	defer stop()
	var published, released atomic.Int64
	var releases sync.WaitGroup
	for k, a := range attackers {
		wg.Go(func() {
			// Staggered, so that fifty do not all ask at once.
			select {
			case <-time.After(time.Duration(k) * every / time.Duration(len(attackers))):
			case <-attack.Done():
				return
			}
			tick := time.NewTicker(every)
			defer tick.Stop()
			whole := orchestrator.JobSpec{
				Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: 64 * capability.MiB},
				Duration:     seconds.Duration(time.Hour), Executor: orchestrator.ExecutorWasm,
			}
			for {
				whole.ID = orchestrator.NewJobID()
				if publisher.publishFor(attack, a, &whole, time.Now().Add(orchestrator.MaxBiddingWindow)) == nil {
					published.Add(1)
				}
				select {
				case <-tick.C:
				case <-attack.Done():
					return
				}
			}
		})
		wg.Go(func() {
			for {
				select {
				case sb := <-a.got:
					releases.Add(1)
					time.AfterFunc(time.Until(sb.Bid.HoldExpires.Add(-500*time.Millisecond)), func() {
						defer releases.Done()
						// Accepted: the hold was still there to release.
						if reply, err := a.send(ctx, sb.Bid.Provider, &orchestrator.InvokeMessage{ReleaseJob: sb.Bid.JobID}); err == nil && reply.Accepted {
							released.Add(1)
						}
					})
				case <-attack.Done():
					return
				}
			}
		})
	}
	isAttacker := map[string]bool{}
	for _, a := range attackers {
		isAttacker[a.host.ID().String()] = true
	}
	attackerHolds := func(n *node.Node) int {
		held := 0
		for _, h := range n.HeldCapabilities() {
			if _, requester, ok := strings.Cut(h.ID, ":"); ok && isAttacker[requester] {
				held++
			}
		}
		return held
	}
	// The attack is under way, as the honest requester finds it: every
	// offer held, two holds on each ended unrun already, released or
	// pushed aside by another identity's bid (fifty identities push each
	// other's aside when they owe apart). Before that, an attacker is no
	// different from a requester holding bids for its jobs while bidding
	// is open.
	// Minutes: fifty hosts under the race detector on a busy machine.
	var seen []int
	ended := func() int64 { return released.Load() + displacedSoFar() - displacedBefore }
	defer func() {
		if t.Failed() {
			t.Logf("attackers' holds by provider, as last seen: %v; %d released unrun", seen, released.Load())
		}
	}()
	poll.Until(t, 4*time.Minute, "the attackers to hold on every provider, and to have held some unrun", func() bool {
		seen = seen[:0]
		for _, p := range providers {
			seen = append(seen, attackerHolds(p))
		}
		return !slices.Contains(seen, 0) && ended() >= int64(2*len(providers))
	})

	completed := 0
	var took []time.Duration
	for range jobs {
		sub := tinyJob()
		sub.Job.Module = examples.HelloWasm
		sub.Job.Args = []string{"world"}
		// Generous, for a busy machine: a job that no attack hinders
		// takes well under a second.
		jctx, jcancel := context.WithTimeout(ctx, time.Minute)
		start := time.Now()
		rec, err := honest.SubmitJob(jctx, sub, nil)
		jcancel()
		if err == nil && rec.State == node.JobCompleted {
			completed++
			took = append(took, time.Since(start).Round(time.Millisecond))
		} else {
			t.Logf("honest job: %s %v", rec.State, err)
		}
	}
	held := 0
	for _, p := range providers {
		if attackerHolds(p) > 0 {
			held++
		}
	}
	stop()
	wg.Wait()
	releases.Wait()
	var bids, throttled, displaced int64
	for _, a := range attackers {
		bids += a.bids.Load()
	}
	for _, p := range providers {
		s := p.Diagnostics().Stats()
		throttled, displaced = throttled+s.RequestersThrottled, displaced+s.HoldsDisplaced
	}
	t.Logf("%d attacking identities: %d tiny jobs run, %d bid requests published, %d bids taken, %d holds released unrun; holding on %d of %d providers at the end; providers throttled them %d times and displaced %d holds",
		identities, tinyRun.Load(), published.Load(), bids, released.Load(), held, len(providers), throttled, displaced)
	t.Logf("honest requester: %d of %d jobs completed, taking %v", completed, jobs, took)
	if completed != jobs {
		t.Fatalf("the honest requester completed %d of %d jobs beside requesters that hold without running", completed, jobs)
	}
	if identities == 1 && throttled+displaced == 0 {
		// Fifty identities may each hold briefly enough to owe little,
		// and leave free capacity often enough: nothing to push aside.
		t.Fatal("no provider throttled the requesters that held without running, or displaced their holds")
	}
}

// publishFor sends a bid request for job, sealed by (and so from) as,
// through a's gossip, bidding open until deadline.
func (a *attacker) publishFor(ctx context.Context, as *attacker, job *orchestrator.JobSpec, deadline time.Time) error {
	req := &orchestrator.BidRequest{
		JobID: job.ID, Requester: as.host.ID(), Requirements: job.Requirements, Duration: job.Duration,
		Executor: job.Executor, Deadline: deadline, Nonce: orchestrator.NewJobID(), SentAt: time.Now(), WantBids: 3,
	}
	data, err := orchestrator.SealBidRequest(req, as.key)
	if err != nil {
		return err
	}
	return a.topic.Publish(ctx, data)
}

// send is one message on the invoke protocol, as a requester sends it.
func (a *attacker) send(ctx context.Context, to peer.ID, msg *orchestrator.InvokeMessage) (*orchestrator.InvokeReply, error) {
	data, err := orchestrator.EncodeInvokeMessage(msg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := a.host.Request(ctx, to, orchestrator.ProtocolInvoke, data, orchestrator.MaxReplySize)
	if err != nil {
		return nil, err
	}
	if msg.ReleaseJob != "" {
		// A release's reply has no allocation, which DecodeInvokeReply
		// takes for a malformed acceptance.
		var reply orchestrator.InvokeReply
		return &reply, json.Unmarshal(out, &reply)
	}
	return orchestrator.DecodeInvokeReply(out)
}
