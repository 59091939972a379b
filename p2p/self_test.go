package p2p

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A node's requests and streams to its own peer ID reach its own handlers,
// with the same limits as a remote exchange.
func TestSelfRequestAndStream(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	if err := h.HandleRequest("echo/1", 8, func(_ context.Context, from peer.ID, req []byte) ([]byte, error) {
		if from != h.ID() {
			return nil, errors.New("wrong sender")
		}
		if string(req) == "fail" {
			return nil, errors.New("refused")
		}
		return append([]byte("re:"), req...), nil
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := h.Request(ctx, h.ID(), "echo/1", []byte("hi"), 16)
	if err != nil || string(resp) != "re:hi" {
		t.Fatalf("self request: %q, %v", resp, err)
	}
	var re *RemoteError
	if _, err := h.Request(ctx, h.ID(), "echo/1", []byte("fail"), 16); !errors.As(err, &re) || re.Message != "refused" {
		t.Fatalf("handler error: %v, want RemoteError \"refused\"", err)
	}
	if _, err := h.Request(ctx, h.ID(), "echo/1", []byte("far too long"), 16); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized request: %v, want ErrFrameTooLarge", err)
	}
	if _, err := h.Request(ctx, h.ID(), "echo/1", []byte("hello"), 4); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized response: %v, want ErrFrameTooLarge", err)
	}
	if _, err := h.Request(ctx, h.ID(), "none/1", nil, 16); !errors.Is(err, ErrNoHandler) {
		t.Fatalf("unserved protocol: %v, want ErrNoHandler", err)
	}

	if err := h.HandleStream("count/1", func(_ context.Context, _ peer.ID, s FramedStream) {
		data, err := s.Recv()
		if err != nil {
			return
		}
		for _, c := range string(data) {
			if s.Send([]byte(string(c))) != nil {
				return
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	s, err := h.OpenStream(ctx, h.ID(), "count/1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.RemotePeer() != h.ID() {
		t.Fatalf("remote %s, want self", s.RemotePeer())
	}
	if err := s.Send([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		b, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(b))
	}
	if strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("frames %v, want a,b,c", got)
	}
}
