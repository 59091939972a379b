package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
)

// A node that is alone on its network still runs its own jobs: the
// requester and the provider sides then talk to the same peer ID, which
// libp2p refuses to dial ("dial to self attempted"). Request and OpenStream
// to our own ID therefore call our handlers directly, with the same size
// limits and deadlines as a remote exchange, so the protocol code above has
// one path for both.

// ErrNoHandler: a request or stream to ourselves on a protocol we do not
// serve.
var ErrNoHandler = errors.New("p2p: protocol not served by this node")

type selfRequest struct {
	maxReq  int
	handler RequestHandler
}

// requestSelf is Request to our own peer ID.
func (h *Host) requestSelf(ctx context.Context, pid protocol.ID, req []byte, maxResp int) ([]byte, error) {
	h.mu.Lock()
	sr, ok := h.selfRequests[pid]
	h.mu.Unlock()
	self := h.host.ID()
	if !ok {
		return nil, fmt.Errorf("request %s to %s (self): %w", pid, self, ErrNoHandler)
	}
	if len(req) > sr.maxReq {
		return nil, fmt.Errorf("request %s to %s: %w", pid, self, &RemoteError{
			Peer: self, Protocol: pid, RequestTooLarge: true,
			Message: fmt.Sprintf("request of %d bytes, limit %d", len(req), sr.maxReq),
		})
	}
	if !h.track() {
		return nil, fmt.Errorf("request %s to %s: %w", pid, self, ErrClosed)
	}
	defer h.handlers.Done()
	deadline := time.Now().Add(h.cfg.StreamTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	hctx, cancel := context.WithDeadline(h.ctx, deadline)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	// The handler may keep req; a remote one gets its own copy too.
	resp, err := callHandler(hctx, sr.handler, self, append([]byte(nil), req...))
	if ctx.Err() != nil {
		return nil, fmt.Errorf("request %s to %s: %w", pid, self, ctx.Err())
	}
	if err != nil {
		msg := err.Error()
		if len(msg) > maxErrorMessage {
			msg = msg[:maxErrorMessage]
		}
		return nil, fmt.Errorf("request %s to %s: %w", pid, self, &RemoteError{Peer: self, Protocol: pid, Message: msg})
	}
	if len(resp) > maxResp {
		return nil, fmt.Errorf("request %s to %s: response of %d bytes, limit %d: %w", pid, self, len(resp), maxResp, ErrFrameTooLarge)
	}
	return resp, nil
}

// openSelf is OpenStream to our own peer ID: an in-memory pipe whose far
// end is served by our own handler, in a goroutine Close waits for.
func (h *Host) openSelf(pid protocol.ID) (FramedStream, error) {
	h.mu.Lock()
	handler, ok := h.selfStreams[pid]
	h.mu.Unlock()
	self := h.host.ID()
	if !ok {
		return nil, fmt.Errorf("open stream %s to %s (self): %w", pid, self, ErrNoHandler)
	}
	if !h.track() {
		return nil, fmt.Errorf("open stream %s to %s: %w", pid, self, ErrClosed)
	}
	near, far := net.Pipe()
	go func() {
		defer h.handlers.Done()
		h.serveStream(pid, handler, h.wrapStream(pipeStream{far}, self, pid))
	}()
	return h.wrapStream(pipeStream{near}, self, pid), nil
}

// pipeStream is one end of a net.Pipe as a rawStream. A pipe has no half
// close: CloseWrite closes it whole, which the protocols here never
// mind (each side stops reading once it has what it waits for), and Reset
// is Close.
type pipeStream struct{ net.Conn }

func (p pipeStream) CloseWrite() error { return p.Conn.Close() }
func (p pipeStream) Reset() error      { return p.Conn.Close() }

// A net.Pipe refuses a deadline once either end is closed, so a Recv that
// starts after the far end finished would fail with io.ErrClosedPipe rather
// than read io.EOF as a libp2p stream does; the read or write itself still
// reports a closed end correctly.
func (p pipeStream) SetReadDeadline(t time.Time) error {
	return ignoreClosedPipe(p.Conn.SetReadDeadline(t))
}

func (p pipeStream) SetWriteDeadline(t time.Time) error {
	return ignoreClosedPipe(p.Conn.SetWriteDeadline(t))
}

func ignoreClosedPipe(err error) error {
	if errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}
