package p2p

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/internal/poll"
)

func TestConnInfoAndEstimatePeers(t *testing.T) {
	hosts := newTestHosts(t, 2)
	a, b := hosts[0], hosts[1]
	if addrs, dir, _ := a.ConnInfo(b.ID()); len(addrs) != 0 || dir != "" {
		t.Fatalf("before any connection: addrs %v, direction %q; want none", addrs, dir)
	}
	if n := a.EstimatePeers(); n != 0 {
		t.Fatalf("a lone host estimates %d peers, want 0", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	addrs, dir, _ := a.ConnInfo(b.ID())
	if dir != "outbound" || len(addrs) == 0 || !strings.Contains(addrs[0], "127.0.0.1") {
		t.Fatalf("the dialler sees addrs %v, direction %q; want b's loopback address, outbound", addrs, dir)
	}
	// b sees the connection once a's dial has completed on its side too.
	poll.Until(t, 20*time.Second, "b to see a's connection", func() bool {
		_, dir, _ := b.ConnInfo(a.ID())
		return dir != ""
	})
	if _, dir, _ := b.ConnInfo(a.ID()); dir != "inbound" {
		t.Fatalf("the dialled host sees direction %q, want inbound", dir)
	}
	if n := a.EstimatePeers(); n < 1 {
		t.Fatalf("a connected host estimates %d peers, want at least 1", n)
	}
}

// KnownPeers with a protocol name lists only the peers identify says
// speak it: a host that merely sits in the mesh is not asked to bid.
func TestKnownPeersByProtocol(t *testing.T) {
	hosts := newTestHosts(t, 3)
	a, speaker, idle := hosts[0], hosts[1], hosts[2]
	if err := speaker.HandleRequest("echo/1", 16, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) { return req, nil }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, h := range []*Host{speaker, idle} {
		if err := a.Connect(ctx, h.AddrInfo()); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 20*time.Second, "a to learn that speaker speaks echo/1", func() bool {
		return slices.Equal(a.KnownPeers("echo/1"), []peer.ID{speaker.ID()})
	})
	if all := a.KnownPeers(""); len(all) != 2 {
		t.Fatalf("KnownPeers(\"\") = %v, want both connected peers", all)
	}
}

func TestLivePeersCountsOnlyPeersKnownToBeThere(t *testing.T) {
	now := time.Now()
	a, b, c, d := peer.ID("a"), peer.ID("b"), peer.ID("c"), peer.ID("d")
	for _, tc := range []struct {
		name      string
		connected []peer.ID
		table     []answeredPeer
		want      int
	}{
		{"nobody", nil, nil, 0},
		{"connected only", []peer.ID{a, b}, nil, 2},
		{"connected and in the table count once", []peer.ID{a}, []answeredPeer{{a, now}}, 1},
		{"a table peer that answered lately counts", []peer.ID{a}, []answeredPeer{{b, now.Add(-time.Second)}}, 2},
		{"table peers silent too long, or never asked, do not", []peer.ID{a}, []answeredPeer{{c, now.Add(-time.Hour)}, {d, time.Time{}}}, 1},
	} {
		if got := len(livePeers(tc.connected, tc.table, now.Add(-answeredRecently))); got != tc.want {
			t.Errorf("%s: %d peers, want %d", tc.name, got, tc.want)
		}
	}
}
