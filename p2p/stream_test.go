package p2p

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// pair starts two connected hosts.
func pair(t *testing.T) (client, server *Host) {
	t.Helper()
	server = newTestHost(t)
	client = newTestHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Connect(ctx, server.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	return client, server
}

func TestRequestResponse(t *testing.T) {
	client, server := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(server.HandleRequest("echo/1", 1024, func(_ context.Context, from peer.ID, req []byte) ([]byte, error) {
		if from != client.ID() {
			return nil, errors.New("unexpected caller")
		}
		return append([]byte("echo:"), req...), nil
	}))
	must(server.HandleRequest("fail/1", 1024, func(context.Context, peer.ID, []byte) ([]byte, error) {
		return nil, errors.New("no capacity left")
	}))
	must(server.HandleRequest("panic/1", 1024, func(context.Context, peer.ID, []byte) ([]byte, error) {
		panic("boom")
	}))
	must(server.HandleRequest("big/1", 1024, func(context.Context, peer.ID, []byte) ([]byte, error) {
		return make([]byte, 4096), nil
	}))
	must(server.HandleRequest("hang/1", 1024, func(ctx context.Context, _ peer.ID, _ []byte) ([]byte, error) {
		<-ctx.Done() // never answers; returns only when the host closes
		return nil, ctx.Err()
	}))

	t.Run("round trip", func(t *testing.T) {
		resp, err := client.Request(ctx, server.ID(), "echo/1", []byte("hi"), 1024)
		if err != nil {
			t.Fatal(err)
		}
		if string(resp) != "echo:hi" {
			t.Fatalf("response %q", resp)
		}
		// Empty request, and a request exactly at the limit.
		if _, err := client.Request(ctx, server.ID(), "echo/1", nil, 1024); err != nil {
			t.Fatalf("empty request: %v", err)
		}
		if _, err := client.Request(ctx, server.ID(), "echo/1", make([]byte, 1024), 2048); err != nil {
			t.Fatalf("request at the limit: %v", err)
		}
	})

	t.Run("remote error", func(t *testing.T) {
		_, err := client.Request(ctx, server.ID(), "fail/1", []byte("x"), 1024)
		var re *RemoteError
		if !errors.As(err, &re) {
			t.Fatalf("err = %v, want *RemoteError", err)
		}
		if re.Message != "no capacity left" || re.Peer != server.ID() || re.Protocol != server.ProtocolID("fail/1") {
			t.Fatalf("remote error %+v", re)
		}
		if errors.Is(err, ErrFrameTooLarge) {
			t.Fatal("a plain remote error must not match ErrFrameTooLarge")
		}
	})

	t.Run("handler panic", func(t *testing.T) {
		_, err := client.Request(ctx, server.ID(), "panic/1", nil, 1024)
		var re *RemoteError
		if !errors.As(err, &re) || !strings.Contains(re.Message, "boom") {
			t.Fatalf("err = %v, want a remote error naming the panic", err)
		}
	})

	t.Run("request too large", func(t *testing.T) {
		// Larger than a yamux window, so the handler refuses it before we
		// have finished writing it.
		_, err := client.Request(ctx, server.ID(), "echo/1", make([]byte, 1<<20), 1024)
		var re *RemoteError
		if !errors.Is(err, ErrFrameTooLarge) || !errors.As(err, &re) || !re.RequestTooLarge {
			t.Fatalf("err = %v, want a remote ErrFrameTooLarge", err)
		}
	})

	t.Run("response too large", func(t *testing.T) {
		_, err := client.Request(ctx, server.ID(), "big/1", nil, 1024)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("err = %v, want ErrFrameTooLarge", err)
		}
	})

	t.Run("deadline", func(t *testing.T) {
		rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer rcancel()
		// The handler never answers: only the deadline brings the request
		// back.
		err := within(t, time.Minute, "the request to give up at its deadline", func() error {
			_, err := client.Request(rctx, server.ID(), "hang/1", []byte("x"), 1024)
			return err
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		rctx, rcancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, rcancel)
		_, err := client.Request(rctx, server.ID(), "hang/1", []byte("x"), 1024)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})

	t.Run("unknown protocol", func(t *testing.T) {
		_, err := client.Request(ctx, server.ID(), "nothing/1", nil, 1024)
		if err == nil {
			t.Fatal("request on an unhandled protocol succeeded")
		}
	})

	t.Run("bad names", func(t *testing.T) {
		for _, name := range []string{"", "/bid/1", "bid/1/", "a//b", "Bid/1", "kad/1.0.0"} {
			if err := server.HandleRequest(name, 10, func(context.Context, peer.ID, []byte) ([]byte, error) { return nil, nil }); err == nil {
				t.Errorf("HandleRequest(%q) accepted", name)
			}
		}
	})
}

func TestFramedStream(t *testing.T) {
	client, server := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The server echoes frames back until the client closes its side, then
	// sends "bye" and returns (which closes the stream).
	err := server.HandleStream("status/1", func(ctx context.Context, from peer.ID, s FramedStream) {
		if from != client.ID() || s.RemotePeer() != client.ID() {
			_ = s.Reset()
			return
		}
		for {
			data, err := s.Recv()
			if err == io.EOF {
				_ = s.Send([]byte("bye"))
				return
			}
			if err != nil {
				_ = s.Reset()
				return
			}
			if err := s.Send(data); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	s, err := client.OpenStream(ctx, server.ID(), "status/1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.RemotePeer() != server.ID() || s.Protocol() != server.ProtocolID("status/1") {
		t.Fatalf("stream to %s on %s", s.RemotePeer(), s.Protocol())
	}
	for _, msg := range []string{"running", "", "done"} {
		if err := s.Send([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}

	s.SetMaxFrameSize(8)
	if err := s.Send(make([]byte, 9)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized Send: %v, want ErrFrameTooLarge", err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Recv(); err != nil || string(got) != "bye" {
		t.Fatalf("Recv = %q, %v; want bye", got, err)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("Recv after the handler returned: %v, want io.EOF", err)
	}

	t.Run("recv deadline", func(t *testing.T) {
		s, err := client.OpenStream(ctx, server.ID(), "status/1")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
		s.SetTimeout(200 * time.Millisecond)
		// The handler stays silent: only the timeout ends the Recv.
		err = within(t, time.Minute, "Recv on a silent stream to time out", func() error {
			_, err := s.Recv()
			return err
		})
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Recv on a silent stream: %v, want a timeout", err)
		}
	})
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	for _, msg := range [][]byte{nil, []byte("a"), bytes.Repeat([]byte("x"), 300)} {
		if err := WriteFrame(&buf, msg, 300); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []int{0, 1, 300} {
		got, err := ReadFrame(&buf, 300)
		if err != nil || len(got) != want {
			t.Fatalf("ReadFrame = %d bytes, %v; want %d", len(got), err, want)
		}
	}
	if _, err := ReadFrame(&buf, 300); err != io.EOF {
		t.Fatalf("ReadFrame at the end = %v, want io.EOF", err)
	}

	if err := WriteFrame(&buf, make([]byte, 11), 10); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("WriteFrame over the limit: %v", err)
	}
	// A prefix announcing 1 TiB with no payload behind it: refused from the
	// prefix alone, without waiting for or allocating the payload.
	huge := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20}
	_, err := ReadFrame(bytes.NewReader(huge), 1<<20)
	if !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), "limit 1048576") {
		t.Fatalf("huge prefix: %v", err)
	}
	// The allocation hook (where a stream reserves memory) is not reached.
	if _, err := readFrame(bytes.NewReader(huge), 1<<20, func(n int) error {
		t.Fatalf("about to allocate %d bytes", n)
		return nil
	}); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("huge prefix: %v", err)
	}
	// Truncated payload and truncated prefix.
	if _, err := ReadFrame(bytes.NewReader([]byte{5, 'a', 'b'}), 10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated payload: %v", err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0x80}), 10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated prefix: %v", err)
	}
	// Eleven continuation bytes overflow 64 bits.
	if _, err := ReadFrame(bytes.NewReader(bytes.Repeat([]byte{0xff}, 11)), 10); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("overflowing prefix: %v", err)
	}
}

// FuzzReadFrame: whatever the bytes, ReadFrame neither panics nor
// allocates more than its limit, and what it returns fits the limit.
func FuzzReadFrame(f *testing.F) {
	var ok bytes.Buffer
	_ = WriteFrame(&ok, []byte("bid request"), 64)
	f.Add(ok.Bytes(), 64)
	f.Add([]byte{}, 10)
	f.Add([]byte{0}, 0)
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20}, 1<<20)
	f.Add(bytes.Repeat([]byte{0xff}, 11), 100)
	f.Add([]byte{3, 'a'}, 3)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		max %= 1 << 16
		got, err := readFrame(bytes.NewReader(data), max, func(n int) error {
			if n > max || n < 0 {
				t.Fatalf("about to allocate %d bytes, limit %d", n, max)
			}
			return nil
		})
		if err == nil && len(got) > max {
			t.Fatalf("frame of %d bytes, limit %d", len(got), max)
		}
		if err == nil {
			// A frame we accept re-encodes to a frame we accept.
			var buf bytes.Buffer
			if err := WriteFrame(&buf, got, max); err != nil {
				t.Fatal(err)
			}
			again, err := ReadFrame(&buf, max)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("re-read %q, %v; want %q", again, err, got)
			}
		}
	})
}

// within runs f and returns its error, failing t if f has not returned
// after d (a deadline generous for a busy machine, not a speed bound).
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("after %v: still waiting for %s", d, what)
		return nil
	}
}
