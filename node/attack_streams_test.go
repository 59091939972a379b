package node_test

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/testnet"
)

// rawPeer is a bare go-libp2p host with the swarm key and dms's identify
// version, so the network gate lets it stay: a peer that owns the network's
// key but not dms's code. It has no resource manager of its own, so its
// limits are the victim's alone.
func rawPeer(t *testing.T, ln *testnet.Local) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.PrivateNetwork(ln.PSK),
		libp2p.ProtocolVersion("/dms/"+ln.Network+"/1"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.NoListenAddrs,
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// holdUnnegotiated keeps n streams open to victim that never name a
// protocol: each waits for the victim to give up on it, then opens again.
// It counts the streams the victim took (and later reset) and those it
// refused at once.
func holdUnnegotiated(ctx context.Context, h host.Host, victim peer.ID, n int, opened, refused *atomic.Int64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				// The bare swarm's stream: no multistream header is sent.
				s, err := h.Network().NewStream(ctx, victim)
				if err != nil {
					refused.Add(1)
					pause(ctx, 100*time.Millisecond)
					continue
				}
				// A victim that took the stream speaks first (multistream's
				// header); reading on until it gives up, the stream never
				// names a protocol. One it refused is reset unheard.
				n, _ := io.Copy(io.Discard, s)
				s.Reset()
				if n == 0 {
					refused.Add(1)
					pause(ctx, 100*time.Millisecond) // the attacker's own pace, not a wait on the victim
					continue
				}
				opened.Add(1)
			}
		})
	}
	return &wg
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// TestUnnegotiatedStreamsDoNotDeafenANode: a peer with the swarm key opens
// 200 streams to the requesting node and never negotiates a protocol on
// them, reopening each as soon as it is reset. libp2p holds such streams
// in one shared (transient) scope until they name a protocol; had one peer
// filled it, providers could not deliver their bids. The honest requester
// submits 20 jobs beside the attack and every one completes.
//
// Not parallel: 200 streams re-opened in a loop load the machine, and the
// parallel tests would measure that rather than their own protocol.
func TestUnnegotiatedStreamsDoNotDeafenANode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{
		Nodes: 3, Requesters: []int{1}, Wasm: sharedWasm,
		Offer: capability.Capability{CPU: capability.CPU{MilliCores: 2000}, Memory: capability.GiB, Disk: capability.GiB},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	honest := ln.Nodes[1]

	a := rawPeer(t, ln)
	if err := a.Connect(ctx, honest.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	attack, stop := context.WithCancel(ctx)
	defer stop()
	var opened, refused atomic.Int64
	const streams = 200
	wg := holdUnnegotiated(attack, a, honest.ID(), streams, &opened, &refused)
	// Refusals mean the attacker holds all the victim lets it hold.
	poll.Until(t, 2*time.Minute, "the victim to refuse the attacker's streams", func() bool { return refused.Load() > 0 })

	const jobs = 20
	completed := 0
	start := time.Now()
	for range jobs {
		rec, err := honest.SubmitJob(ctx, tinyJob(), nil)
		if err == nil && rec.State == node.JobCompleted {
			completed++
		} else {
			t.Logf("honest job: %s %v", rec.State, err)
		}
	}
	took := time.Since(start)
	stop()
	wg.Wait()
	t.Logf("attacker: %d streams taken and held until the victim gave up on them, %d refused at once; honest requester: %d of %d jobs completed in %v",
		opened.Load(), refused.Load(), completed, jobs, took.Round(time.Millisecond))
	if opened.Load()+refused.Load() == 0 {
		t.Fatal("the attacker opened no stream: the test shows nothing")
	}
	if completed != jobs {
		t.Fatalf("the honest requester completed %d of %d jobs beside %d unnegotiated streams", completed, jobs, streams)
	}
}
