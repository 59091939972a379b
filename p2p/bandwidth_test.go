package p2p

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// sentBytes is a metrics.Reporter that keeps the bytes written by protocol;
// the other methods are the embedded nil Reporter's, which no stream calls.
type sentBytes struct {
	metrics.Reporter
	mu   sync.Mutex
	sent map[protocol.ID]int64
}

func (s *sentBytes) LogSentMessage(int64) {}
func (s *sentBytes) LogRecvMessage(int64) {}
func (s *sentBytes) LogSentMessageStream(n int64, p protocol.ID, _ peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent[p] += n
}
func (s *sentBytes) LogRecvMessageStream(int64, protocol.ID, peer.ID) {}

func (s *sentBytes) of(p protocol.ID) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[p]
}

// TestWithBandwidthCountsStreamBytes: a host given a reporter tells it
// what its streams write, under the stream's protocol; the bench adds the
// mesh's traffic up this way.
func TestWithBandwidthCountsStreamBytes(t *testing.T) {
	counter := &sentBytes{sent: map[protocol.ID]int64{}}
	server := newTestHost(t)
	client := newTestHost(t, WithBandwidth(counter))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := client.Connect(ctx, server.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if err := server.HandleRequest("echo/1", 4096, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) {
		return req, nil
	}); err != nil {
		t.Fatal(err)
	}
	req := make([]byte, 1000)
	if _, err := client.Request(ctx, server.ID(), "echo/1", req, 4096); err != nil {
		t.Fatal(err)
	}
	// The request and its frame header; the answer is the server's, which
	// has no reporter.
	if got := counter.of(client.ProtocolID("echo/1")); got < int64(len(req)) || got > int64(len(req))+64 {
		t.Fatalf("client wrote %d bytes on echo/1, want the %d-byte request and a frame header", got, len(req))
	}
}
