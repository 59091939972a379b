package p2p

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dms-project/dms/internal/poll"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestMesh starts ten hosts that know only host 0, checks that they find
// each other and that gossip reaches all of them, then closes host 0 and
// checks that the rest still deliver to each other. A host of another
// network, also pointed at host 0, must stay out.
func TestMesh(t *testing.T) {
	const n = 10
	start := time.Now()
	boot := newTestHost(t)
	hosts := append([]*Host{boot}, newTestHosts(t, n-1, WithBootstrap(boot.AddrInfo()))...)
	outsider := newTestHost(t, WithNetwork("other"), WithBootstrap(boot.AddrInfo()))
	t.Logf("%d hosts started in %v", n+1, time.Since(start))

	topics := make([]Topic, n)
	for i, h := range hosts {
		tp, err := h.JoinTopic("test/1", acceptAll)
		if err != nil {
			t.Fatalf("host %d: JoinTopic: %v", i, err)
		}
		topics[i] = tp
	}
	outTopic, err := outsider.JoinTopic("test/1", acceptAll)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("forms", func(t *testing.T) {
		poll.Until(t, 20*time.Second, "every host to reach 3 peers, one of them not the bootstrap node", func() bool {
			for _, h := range hosts {
				peers := h.Peers()
				other := false
				for _, p := range peers {
					if p != boot.ID() && p != outsider.ID() {
						other = true
					}
				}
				if len(peers) < 3 || (h != boot && !other) {
					return false
				}
			}
			return true
		})
		t.Logf("mesh of %d formed %v after the first host started", n, time.Since(start))
	})

	t.Run("delivers", func(t *testing.T) {
		pub := hosts[5]
		if err := topics[5].Publish(ctx, []byte("hello|"+pub.ID().String())); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		expectDelivery(ctx, t, topics, 5, pub.ID(), "hello|"+pub.ID().String())
	})

	t.Run("rejects invalid", func(t *testing.T) {
		// Our own validator runs on our own messages: nothing invalid leaves.
		if err := topics[2].Publish(ctx, []byte("bad")); err == nil {
			t.Fatal("Publish of an invalid message succeeded")
		}
	})

	t.Run("outsider stays out", func(t *testing.T) {
		select {
		case m := <-outTopic.Messages():
			t.Fatalf("host of another network received %q", m.Data)
		default:
		}
		for i, h := range hosts {
			if h.kad.RoutingTable().Find(outsider.ID()) != "" {
				t.Errorf("host %d has the outsider in its DHT routing table", i)
			}
			for _, p := range topics[i].ListPeers() {
				if p == outsider.ID() {
					t.Errorf("host %d sees the outsider on its topic", i)
				}
			}
		}
		if size := outsider.kad.RoutingTable().Size(); size != 0 {
			t.Errorf("outsider's routing table has %d peers", size)
		}
		// The network gate hangs up on it after identify (it redials its
		// bootstrap node while alone, so look for a moment without it).
		poll.Until(t, 5*time.Second, "bootstrap node to drop the outsider", func() bool {
			return !boot.connected(outsider.ID())
		})
	})

	t.Run("survives bootstrap loss", func(t *testing.T) {
		if err := boot.Close(); err != nil {
			t.Fatalf("close bootstrap host: %v", err)
		}
		rest, restTopics := hosts[1:], topics[1:]
		poll.Until(t, 10*time.Second, "hosts to notice the bootstrap node left", func() bool {
			for _, h := range rest {
				if h.connected(boot.ID()) {
					return false
				}
			}
			return true
		})
		if err := restTopics[2].Publish(ctx, []byte("after|"+rest[2].ID().String())); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		expectDelivery(ctx, t, restTopics, 2, rest[2].ID(), "after|"+rest[2].ID().String())
	})
}

// expectDelivery waits until every topic but topics[from] has received want
// from author.
func expectDelivery(ctx context.Context, t *testing.T, topics []Topic, from int, author peer.ID, want string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(topics))
	for i, tp := range topics {
		if i == from {
			continue
		}
		wg.Go(func() {
			m, err := receive(ctx, tp, want)
			switch {
			case err != nil:
				errs[i] = err
			case m.From != author:
				errs[i] = fmt.Errorf("message from %s, want %s", m.From, author)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("topic %d: %v", i, err)
		}
	}
}
