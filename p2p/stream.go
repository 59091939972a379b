package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Response envelope: one status byte, then the payload (the response, or
// an error message).
const (
	statusOK       byte = 0
	statusError    byte = 1
	statusTooLarge byte = 2 // the request exceeded the handler's limit
)

// maxErrorMessage bounds the error text a handler sends back.
const maxErrorMessage = 1 << 10

// maxResponse bounds what a request handler may send, whatever the
// requester's own limit.
const maxResponse = 64 << 20

var _ error = (*RemoteError)(nil)

// ErrBadResponse means the remote sent a frame that is not a valid envelope.
var ErrBadResponse = errors.New("p2p: malformed response")

// RemoteError is a failure reported by the remote handler. It unwraps to
// ErrFrameTooLarge when the remote refused the request's size.
type RemoteError struct {
	Peer     peer.ID
	Protocol protocol.ID
	Message  string
	// RequestTooLarge: the request exceeded the remote's limit.
	RequestTooLarge bool
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("remote %s on %s: %s", e.Peer, e.Protocol, e.Message)
}

// Unwrap lets errors.Is(err, ErrFrameTooLarge) see a size refusal.
func (e *RemoteError) Unwrap() error {
	if e.RequestTooLarge {
		return ErrFrameTooLarge
	}
	return nil
}

// RequestHandler answers one request. ctx ends at the stream deadline or
// when the host closes; a returned error reaches the requester as a
// *RemoteError with err's text, so keep secrets out of it.
type RequestHandler func(ctx context.Context, from peer.ID, req []byte) ([]byte, error)

// StreamHandler serves one long-lived stream; the stream is closed when it
// returns. ctx ends when the host closes.
type StreamHandler func(ctx context.Context, from peer.ID, s FramedStream)

// ProtocolID is /dms/<network>/<name>, e.g. name "bid/1".
func (h *Host) ProtocolID(name string) protocol.ID {
	return protocol.ID("/dms/" + h.cfg.Network + "/" + name)
}

func validateProtocolName(name string) error {
	if err := validateName("protocol", name); err != nil {
		return err
	}
	if name == "kad" || strings.HasPrefix(name, "kad/") {
		return fmt.Errorf("protocol name %q is reserved for the DHT", name)
	}
	return nil
}

// HandleRequest serves /dms/<network>/<name>: read one request frame of at
// most maxReq bytes, call handler, write one response envelope. The whole
// exchange is bounded by the stream timeout, and the request's memory is
// reserved with the stream's resource scope while the handler runs.
func (h *Host) HandleRequest(name string, maxReq int, handler RequestHandler) error {
	if err := validateProtocolName(name); err != nil {
		return err
	}
	if maxReq <= 0 || maxReq > maxResponse {
		return fmt.Errorf("handle %s: request limit %d: want 1 to %d", name, maxReq, maxResponse)
	}
	if handler == nil {
		return fmt.Errorf("handle %s: nil handler", name)
	}
	pid := h.ProtocolID(name)
	h.mu.Lock()
	h.selfRequests[pid] = selfRequest{maxReq: maxReq, handler: handler}
	h.mu.Unlock()
	h.host.SetStreamHandler(pid, func(s network.Stream) {
		if !h.track() {
			_ = s.Reset()
			return
		}
		defer h.handlers.Done()
		h.serveRequest(pid, maxReq, handler, s)
	})
	return nil
}

func (h *Host) serveRequest(pid protocol.ID, maxReq int, handler RequestHandler, s network.Stream) {
	from := s.Conn().RemotePeer()
	log := h.logger("p2p.stream").With("protocol", pid, "peer", from)
	deadline := time.Now().Add(h.cfg.StreamTimeout)
	if err := s.SetDeadline(deadline); err != nil {
		log.Debug("set deadline", "err", err)
		_ = s.Reset()
		return
	}

	var reserved int
	defer func() {
		if reserved > 0 {
			s.Scope().ReleaseMemory(reserved)
		}
	}()
	req, err := readFrame(s, maxReq, func(n int) error {
		if err := s.Scope().ReserveMemory(n, reservePriority(n)); err != nil {
			return err
		}
		reserved = n
		return nil
	})
	switch {
	case err == nil:
	case errors.Is(err, ErrFrameTooLarge):
		log.Debug("request refused", "err", err)
		h.reply(s, log, statusTooLarge, []byte(err.Error()))
		return
	case errors.Is(err, network.ErrResourceLimitExceeded) || errors.Is(err, network.ErrResourceScopeClosed):
		log.Debug("request refused", "err", err)
		h.reply(s, log, statusError, []byte("busy: resource limit reached"))
		return
	default:
		log.Debug("read request", "err", err)
		_ = s.Reset()
		return
	}

	ctx, cancel := context.WithDeadline(h.ctx, deadline)
	resp, err := callHandler(ctx, handler, from, req)
	cancel()
	if err != nil {
		log.Debug("handler failed", "err", err)
		msg := err.Error()
		if len(msg) > maxErrorMessage {
			msg = msg[:maxErrorMessage]
		}
		h.reply(s, log, statusError, []byte(msg))
		return
	}
	h.reply(s, log, statusOK, resp)
}

// callHandler runs handler, turning a panic into an error so that one bad
// request cannot take the node down.
func callHandler(ctx context.Context, handler RequestHandler, from peer.ID, req []byte) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return handler(ctx, from, req)
}

// reply writes one envelope and closes the stream, or resets it if the
// write fails.
func (h *Host) reply(s network.Stream, log *slog.Logger, status byte, payload []byte) {
	env := make([]byte, 0, 1+len(payload))
	env = append(env, status)
	env = append(env, payload...)
	if err := WriteFrame(s, env, maxResponse+1); err != nil {
		log.Debug("write response", "err", err)
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// Request sends req to p on /dms/<network>/<name> and returns the response,
// refusing one larger than maxResp. The exchange is bounded by ctx's
// deadline, or by the stream timeout when ctx has none; a cancelled ctx
// aborts it at once and its error is returned (errors.Is(err,
// context.DeadlineExceeded) on timeout). A failure reported by the handler
// comes back as *RemoteError.
func (h *Host) Request(ctx context.Context, p peer.ID, name string, req []byte, maxResp int) ([]byte, error) {
	if err := validateProtocolName(name); err != nil {
		return nil, err
	}
	pid := h.ProtocolID(name)
	if h.ctx.Err() != nil {
		return nil, fmt.Errorf("request %s to %s: %w", pid, p, ErrClosed)
	}
	if maxResp < 0 {
		maxResp = 0
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.StreamTimeout)
		defer cancel()
	}
	if p == h.host.ID() {
		return h.requestSelf(ctx, pid, req, maxResp)
	}
	deadline, _ := ctx.Deadline()
	fail := func(err error) ([]byte, error) {
		// The stream deadline and ctx's timer fire at the same instant;
		// either way the caller should see the context's error.
		ctxErr := ctx.Err()
		if ctxErr == nil && !time.Now().Before(deadline) {
			ctxErr = context.DeadlineExceeded
		}
		if ctxErr != nil {
			return nil, fmt.Errorf("request %s to %s: %w (%v)", pid, p, ctxErr, err)
		}
		return nil, fmt.Errorf("request %s to %s: %w", pid, p, err)
	}

	if err := h.reach(ctx, p); err != nil {
		return fail(err)
	}
	s, err := h.host.NewStream(streamContext(ctx), p, pid)
	if err != nil {
		return fail(err)
	}
	if err := s.SetDeadline(deadline); err != nil {
		_ = s.Reset()
		return fail(err)
	}
	// Deadlines cover the timeout; this covers cancellation.
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()

	// Write while reading, so that a handler refusing the request early
	// (too large) is heard even if it never reads the rest of it.
	written := make(chan error, 1)
	go func() {
		err := WriteFrame(s, req, len(req))
		if err == nil {
			err = s.CloseWrite()
		}
		written <- err
	}()
	finish := func() error {
		select {
		case err := <-written:
			return err
		default:
			_ = s.Reset()
			<-written
			return nil
		}
	}

	var reserved int
	env, err := readFrame(s, max(maxResp, maxErrorMessage)+1, func(n int) error {
		if err := s.Scope().ReserveMemory(n, reservePriority(n)); err != nil {
			return err
		}
		reserved = n
		return nil
	})
	if reserved > 0 {
		s.Scope().ReleaseMemory(reserved)
	}
	if err != nil {
		_ = s.Reset()
		<-written
		return fail(fmt.Errorf("read response: %w", err))
	}
	if len(env) == 0 {
		_ = s.Reset()
		<-written
		return fail(fmt.Errorf("empty envelope: %w", ErrBadResponse))
	}
	status, payload := env[0], env[1:]
	switch status {
	case statusOK:
		if len(payload) > maxResp {
			_ = s.Reset()
			<-written
			return fail(fmt.Errorf("response of %d bytes, limit %d: %w", len(payload), maxResp, ErrFrameTooLarge))
		}
		if err := finish(); err != nil {
			return fail(fmt.Errorf("write request: %w", err))
		}
		_ = s.Close()
		return payload, nil
	case statusError, statusTooLarge:
		_ = s.Reset()
		<-written
		return nil, fmt.Errorf("request %s to %s: %w", pid, p, &RemoteError{
			Peer:            p,
			Protocol:        pid,
			Message:         string(payload[:min(len(payload), maxErrorMessage)]),
			RequestTooLarge: status == statusTooLarge,
		})
	default:
		_ = s.Reset()
		<-written
		return fail(fmt.Errorf("status %d: %w", status, ErrBadResponse))
	}
}

// HandleStream serves long-lived framed streams on /dms/<network>/<name>.
func (h *Host) HandleStream(name string, handler StreamHandler) error {
	if err := validateProtocolName(name); err != nil {
		return err
	}
	if handler == nil {
		return fmt.Errorf("handle stream %s: nil handler", name)
	}
	pid := h.ProtocolID(name)
	h.mu.Lock()
	h.selfStreams[pid] = handler
	h.mu.Unlock()
	h.host.SetStreamHandler(pid, func(s network.Stream) {
		if !h.track() {
			_ = s.Reset()
			return
		}
		defer h.handlers.Done()
		h.serveStream(pid, handler, h.newFramedStream(s))
	})
	return nil
}

// serveStream runs a stream handler, turning a panic into a reset.
func (h *Host) serveStream(pid protocol.ID, handler StreamHandler, fs *framedStream) {
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			h.logger("p2p.stream").Warn("stream handler panicked", "protocol", pid, "panic", r)
			_ = fs.Reset()
		}
	}()
	handler(ctx, fs.RemotePeer(), fs)
	_ = fs.Close()
}

// OpenStream opens a long-lived framed stream to p on /dms/<network>/<name>.
// ctx bounds only the opening (NewStream applies its own timeout when ctx
// has no deadline); each Send and Recv has its own deadline.
func (h *Host) OpenStream(ctx context.Context, p peer.ID, name string) (FramedStream, error) {
	if err := validateProtocolName(name); err != nil {
		return nil, err
	}
	pid := h.ProtocolID(name)
	if h.ctx.Err() != nil {
		return nil, fmt.Errorf("open stream %s to %s: %w", pid, p, ErrClosed)
	}
	if p == h.host.ID() {
		return h.openSelf(pid)
	}
	err := h.reach(ctx, p)
	var s network.Stream
	if err == nil {
		s, err = h.host.NewStream(streamContext(ctx), p, pid)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("open stream %s to %s: %w", pid, p, err)
	}
	return h.newFramedStream(s), nil
}

// FramedStream is a long-lived stream of frames, e.g. an allocation's
// status stream. One Send and one Recv may run at the same time.
type FramedStream interface {
	// Send writes one frame.
	Send(data []byte) error
	// Recv reads one frame; io.EOF (unwrapped) when the remote closed its
	// side.
	Recv() ([]byte, error)
	// SetMaxFrameSize sets the largest frame Send and Recv accept.
	SetMaxFrameSize(n int)
	// SetTimeout sets the deadline of each later Send and Recv; 0 means
	// none.
	SetTimeout(d time.Duration)
	// CloseWrite tells the remote we will send no more; it can still send.
	CloseWrite() error
	// Close closes both directions gracefully.
	Close() error
	// Reset aborts the stream in both directions; the remote sees an error.
	Reset() error
	// RemotePeer is the peer at the other end.
	RemotePeer() peer.ID
	// Protocol is the stream's protocol ID.
	Protocol() protocol.ID
}

var _ FramedStream = (*framedStream)(nil)

// framedStream is a FramedStream over a libp2p stream or an in-memory pipe.
type framedStream struct {
	s       rawStream
	remote  peer.ID
	proto   protocol.ID
	maxSize atomic.Int64
	timeout atomic.Int64 // time.Duration; 0: no deadline

	sendMu, recvMu sync.Mutex
}

// rawStream is what a FramedStream needs of a stream: a libp2p stream, or
// one end of an in-memory pipe when a node talks to itself (self.go).
type rawStream interface {
	io.Reader
	io.Writer
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	CloseWrite() error
	Close() error
	Reset() error
}

var _ rawStream = network.Stream(nil)

func (h *Host) newFramedStream(s network.Stream) *framedStream {
	return h.wrapStream(s, s.Conn().RemotePeer(), s.Protocol())
}

func (h *Host) wrapStream(s rawStream, remote peer.ID, proto protocol.ID) *framedStream {
	fs := &framedStream{s: s, remote: remote, proto: proto}
	fs.maxSize.Store(DefaultMaxStreamFrame)
	fs.timeout.Store(int64(h.cfg.StreamTimeout))
	return fs
}

// SetMaxFrameSize sets the largest frame Send and Recv accept.
func (f *framedStream) SetMaxFrameSize(n int) { f.maxSize.Store(int64(max(n, 0))) }

// SetTimeout sets the deadline of each later Send and Recv; 0 means none,
// for a stream that may stay quiet for long (the peer going away still
// ends it: the connection closes).
func (f *framedStream) SetTimeout(d time.Duration) { f.timeout.Store(int64(max(d, 0))) }

func (f *framedStream) deadline() time.Time {
	if d := time.Duration(f.timeout.Load()); d > 0 {
		return time.Now().Add(d)
	}
	return time.Time{}
}

// Send writes one frame.
func (f *framedStream) Send(data []byte) error {
	f.sendMu.Lock()
	defer f.sendMu.Unlock()
	if err := f.s.SetWriteDeadline(f.deadline()); err != nil {
		return fmt.Errorf("send on %s: %w", f.proto, err)
	}
	if err := WriteFrame(f.s, data, int(f.maxSize.Load())); err != nil {
		return fmt.Errorf("send on %s: %w", f.proto, err)
	}
	return nil
}

// Recv reads one frame; io.EOF (unwrapped) when the remote closed its side.
func (f *framedStream) Recv() ([]byte, error) {
	f.recvMu.Lock()
	defer f.recvMu.Unlock()
	if err := f.s.SetReadDeadline(f.deadline()); err != nil {
		return nil, fmt.Errorf("recv on %s: %w", f.proto, err)
	}
	data, err := ReadFrame(f.s, int(f.maxSize.Load()))
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("recv on %s: %w", f.proto, err)
	}
	return data, nil
}

// CloseWrite tells the remote we will send no more; it can still send.
func (f *framedStream) CloseWrite() error { return f.s.CloseWrite() }

// Close closes both directions gracefully.
func (f *framedStream) Close() error { return f.s.Close() }

// Reset aborts the stream in both directions; the remote sees an error.
func (f *framedStream) Reset() error { return f.s.Reset() }

// RemotePeer is the peer at the other end.
func (f *framedStream) RemotePeer() peer.ID { return f.remote }

// Protocol is the stream's protocol ID.
func (f *framedStream) Protocol() protocol.ID { return f.proto }

// smallFrame is the size below which a frame is reserved unconditionally:
// bids, replies and control messages are tiny, and refusing them when the
// resource manager is busy with yamux windows would fail a job for a few
// hundred bytes. Large frames (job modules) yield first.
const smallFrame = 64 << 10

func reservePriority(n int) uint8 {
	if n <= smallFrame {
		return network.ReservationPriorityAlways
	}
	return network.ReservationPriorityMedium
}
