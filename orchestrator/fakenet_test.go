package orchestrator

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/dms-project/dms/p2p"
)

// fakeNet is an in-memory mesh: every node hears every other on a topic,
// requests are function calls and streams are net.Pipes carrying p2p's
// frames. It lets the protocol be driven with no libp2p.
type fakeNet struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // stream handlers

	mu    sync.Mutex
	nodes map[peer.ID]*fakeHost
}

func newFakeNet() *fakeNet {
	ctx, cancel := context.WithCancel(context.Background())
	return &fakeNet{ctx: ctx, cancel: cancel, nodes: map[peer.ID]*fakeHost{}}
}

// Close ends the stream handlers' contexts and waits for them.
func (n *fakeNet) Close() {
	n.cancel()
	n.wg.Wait()
}

func (n *fakeNet) host(id peer.ID) *fakeHost {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := &fakeHost{net: n, id: id, requests: map[string]fakeHandler{}, streams: map[string]p2p.StreamHandler{}, topics: map[string]*fakeTopic{}}
	n.nodes[id] = h
	return h
}

// nodeIDs are every node's ID.
func (n *fakeNet) nodeIDs() []peer.ID {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []peer.ID
	for id := range n.nodes {
		out = append(out, id)
	}
	return out
}

// remove takes id off the network: nobody reaches it or counts it since.
func (n *fakeNet) remove(id peer.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.nodes, id)
}

func (n *fakeNet) node(id peer.ID) (*fakeHost, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.nodes[id]
	return h, ok
}

// others are the nodes but id, in a stable order.
func (n *fakeNet) others(id peer.ID) []*fakeHost {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*fakeHost
	for p, h := range n.nodes {
		if p != id {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b *fakeHost) int { return cmp.Compare(a.id, b.id) })
	return out
}

type fakeHandler struct {
	maxReq  int
	handler p2p.RequestHandler
}

// fakeHost is one node of a fakeNet.
type fakeHost struct {
	net *fakeNet
	id  peer.ID

	mu        sync.Mutex
	requests  map[string]fakeHandler
	streams   map[string]p2p.StreamHandler
	topics    map[string]*fakeTopic
	penalized []peer.ID
}

var _ Network = (*fakeHost)(nil)

func (h *fakeHost) ID() peer.ID     { return h.id }
func (h *fakeHost) Network() string { return "fake" }

// KnownPeers are the other nodes that handle requests on name.
func (h *fakeHost) KnownPeers(name string) []peer.ID {
	var out []peer.ID
	for _, o := range h.net.others(h.id) {
		o.mu.Lock()
		_, ok := o.requests[name]
		o.mu.Unlock()
		if ok {
			out = append(out, o.id)
		}
	}
	return out
}

func (h *fakeHost) Peers() []peer.ID {
	var out []peer.ID
	for _, o := range h.net.others(h.id) {
		out = append(out, o.id)
	}
	return out
}

func (h *fakeHost) Penalize(p peer.ID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.penalized = append(h.penalized, p)
}

func (h *fakeHost) JoinTopic(name string, validate p2p.Validator) (p2p.Topic, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.topics[name]; dup {
		return nil, fmt.Errorf("topic %s already joined", name)
	}
	t := &fakeTopic{h: h, name: name, validate: validate, out: make(chan p2p.Message), done: make(chan struct{})}
	h.topics[name] = t
	return t, nil
}

func (h *fakeHost) topic(name string) *fakeTopic {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topics[name]
}

func (h *fakeHost) HandleRequest(name string, maxReq int, handler p2p.RequestHandler) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests[name] = fakeHandler{maxReq, handler}
	return nil
}

func (h *fakeHost) Request(ctx context.Context, p peer.ID, name string, req []byte, maxResp int) ([]byte, error) {
	to, ok := h.net.node(p)
	if !ok {
		return nil, fmt.Errorf("request %s to %s: no such peer", name, p)
	}
	to.mu.Lock()
	fh, ok := to.requests[name]
	to.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("request %s to %s: %w", name, p, p2p.ErrNoHandler)
	}
	if len(req) > fh.maxReq {
		return nil, &p2p.RemoteError{Peer: p, Protocol: protocol.ID(name), RequestTooLarge: true, Message: "request too large"}
	}
	resp, err := fh.handler(ctx, h.id, slices.Clone(req))
	if err != nil {
		return nil, &p2p.RemoteError{Peer: p, Protocol: protocol.ID(name), Message: err.Error()}
	}
	if len(resp) > maxResp {
		return nil, fmt.Errorf("request %s to %s: response of %d bytes: %w", name, p, len(resp), p2p.ErrFrameTooLarge)
	}
	return resp, nil
}

func (h *fakeHost) HandleStream(name string, handler p2p.StreamHandler) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streams[name] = handler
	return nil
}

func (h *fakeHost) OpenStream(ctx context.Context, p peer.ID, name string) (p2p.FramedStream, error) {
	to, ok := h.net.node(p)
	if !ok {
		return nil, fmt.Errorf("open stream %s to %s: no such peer", name, p)
	}
	to.mu.Lock()
	handler, ok := to.streams[name]
	to.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("open stream %s to %s: %w", name, p, p2p.ErrNoHandler)
	}
	near, far := net.Pipe()
	pid := protocol.ID(name)
	h.net.wg.Go(func() {
		s := newPipeStream(far, h.id, pid)
		handler(h.net.ctx, h.id, s)
		s.Close()
	})
	return newPipeStream(near, p, pid), nil
}

// fakeTopic delivers what one node publishes to every other node that
// joined the topic, through that node's validator, as gossipsub would.
type fakeTopic struct {
	h        *fakeHost
	name     string
	validate p2p.Validator
	out      chan p2p.Message

	mu      sync.Mutex
	closed  bool
	done    chan struct{}
	sending sync.WaitGroup
}

var _ p2p.Topic = (*fakeTopic)(nil)

func (t *fakeTopic) Name() string                 { return t.name }
func (t *fakeTopic) Messages() <-chan p2p.Message { return t.out }
func (t *fakeTopic) Dropped() int64               { return 0 }

func (t *fakeTopic) ListPeers() []peer.ID {
	var out []peer.ID
	for _, o := range t.h.net.others(t.h.id) {
		if o.topic(t.name) != nil {
			out = append(out, o.id)
		}
	}
	return out
}

func (t *fakeTopic) Publish(ctx context.Context, data []byte) error {
	if t.isClosed() {
		return p2p.ErrTopicClosed
	}
	// The sender's own validator runs first, as gossipsub's does.
	if _, _, err := t.validate(ctx, t.h.id, data); err != nil {
		return fmt.Errorf("publish on %s: %w", t.name, err)
	}
	for _, o := range t.h.net.others(t.h.id) {
		if ot := o.topic(t.name); ot != nil {
			ot.deliver(t.h.id, slices.Clone(data))
		}
	}
	return nil
}

// deliver validates a message from via and hands it to the reader.
func (t *fakeTopic) deliver(via peer.ID, data []byte) {
	author, value, err := t.validate(context.Background(), via, data)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.sending.Go(func() {
		select {
		case t.out <- p2p.Message{From: author, Via: via, Data: data, Value: value, ReceivedAt: time.Now()}:
		case <-t.done:
		}
	})
}

func (t *fakeTopic) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

func (t *fakeTopic) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	t.mu.Unlock()
	t.sending.Wait()
	close(t.out)
	t.h.mu.Lock()
	delete(t.h.topics, t.name)
	t.h.mu.Unlock()
	return nil
}

// pipeStream is a p2p.FramedStream over one end of a net.Pipe, framed as
// p2p frames its streams.
type pipeStream struct {
	c       net.Conn
	remote  peer.ID
	proto   protocol.ID
	maxSize atomic.Int64
	timeout atomic.Int64

	sendMu, recvMu sync.Mutex
}

var _ p2p.FramedStream = (*pipeStream)(nil)

func newPipeStream(c net.Conn, remote peer.ID, proto protocol.ID) *pipeStream {
	s := &pipeStream{c: c, remote: remote, proto: proto}
	s.maxSize.Store(p2p.DefaultMaxStreamFrame)
	s.timeout.Store(int64(10 * time.Second))
	return s
}

func (s *pipeStream) deadline() time.Time {
	if d := time.Duration(s.timeout.Load()); d > 0 {
		return time.Now().Add(d)
	}
	return time.Time{}
}

func (s *pipeStream) Send(data []byte) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.c.SetWriteDeadline(s.deadline()); err != nil {
		return err
	}
	return p2p.WriteFrame(s.c, data, int(s.maxSize.Load()))
}

func (s *pipeStream) Recv() ([]byte, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	if err := s.c.SetReadDeadline(s.deadline()); err != nil {
		return nil, err
	}
	data, err := p2p.ReadFrame(s.c, int(s.maxSize.Load()))
	if err == io.EOF {
		return nil, io.EOF
	}
	return data, err
}

func (s *pipeStream) SetMaxFrameSize(n int)      { s.maxSize.Store(int64(max(n, 0))) }
func (s *pipeStream) SetTimeout(d time.Duration) { s.timeout.Store(int64(max(d, 0))) }

// A pipe has no half close: CloseWrite closes it whole, as p2p's own
// streams to self do.
func (s *pipeStream) CloseWrite() error     { return s.c.Close() }
func (s *pipeStream) Close() error          { return s.c.Close() }
func (s *pipeStream) Reset() error          { return s.c.Close() }
func (s *pipeStream) RemotePeer() peer.ID   { return s.remote }
func (s *pipeStream) Protocol() protocol.ID { return s.proto }
