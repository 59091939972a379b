package node_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/testnet"
)

// attacker is a peer with the swarm key that speaks the protocol as it
// likes: it publishes sealed bid requests of its choosing and accepts
// every bid, never invoking one, so providers hold for it.
type attacker struct {
	host  *p2p.Host
	key   crypto.PrivKey
	topic p2p.Topic
	bids  atomic.Int64
	// got has the bids taken, for an attacker that acts on them; those
	// that find it full are only counted.
	got chan *orchestrator.SignedBid
}

// newAttacker starts one; with gossip, it joins the bid-request topic (one
// that does not only takes bids, for requests another attacker publishes).
func newAttacker(t *testing.T, ln *testnet.Local, gossip bool, boot ...peer.AddrInfo) *attacker {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := p2p.New(ctx, p2p.WithConfig(p2p.LocalConfig()), p2p.WithPrivKey(key), p2p.WithNetwork(ln.Network), p2p.WithPSK(ln.PSK), p2p.WithBootstrap(boot...), p2p.WithLogger(slog.New(slog.DiscardHandler)),
		// Light, so that fifty of them in one process leave the machine
		// to the network under test: no DHT service, no discovery rounds.
		p2p.WithDHTMode(p2p.DHTModeClient), p2p.WithDiscoveryInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	a := &attacker{host: h, key: key, got: make(chan *orchestrator.SignedBid, 256)}
	if err := h.HandleRequest(orchestrator.ProtocolBid, 64<<10, func(_ context.Context, _ peer.ID, data []byte) ([]byte, error) {
		a.bids.Add(1)
		if sb, err := orchestrator.OpenBid(data); err == nil {
			select {
			case a.got <- sb:
			default:
			}
		}
		return []byte("{}"), nil
	}); err != nil {
		t.Fatal(err)
	}
	if !gossip {
		return a
	}
	a.topic, err = h.JoinTopic(orchestrator.TopicBidRequests, func(_ context.Context, _ peer.ID, data []byte) (peer.ID, any, error) {
		r, err := orchestrator.OpenBidRequest(data)
		if err != nil {
			return "", nil, err
		}
		return r.Requester, r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { // drain
		for range a.topic.Messages() {
		}
	}()
	return a
}

// ask publishes a request for cpu millicores with the longest window the
// protocol allows, as job jobID ("" picks one).
func (a *attacker) ask(ctx context.Context, cpu uint64, jobID string) error {
	return a.askFor(ctx, a, cpu, jobID)
}

// askFor publishes, through a's gossip, a request sealed by (and so from)
// the identity of as: gossip messages carry no author, so one machine may
// speak for many identities, each of which takes its own bids.
func (a *attacker) askFor(ctx context.Context, as *attacker, cpu uint64, jobID string) error {
	now := time.Now()
	if jobID == "" {
		jobID = orchestrator.NewJobID()
	}
	req := &orchestrator.BidRequest{
		JobID: jobID, Requester: as.host.ID(),
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: cpu}, Memory: 64 * capability.MiB},
		Duration:     seconds.Duration(time.Hour), Executor: orchestrator.ExecutorWasm,
		Deadline: now.Add(orchestrator.MaxBiddingWindow), Nonce: orchestrator.NewJobID(), SentAt: now,
	}
	data, err := orchestrator.SealBidRequest(req, as.key)
	if err != nil {
		return err
	}
	return a.topic.Publish(ctx, data)
}

func tinyJob() orchestrator.Submission {
	return orchestrator.Submission{Job: orchestrator.JobSpec{
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 500}, Memory: 64 * capability.MiB},
		Duration:     seconds.Duration(30 * time.Second), Executor: orchestrator.ExecutorWasm, Module: examples.TinyWasm,
	}}
}

// TestExhaustionLeavesRoomForKnownRequesters: one peer flooding bid
// requests, or 50 fresh identities, try to keep every provider's offer
// held, while an honest requester that has run jobs before keeps
// submitting. Its jobs all complete: newcomers together hold at most their
// share of each offer, and the flood is cut down at the validator.
//
// Not parallel: fifty hosts in one process load the machine, and the
// tests beside it would then measure the load, not the protocol (tests
// that are not parallel run before the parallel ones).
func TestExhaustionLeavesRoomForKnownRequesters(t *testing.T) {
	for _, tc := range []struct {
		name       string
		identities int
		flood      int           // requests each identity first publishes as fast as it can
		every      time.Duration // then one each this often, to keep its holds up
	}{
		{"one peer flooding", 1, 300, 300 * time.Millisecond},
		// Fifty identities in one process on a small machine: each asks
		// at an honest pace, or the test measures the machine's CPU, not
		// the protocol. What they can hold is what matters.
		{"50 fresh identities", 50, 1, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Seven jobs with a bidding window of up to 15 s each, beside
			// fifty hosts in one process: on a busy machine this takes
			// minutes. Too short a deadline ends the last honest job, and
			// the test would blame the attack for the machine's load.
			ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
			defer cancel()
			var log *slog.Logger
			if os.Getenv("DMS_TEST_DEBUG") != "" {
				log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{
				Nodes: 5, Requesters: []int{1}, Wasm: sharedWasm, Logger: log,
				Configure: func(i int, c *node.Config) {
					if i == 1 {
						// Bids come slower from a machine this busy.
						c.Orchestrator.Requester.BiddingWindow = 15 * time.Second
					}
				},
				Offer: capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB, Disk: capability.GiB},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			honest := ln.Nodes[1]
			// The honest requester has run jobs here before.
			for range 2 {
				if rec, err := honest.SubmitJob(ctx, tinyJob(), nil); err != nil || rec.State != node.JobCompleted {
					t.Fatalf("warm-up job: %s %v", rec.State, err)
				}
			}
			// One machine publishes for every identity; each identity has a
			// host of its own to take its bids (off the topic, so fifty of
			// them in one process leave the machine to the network under
			// test).
			publisher := newAttacker(t, ln, true, ln.Nodes[0].AddrInfo(), ln.Nodes[2].AddrInfo())
			attackers := make([]*attacker, tc.identities)
			var wg sync.WaitGroup
			for i := range attackers {
				if i == 0 {
					attackers[i] = publisher
					continue
				}
				wg.Go(func() {
					attackers[i] = newAttacker(t, ln, false, ln.Nodes[i%len(ln.Nodes)].AddrInfo(), ln.Nodes[(i+2)%len(ln.Nodes)].AddrInfo())
				})
			}
			wg.Wait()
			// Each identity asks for half an offer, what newcomers may
			// hold together, and for a whole one, which they may not.
			attack, stop := context.WithCancel(ctx)
			defer stop()
			var published atomic.Int64
			for k, a := range attackers {
				wg.Go(func() {
					// Staggered, so that fifty do not all ask at once.
					select {
					case <-time.After(time.Duration(k) * tc.every / time.Duration(len(attackers))):
					case <-attack.Done():
					}
					for i := 0; attack.Err() == nil; i++ {
						// Half an offer, what newcomers may hold together,
						// and now and then a whole one, which they may not.
						cpu := uint64(500)
						if i%4 == 3 {
							cpu = 1000
						}
						if publisher.askFor(attack, a, cpu, "") == nil {
							published.Add(1)
						}
						if i >= tc.flood {
							select {
							case <-time.After(tc.every):
							case <-attack.Done():
							}
						}
					}
				})
			}
			poll.Until(t, 2*time.Minute, "the attackers to be holding bids on every provider", func() bool {
				held := 0
				for _, n := range ln.Nodes {
					if len(n.HeldCapabilities()) > 0 {
						held++
					}
				}
				return held == len(ln.Nodes)-1
			})
			const jobs = 5
			completed := 0
			for range jobs {
				rec, err := honest.SubmitJob(ctx, tinyJob(), nil)
				if err == nil && rec.State == node.JobCompleted {
					completed++
				} else {
					t.Logf("honest job: %s %v", rec.State, err)
				}
			}
			stop()
			wg.Wait()
			var bids int64
			for _, a := range attackers {
				bids += a.bids.Load()
			}
			t.Logf("%d identities published %d bid requests and got %d bids; the honest requester completed %d of %d jobs", tc.identities, published.Load(), bids, completed, jobs)
			if bids == 0 {
				t.Fatal("no attacker got a bid: the attack never held anything, so the test shows nothing")
			}
			if completed != jobs {
				t.Fatalf("the honest requester completed %d of %d jobs under the attack", completed, jobs)
			}
			// Whatever the attackers held, the ledgers never overcommitted.
			for i, n := range ln.Nodes {
				if s := n.LedgerSnapshot(); !mustAdd(t, s.Held, s.Locked).Fits(s.Registered) {
					t.Fatalf("node %d: held %s + locked %s exceed registered %s", i, s.Held, s.Locked, s.Registered)
				}
			}
		})
	}
}

func mustAdd(t *testing.T, a, b capability.Capability) capability.Capability {
	t.Helper()
	c, err := a.Add(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAJobIDClaimedFirstByAnotherPeer: a peer that sees (or guesses) a job
// ID and publishes a request for it first gets its own bids, and the job's
// real requester still gets its: holds and bids are keyed by requester and
// job, not by job alone.
func TestAJobIDClaimedFirstByAnotherPeer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{
		Nodes: 3, Requesters: []int{1}, Wasm: sharedWasm,
		Offer: capability.Capability{CPU: capability.CPU{MilliCores: 2000}, Memory: capability.GiB, Disk: capability.GiB},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	a := newAttacker(t, ln, true, ln.Nodes[0].AddrInfo(), ln.Nodes[2].AddrInfo())
	sub := tinyJob()
	sub.Job.ID = orchestrator.NewJobID()
	// Asked again until both providers hold for it: a request sent before
	// gossip has grafted its mesh may miss one (they do not bid twice).
	last := time.Time{}
	poll.Until(t, 2*time.Minute, "the squatter to get its bids", func() bool {
		if time.Since(last) > time.Second {
			last = time.Now()
			if err := a.ask(ctx, 500, sub.Job.ID); err != nil {
				t.Fatal(err)
			}
		}
		return a.bids.Load() >= 2
	})
	rec, err := ln.Nodes[1].SubmitJob(ctx, sub, nil)
	if err != nil || rec.State != node.JobCompleted {
		t.Fatalf("the job whose ID was claimed first: %s %v", rec.State, err)
	}
	for i, n := range []*node.Node{ln.Nodes[0], ln.Nodes[2]} {
		if bids := n.RegisteredBids(sub.Job.ID); len(bids) != 2 || bids[0].Requester == bids[1].Requester {
			t.Fatalf("provider %d placed %d bids for the job, want one to each requester: %+v", i, len(bids), bids)
		}
	}
}

// TestAllocationOfAGoneRequesterIsStopped: the requester of a running job
// is killed; the provider, no longer hearing it follow the allocation,
// stops it after its grace period and releases the lock, rather than
// running it to its timeout for nobody.
func TestAllocationOfAGoneRequesterIsStopped(t *testing.T) {
	t.Parallel()
	nodes := newNetwork(t, 3, 1000, nil)
	p, _ := startLong(t, nodes)
	provider := byID(nodes, p)
	if provider == nil {
		t.Fatal("no provider for the long job")
	}
	poll.Until(t, 30*time.Second, "the long job to run", func() bool {
		info, _ := provider.Allocation(p.AllocationID)
		return info.State == orchestrator.StateRunning
	})
	if err := nodes[1].Close(); err != nil { // the requester goes away
		t.Fatal(err)
	}
	var info node.AllocationInfo
	// Its grace is 3 s (LocalConfig); the deadline is for a busy machine.
	poll.Until(t, 60*time.Second, "the provider to stop the abandoned allocation", func() bool {
		info, _ = provider.Allocation(p.AllocationID)
		return info.State.Final()
	})
	if info.State != orchestrator.StateCancelled || info.Result == nil || !strings.Contains(info.Result.Reason, "abandoned") {
		t.Fatalf("allocation ended %s (%+v), want cancelled as abandoned", info.State, info.Result)
	}
	if locks := provider.LockedCapabilities(); len(locks) != 0 {
		t.Fatalf("locks left after the abandoned allocation stopped: %+v", locks)
	}
	t.Logf("stopped: %s", info.Result.Reason)
}
