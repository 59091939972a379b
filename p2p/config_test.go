package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/internal/poll"

	"github.com/libp2p/go-libp2p/core/crypto"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/multiformats/go-multiaddr"
)

func TestConfigValidate(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, preset := range []Config{DefaultConfig(), LocalConfig()} {
		c := preset
		c.PrivKey = key
		if err := c.Validate(); err != nil {
			t.Fatalf("preset invalid: %v", err)
		}
	}

	bad := map[string]func(*Config){
		"no key":          func(c *Config) { c.PrivKey = nil },
		"empty network":   func(c *Config) { c.Network = "" },
		"network slash":   func(c *Config) { c.Network = "a/b" },
		"network upper":   func(c *Config) { c.Network = "DMS" },
		"network long":    func(c *Config) { c.Network = strings.Repeat("a", 33) },
		"no listen":       func(c *Config) { c.ListenAddrs = nil },
		"webrtc listen":   func(c *Config) { c.ListenAddrs = mustAddrs("/ip4/0.0.0.0/udp/0/webrtc-direct") },
		"psk quic only":   func(c *Config) { c.PSK = make([]byte, 32); c.ListenAddrs = mustAddrs("/ip4/0.0.0.0/udp/0/quic-v1") },
		"short psk":       func(c *Config) { c.PSK = make([]byte, 16) },
		"conn limits":     func(c *Config) { c.ConnLow, c.ConnHigh = 10, 5 },
		"small memory":    func(c *Config) { c.ResourceMemory = 1 << 20 },
		"message size":    func(c *Config) { c.MaxMessageSize = 10 },
		"positive weight": func(c *Config) { c.IPColocationWeight = 1 },
		"zero timeout":    func(c *Config) { c.StreamTimeout = 0 },
		"dht mode":        func(c *Config) { c.DHTMode = 7 },
		"no negotiating":  func(c *Config) { c.MaxNegotiatingStreams = 0 },
		"no negotiation":  func(c *Config) { c.NegotiationTimeout = 0 },
	}
	for name, breakIt := range bad {
		c := LocalConfig()
		c.PrivKey = key
		breakIt(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	// A PSK keeps the TCP addresses only.
	c := DefaultConfig()
	c.PSK = make([]byte, 32)
	got := c.usableListenAddrs()
	if len(got) != 1 || !got[0].Equal(multiaddr.StringCast("/ip4/0.0.0.0/tcp/4001")) {
		t.Fatalf("private listen addresses %v", got)
	}
}

func TestOptions(t *testing.T) {
	// An option fails only on what does not parse.
	for name, opt := range map[string]Option{
		"listen":       WithListenAddrStrings("not an address"),
		"bootstrap":    WithBootstrapAddrs("/ip4/127.0.0.1/tcp/4001"),
		"reachability": WithReachability("sometimes"),
	} {
		c := LocalConfig()
		if err := opt(&c); err == nil {
			t.Errorf("%s: option accepted a bad value", name)
		}
	}
	// What parses but is out of range is Validate's, which New runs once
	// after the last option, naming the setting.
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		opt  Option
		want string
	}{
		"network":  {WithNetwork("Bad Name"), "network ID"},
		"psk":      {WithPSK([]byte("short")), "swarm key"},
		"interval": {WithDiscoveryInterval(0), "discovery interval"},
		"dht mode": {WithDHTMode(DHTMode(9)), "dht mode"},
		"privkey":  {WithPrivKey(nil), "private key"},
		"listen":   {WithListenAddrStrings(), "no listen address"},
	} {
		opts := []Option{WithConfig(LocalConfig()), WithPrivKey(key), c.opt}
		if _, err := New(context.Background(), opts...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New = %v, want an error naming %q", name, err, c.want)
		}
	}
	// The same option twice is the same as once: a caller builds the list
	// it wants rather than undoing an option.
	c := LocalConfig()
	for range 2 {
		if err := WithListenAddrStrings("/ip4/127.0.0.1/tcp/1")(&c); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.ListenAddrs) != 1 {
		t.Fatalf("listen twice: %v", c.ListenAddrs)
	}

	// New reports a bad option without starting anything.
	if _, err := New(context.Background(), WithNetwork("")); err == nil {
		t.Fatal("New accepted an empty network ID")
	}
	if _, err := New(context.Background(), WithConfig(LocalConfig())); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("New without a key: %v", err)
	}

	infos, err := ParseAddrInfos(
		"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWAHL7oQnki1T1QRmfXK5Y1NwbUeUzXWwWWV8pfoPCvUTg",
		"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/12D3KooWAHL7oQnki1T1QRmfXK5Y1NwbUeUzXWwWWV8pfoPCvUTg",
	)
	if err != nil || len(infos) != 1 || len(infos[0].Addrs) != 2 {
		t.Fatalf("ParseAddrInfos = %v, %v", infos, err)
	}

	for _, s := range []string{"auto", "server", "client"} {
		m, err := ParseDHTMode(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseDHTMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseDHTMode("both"); err == nil {
		t.Error("ParseDHTMode accepted both")
	}
}

// TestNewFailsClean: New that cannot listen fails and leaves no goroutine
// behind; Close of a working host is idempotent and leaves none either.
func TestNewFailsClean(t *testing.T) {
	before := runtime.NumGoroutine()
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	// 192.0.2.1 (TEST-NET-1) is on no interface: bind fails. (A taken port
	// would not do: go-libp2p's TCP transport binds with SO_REUSEPORT.)
	_, err := New(context.Background(), WithConfig(LocalConfig()), WithPrivKey(key), WithLogger(testLogger),
		WithListenAddrStrings("/ip4/192.0.2.1/tcp/0"))
	if err == nil {
		t.Fatal("New on an address of no interface succeeded")
	}
	poll.Until(t, 5*time.Second, "goroutines of the failed New to exit", func() bool {
		return runtime.NumGoroutine() <= before
	})

	h, err := New(context.Background(), WithConfig(LocalConfig()), WithPrivKey(key), WithLogger(testLogger))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := h.JoinTopic("x/1", acceptAll)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.JoinTopic("x/1", acceptAll); err == nil {
		t.Fatal("joined the same topic twice")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-tp.Messages(); ok {
		t.Fatal("Messages still open after Close")
	}
	if err := tp.Publish(context.Background(), []byte("x")); !errors.Is(err, ErrTopicClosed) {
		t.Fatalf("Publish after Close: %v, want ErrTopicClosed", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := h.JoinTopic("y/1", acceptAll); !errors.Is(err, ErrClosed) {
		t.Fatalf("JoinTopic after Close: %v, want ErrClosed", err)
	}
	poll.Until(t, 5*time.Second, "goroutines of the closed host to exit", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// The transient scope, where streams wait to name a protocol, has room for
// many peers at their bound; other limits stay libp2p's scaled defaults.
func TestResourceLimitsRoomForNegotiatingStreams(t *testing.T) {
	c := LocalConfig()
	limits := rcmgr.DefaultLimits
	scaled := limits.Scale(c.ResourceMemory, c.ResourceFDs).ToPartialLimitConfig()
	got := c.resourceLimits(limits).ToPartialLimitConfig()
	if in := int(got.Transient.StreamsInbound); in < transientPeers*c.MaxNegotiatingStreams || in <= int(scaled.Transient.StreamsInbound) {
		t.Fatalf("transient inbound streams %d, want at least %d peers x %d", in, transientPeers, c.MaxNegotiatingStreams)
	}
	if got.System != scaled.System || got.PeerDefault != scaled.PeerDefault {
		t.Fatalf("limits other than the transient scope's changed: system %+v (want %+v), peer %+v (want %+v)", got.System, scaled.System, got.PeerDefault, scaled.PeerDefault)
	}
}
