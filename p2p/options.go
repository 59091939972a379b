package p2p

import (
	"fmt"
	"log/slog"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// Option sets fields of a Config. An option fails only when its argument
// does not parse; every range and consistency check is Config.Validate's,
// which New runs once, after the last option. Each option replaces what it
// sets (WithBootstrap and WithBootstrapAddrs add), so applying one twice is
// the same as applying it once and a caller builds the exact list it wants.
type Option func(*Config) error

// WithConfig replaces the whole configuration, e.g. WithConfig(LocalConfig());
// put it first, options after it refine it.
func WithConfig(cfg Config) Option {
	return func(c *Config) error {
		*c = cfg
		return nil
	}
}

// WithPrivKey sets the node's identity.
func WithPrivKey(k crypto.PrivKey) Option {
	return func(c *Config) error {
		c.PrivKey = k
		return nil
	}
}

// WithListenAddrStrings replaces the listen addresses, parsing each one.
func WithListenAddrStrings(addrs ...string) Option {
	return func(c *Config) error {
		out, err := ParseListenAddrs(addrs...)
		if err != nil {
			return err
		}
		c.ListenAddrs = out
		return nil
	}
}

// ParseListenAddrs parses listen multiaddrs; which transports New accepts
// is Validate's to say.
func ParseListenAddrs(addrs ...string) ([]multiaddr.Multiaddr, error) {
	out := make([]multiaddr.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// WithBootstrap adds bootstrap peers.
func WithBootstrap(peers ...peer.AddrInfo) Option {
	return func(c *Config) error {
		c.Bootstrap = append(c.Bootstrap, peers...)
		return nil
	}
}

// WithBootstrapAddrs adds bootstrap peers given as full addresses
// ("/ip4/1.2.3.4/tcp/4001/p2p/12D3Koo...").
func WithBootstrapAddrs(addrs ...string) Option {
	return func(c *Config) error {
		infos, err := ParseAddrInfos(addrs...)
		if err != nil {
			return err
		}
		c.Bootstrap = append(c.Bootstrap, infos...)
		return nil
	}
}

// ParseAddrInfos parses full /p2p/ addresses, merging those of one peer.
func ParseAddrInfos(addrs ...string) ([]peer.AddrInfo, error) {
	mas := make([]multiaddr.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("peer address %q: %w", s, err)
		}
		mas = append(mas, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("peer addresses: %w (want /ip4/<ip>/tcp/<port>/p2p/<peer id>)", err)
	}
	return infos, nil
}

// WithNetwork sets the network ID.
func WithNetwork(name string) Option {
	return func(c *Config) error {
		c.Network = name
		return nil
	}
}

// WithPSK makes the network private (see LoadSwarmKey).
func WithPSK(psk pnet.PSK) Option {
	return func(c *Config) error {
		c.PSK = psk
		return nil
	}
}

// WithDHTMode sets the DHT mode.
func WithDHTMode(m DHTMode) Option {
	return func(c *Config) error {
		c.DHTMode = m
		return nil
	}
}

// WithDatastore keeps the DHT's records in d instead of memory.
func WithDatastore(d ds.Batching) Option {
	return func(c *Config) error {
		c.Datastore = d
		return nil
	}
}

// WithDiscoveryInterval sets how often the node looks for more peers.
func WithDiscoveryInterval(d time.Duration) Option {
	return func(c *Config) error {
		c.DiscoveryInterval = d
		return nil
	}
}

// ParseReachability checks "auto", "public" or "private" ("" is auto).
func ParseReachability(s string) (string, error) {
	switch s {
	case "", "auto":
		return "auto", nil
	case "public", "private":
		return s, nil
	}
	return "", fmt.Errorf("reachability %q: want auto, public or private", s)
}

// WithReachability overrides AutoNAT: auto, public or private.
func WithReachability(r string) Option {
	return func(c *Config) error {
		v, err := ParseReachability(r)
		if err != nil {
			return err
		}
		c.Reachability = v
		return nil
	}
}

// WithRelayService makes the node a circuit relay for others; a relay is
// also a relay client, so it turns Relay on too.
func WithRelayService(on bool) Option {
	return func(c *Config) error {
		c.RelayService = on
		if on {
			c.Relay = true
		}
		return nil
	}
}

// WithMetrics reports libp2p's and gossipsub's metrics to reg (nil: off).
func WithMetrics(reg prometheus.Registerer) Option {
	return func(c *Config) error {
		c.Metrics = reg
		return nil
	}
}

// WithBandwidth reports every stream's bytes to r (nil: off). One
// reporter may serve many hosts, to count a whole in-process mesh.
func WithBandwidth(r metrics.Reporter) Option {
	return func(c *Config) error {
		c.Bandwidth = r
		return nil
	}
}

// WithLogger sets the logger (nil: slog.Default()); each subsystem adds its
// own "subsystem" key.
func WithLogger(l *slog.Logger) Option {
	return func(c *Config) error {
		c.Logger = l
		return nil
	}
}
