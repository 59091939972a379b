package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testLogger shows warnings and errors only, so a failing test shows why.
var testLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// newTestHost starts a LocalConfig host with a fresh identity, closed when
// the test ends.
func newTestHost(t *testing.T, opts ...Option) *Host {
	t.Helper()
	return newTestHosts(t, 1, opts...)[0]
}

// newTestHosts starts n LocalConfig hosts at once, as nodes of a network
// would, each closed when the test ends.
func newTestHosts(t *testing.T, n int, opts ...Option) []*Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hosts := make([]*Host, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			key, _, err := crypto.GenerateEd25519Key(rand.Reader)
			if err != nil {
				errs[i] = err
				return
			}
			base := []Option{WithConfig(LocalConfig()), WithPrivKey(key), WithLogger(testLogger)}
			hosts[i], errs[i] = New(ctx, append(base, opts...)...)
		})
	}
	wg.Wait()
	for _, h := range hosts {
		if h == nil {
			continue
		}
		t.Cleanup(func() {
			if err := h.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("New: %v", err)
	}
	return hosts
}

// acceptAll is a validator that accepts every message but "bad".
// The author is the peer ID after the last '|', if any.
func acceptAll(_ context.Context, _ peer.ID, data []byte) (peer.ID, any, error) {
	if string(data) == "bad" {
		return "", nil, errors.New("bad message")
	}
	var author peer.ID
	if i := strings.LastIndexByte(string(data), '|'); i >= 0 {
		author, _ = peer.Decode(string(data[i+1:]))
	}
	return author, len(data), nil
}

// receive waits for a message with data want on t, skipping others.
func receive(ctx context.Context, tp Topic, want string) (Message, error) {
	for {
		select {
		case m, ok := <-tp.Messages():
			if !ok {
				return Message{}, ErrTopicClosed
			}
			if string(m.Data) == want {
				return m, nil
			}
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}
