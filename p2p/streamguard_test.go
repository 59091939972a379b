package p2p

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dms-project/dms/internal/poll"
)

func TestStreamGuardBoundsEachPeersNegotiatingStreams(t *testing.T) {
	stats := newStreamGuardStats(slog.New(slog.DiscardHandler))
	g := newStreamGuard(&network.NullResourceManager{}, 2, stats)
	a, b := peer.ID("a"), peer.ID("b")
	open := func(p peer.ID, dir network.Direction) network.StreamManagementScope {
		t.Helper()
		s, err := g.OpenStream(p, dir)
		if err != nil {
			t.Fatalf("open %s %v: %v", p, dir, err)
		}
		return s
	}
	s1, s2 := open(a, network.DirInbound), open(a, network.DirInbound)
	if _, err := g.OpenStream(a, network.DirInbound); !errors.Is(err, network.ErrResourceLimitExceeded) {
		t.Fatalf("third negotiating stream of one peer: %v, want a resource limit error", err)
	}
	if got := counterValue(t, stats.refused); got != 1 {
		t.Fatalf("refused counter %v, want 1", got)
	}
	// Another peer, and streams we open, are not held to a's count.
	open(b, network.DirInbound)
	open(a, network.DirOutbound)
	// Naming a protocol frees a place; so does ending; each only once.
	if err := s1.SetProtocol("/x/1"); err != nil {
		t.Fatal(err)
	}
	s1.Done()
	s3 := open(a, network.DirInbound)
	if n := g.negotiating(a); n != 2 {
		t.Fatalf("a has %d negotiating streams, want 2", n)
	}
	s2.Done()
	s3.Done()
	s3.Done()
	if n := g.negotiating(a); n != 0 {
		t.Fatalf("a has %d negotiating streams after all ended, want 0", n)
	}
}

// TestHostResetsStreamsThatNameNoProtocol: a bare libp2p peer with the
// swarm key opens more streams than it may and never names a protocol;
// the host refuses those over the bound at once and resets the rest after
// the negotiation timeout, and still answers an honest peer meanwhile.
func TestHostResetsStreamsThatNameNoProtocol(t *testing.T) {
	t.Parallel()
	psk := make([]byte, 32)
	short := func(c *Config) error { c.NegotiationTimeout = 2 * time.Second; return nil }
	hosts := newTestHosts(t, 2, short, WithPSK(psk))
	victim, honest := hosts[0], hosts[1]
	if err := victim.HandleRequest("echo/1", 64, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) { return req, nil }); err != nil {
		t.Fatal(err)
	}
	raw, err := libp2p.New(libp2p.PrivateNetwork(psk), libp2p.ProtocolVersion(victim.version), libp2p.Transport(tcp.NewTCPTransport),
		libp2p.NoListenAddrs, libp2p.ResourceManager(&network.NullResourceManager{}), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := raw.Connect(ctx, victim.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	limit := victim.cfg.MaxNegotiatingStreams
	ended := make(chan error, 2*limit)
	for range 2 * limit {
		s, err := raw.Network().NewStream(ctx, victim.ID())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := io.Copy(io.Discard, s) // never name a protocol
			ended <- err
		}()
	}
	if err := honest.Connect(ctx, victim.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if resp, err := honest.Request(ctx, victim.ID(), "echo/1", []byte("hi"), 64); err != nil || string(resp) != "hi" {
		t.Fatalf("honest request beside the unnegotiated streams: %q %v", resp, err)
	}
	for range 2 * limit {
		select {
		case err := <-ended:
			if err == nil {
				t.Fatal("an unnegotiated stream was closed cleanly, want a reset")
			}
		case <-ctx.Done():
			t.Fatal("unnegotiated streams still open after 2 minutes")
		}
	}
	// The attacker sees its streams reset a moment before the victim's side
	// of each is done with and uncounted.
	g := victim.host.Network().ResourceManager().(*streamGuard)
	poll.Until(t, 2*time.Minute, "the attacker's streams to be uncounted as negotiating", func() bool {
		return g.negotiating(raw.ID()) == 0
	})
	refused, timeouts := counterValue(t, g.stats.refused), counterValue(t, g.stats.timeouts)
	// At least: the attacker's own identify streams may be refused too.
	if refused < 1 || timeouts < 1 || refused+timeouts < float64(2*limit) {
		t.Fatalf("%v streams refused and %v timed out, want some of each and at least %d in all", refused, timeouts, 2*limit)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
