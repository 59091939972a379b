package p2p

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/multiformats/go-multiaddr"
)

func TestSwarmKey(t *testing.T) {
	a, err := GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(a, []byte("/key/swarm/psk/1.0.0/\n/base16/\n")) || len(a) != 21+1+8+1+64+1 {
		t.Fatalf("generated key %q", a)
	}
	psk, err := DecodeSwarmKey(bytes.NewReader(a))
	if err != nil || len(psk) != 32 {
		t.Fatalf("decode generated key: %d bytes, %v", len(psk), err)
	}
	b, _ := GenerateSwarmKey()
	if bytes.Equal(a, b) {
		t.Fatal("two generated keys are equal")
	}

	for name, in := range map[string]string{
		"empty":        "",
		"garbage":      "hello world\n",
		"no encoding":  "/key/swarm/psk/1.0.0/\n",
		"bad encoding": "/key/swarm/psk/1.0.0/\n/base32/\n" + strings.Repeat("a", 64) + "\n",
		"short key":    "/key/swarm/psk/1.0.0/\n/base16/\nabcdef\n",
		"not hex":      "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("zz", 32) + "\n",
		"too long":     "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("a", 2000),
	} {
		_, err := DecodeSwarmKey(strings.NewReader(in))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), "/key/swarm/psk/1.0.0/") {
			t.Errorf("%s: error %q does not show the accepted format", name, err)
		}
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "swarm.key")
	if err := WriteSwarmKey(path, a); err != nil {
		t.Fatal(err)
	}
	if err := WriteSwarmKey(path, b); err == nil {
		t.Fatal("WriteSwarmKey replaced an existing key")
	}
	loaded, err := LoadSwarmKey(path)
	if err != nil || !bytes.Equal(loaded, psk) {
		t.Fatalf("LoadSwarmKey = %x, %v; want %x", loaded, err, psk)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSwarmKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("LoadSwarmKey of a 0644 file: %v", err)
	}
	if _, err := LoadSwarmKey(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("LoadSwarmKey of a missing file: %v", err)
	}
}

// countingReader counts what DecodeSwarmKey pulls from its input.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzDecodeSwarmKey: never panics, reads at most 1 KiB + 1, and returns
// either an error or exactly 32 bytes.
func FuzzDecodeSwarmKey(f *testing.F) {
	good, _ := GenerateSwarmKey()
	f.Add(good)
	f.Add([]byte(""))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base64/\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/bin/\n0123456789abcdef0123456789abcdef"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + strings.Repeat("0f", 32)))
	f.Add(bytes.Repeat([]byte("a"), 3000))
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		psk, err := DecodeSwarmKey(cr)
		if cr.n > maxSwarmKeyFile+1 {
			t.Fatalf("read %d bytes", cr.n)
		}
		if err == nil && len(psk) != 32 {
			t.Fatalf("key of %d bytes", len(psk))
		}
	})
}

// TestPrivateNetwork: hosts with the same swarm key connect; a host with
// another key, or none, cannot. A private host drops its QUIC address.
func TestPrivateNetwork(t *testing.T) {
	key := func() pnet.PSK {
		raw, err := GenerateSwarmKey()
		if err != nil {
			t.Fatal(err)
		}
		psk, err := DecodeSwarmKey(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		return psk
	}
	k1, k2 := key(), key()

	a := newTestHost(t, WithPSK(k1), WithListenAddrStrings("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"))
	for _, addr := range a.Addrs() {
		if _, err := addr.ValueForProtocol(multiaddr.P_QUIC_V1); err == nil {
			t.Fatalf("private host listens on QUIC: %s", addr)
		}
	}
	same := newTestHost(t, WithPSK(k1))
	other := newTestHost(t, WithPSK(k2))
	public := newTestHost(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := same.Connect(ctx, a.AddrInfo()); err != nil {
		t.Fatalf("same key: %v", err)
	}
	// A mismatched handshake can leave both sides waiting for bytes that
	// never come (with another key each decrypts noise; a public dialer
	// waits for a multistream header while the private side waits for its
	// 24-byte nonce): such a dial fails only at its deadline, so keep the
	// deadline short.
	refused := func(from, to *Host, what string) {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer ccancel()
		if err := from.Connect(cctx, to.AddrInfo()); err == nil {
			t.Fatalf("%s connected", what)
		}
	}
	refused(other, a, "a host with another swarm key")
	refused(public, a, "a host without a swarm key (to a private one)")
	refused(a, public, "a private host (to a public one)")
	wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer wcancel()
	if err := other.WaitForPeers(wctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForPeers on an isolated host: %v, want DeadlineExceeded", err)
	}
}

// TestQUIC: without a swarm key, hosts talk over QUIC too.
func TestQUIC(t *testing.T) {
	hosts := newTestHosts(t, 2, WithListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hosts[0].Connect(ctx, hosts[1].AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if err := hosts[1].WaitForPeers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	conns := hosts[0].host.Network().ConnsToPeer(hosts[1].ID())
	if len(conns) == 0 {
		t.Fatal("no connection")
	}
	if _, err := conns[0].RemoteMultiaddr().ValueForProtocol(multiaddr.P_QUIC_V1); err != nil {
		t.Fatalf("connection over %s, want QUIC", conns[0].RemoteMultiaddr())
	}
}
