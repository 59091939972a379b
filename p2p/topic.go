package p2p

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

var (
	// ErrTopicClosed is returned by Publish on a closed Topic.
	ErrTopicClosed = errors.New("p2p: topic closed")
	// ErrMessageTooLarge is returned by Publish for data that would not
	// fit in one gossip message.
	ErrMessageTooLarge = errors.New("p2p: gossip message too large")
	// ErrIgnore, wrapped in a validator's error, drops the message without
	// penalising the peer that forwarded it. Use it for messages an honest
	// peer may relay (expired, duplicate); a plain error rejects the message
	// and lowers the forwarder's score.
	ErrIgnore = errors.New("p2p: ignore message")
)

// gossipOverhead is what gossipsub adds around our data in one RPC: author,
// sequence number, signature, topic and protobuf framing.
const gossipOverhead = 1 << 10

// Buffers between gossipsub and the topic's reader. gossipsub drops a
// message for a subscription whose buffer is full ("subscriber too slow"),
// so the subscription is drained at once into a queue kept per author and
// served round-robin: a flood from some authors fills their own queues and
// is dropped there, while the few messages of everyone else still pass.
const (
	subscriptionBuffer = 1024
	perAuthorQueue     = 64
	totalQueue         = 8192
)

// Validator checks a gossip message before it is delivered or forwarded.
// via is the peer that sent it to us (not necessarily its author). Gossip
// messages carry no author and no gossipsub signature: the validator
// authenticates the data itself (the application signs what it sends) and
// returns its author, by which delivery is queued fairly, and a value (the
// decoded message, say) that travels with the message to Messages, so the
// reader need not decode it again.
type Validator func(ctx context.Context, via peer.ID, data []byte) (author peer.ID, value any, err error)

// Message is one gossip message from another node.
type Message struct {
	From       peer.ID // the author, as the validator authenticated it
	Via        peer.ID // the peer that sent it to us
	Data       []byte
	Value      any // what the topic's validator returned for it
	ReceivedAt time.Time
}

// Topic is a joined gossip topic with one subscription.
type Topic interface {
	// Name is the full topic name.
	Name() string
	// Publish sends data to the topic, waiting (bounded by ctx) until at
	// least one peer has joined it.
	Publish(ctx context.Context, data []byte) error
	// Messages delivers messages from other nodes; it is closed when the
	// topic is closed or the host shuts down.
	Messages() <-chan Message
	// ListPeers are the connected peers subscribed to this topic.
	ListPeers() []peer.ID
	// Dropped counts the messages dropped because their author had too
	// many waiting for the reader.
	Dropped() int64
	// Close leaves the topic; it is idempotent.
	Close() error
}

var _ Topic = (*joinedTopic)(nil)

// joinedTopic is a Topic joined through gossipsub.
type joinedTopic struct {
	h     *Host
	name  string // full name: dms/<network>/<name>
	log   *slog.Logger
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	queue *fairQueue
	out   chan Message

	cancel context.CancelFunc
	done   chan struct{} // closed when the subscription has ended
	wg     sync.WaitGroup

	dropped atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// TopicName is the full gossip topic name of name in this network.
func (h *Host) TopicName(name string) string { return "dms/" + h.cfg.Network + "/" + name }

// JoinTopic joins and subscribes to dms/<network>/<name>. validate runs on
// every message, ours included, before it is delivered or forwarded; an
// error rejects it (see ErrIgnore).
func (h *Host) JoinTopic(name string, validate Validator) (_ Topic, err error) {
	if err := validateName("topic", name); err != nil {
		return nil, err
	}
	if validate == nil {
		return nil, fmt.Errorf("join topic %q: a validator is required", name)
	}
	full := h.TopicName(name)
	t := &joinedTopic{
		h:     h,
		name:  full,
		log:   h.logger("p2p.pubsub").With("topic", full),
		queue: newFairQueue(perAuthorQueue, totalQueue),
		out:   make(chan Message),
		done:  make(chan struct{}),
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}

	if err := h.ps.RegisterTopicValidator(full, t.validator(validate), pubsub.WithValidatorTimeout(h.cfg.StreamTimeout)); err != nil {
		return nil, fmt.Errorf("join topic %s: register validator: %w", full, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, h.ps.UnregisterTopicValidator(full))
		}
	}()
	if t.topic, err = h.ps.Join(full); err != nil {
		return nil, fmt.Errorf("join topic %s: %w", full, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.topic.Close())
		}
	}()
	if err := t.topic.SetScoreParams(topicScoreParams()); err != nil {
		return nil, fmt.Errorf("join topic %s: score params: %w", full, err)
	}
	if t.sub, err = t.topic.Subscribe(pubsub.WithBufferSize(subscriptionBuffer)); err != nil {
		return nil, fmt.Errorf("join topic %s: subscribe: %w", full, err)
	}

	ctx, cancel := context.WithCancel(h.ctx)
	t.cancel = cancel
	t.wg.Add(2)
	go t.readLoop(ctx)
	go t.deliverLoop(ctx)
	h.topics[t] = struct{}{}
	return t, nil
}

// validator adapts validate to gossipsub, turning a panic into a rejection.
func (t *joinedTopic) validator(validate Validator) pubsub.ValidatorEx {
	return func(ctx context.Context, via peer.ID, m *pubsub.Message) (res pubsub.ValidationResult) {
		var author peer.ID
		defer func() {
			if r := recover(); r != nil {
				t.log.Warn("validator panicked; message rejected", "from", author, "panic", r)
				res = pubsub.ValidationReject
			}
		}()
		author, v, err := validate(ctx, via, m.GetData())
		if err != nil {
			if errors.Is(err, ErrIgnore) {
				t.log.Debug("message ignored", "from", author, "via", via, "err", err)
				return pubsub.ValidationIgnore
			}
			t.log.Debug("message rejected", "from", author, "via", via, "err", err)
			return pubsub.ValidationReject
		}
		m.ValidatorData = validated{author: author, value: v}
		return pubsub.ValidationAccept
	}
}

// validated is what travels from the validator to the reader in
// pubsub.Message.ValidatorData.
type validated struct {
	author peer.ID
	value  any
}

// readLoop drains the subscription into the fair queue, skipping our own
// messages, so that gossipsub never finds the subscription full.
func (t *joinedTopic) readLoop(ctx context.Context) {
	defer t.wg.Done()
	defer close(t.done)
	defer t.queue.close()
	self := t.h.host.ID()
	for {
		m, err := t.sub.Next(ctx)
		if err != nil {
			return
		}
		if m.ReceivedFrom == self {
			continue
		}
		v, _ := m.ValidatorData.(validated)
		msg := Message{From: v.author, Via: m.ReceivedFrom, Data: m.GetData(), Value: v.value, ReceivedAt: time.Now()}
		if v.author == self {
			continue
		}
		if !t.queue.push(msg) {
			t.dropped.Add(1)
			t.log.Debug("message dropped: its author has too many queued", "from", v.author, "via", m.ReceivedFrom)
		}
	}
}

// deliverLoop hands queued messages to Messages, one author at a time, and
// closes the channel once the subscription has ended and the queue is
// empty.
func (t *joinedTopic) deliverLoop(ctx context.Context) {
	defer t.wg.Done()
	defer close(t.out)
	for {
		m, ok := t.queue.pop()
		if !ok {
			return
		}
		select {
		case t.out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// Dropped counts the messages dropped because their author had too many
// waiting for the reader.
func (t *joinedTopic) Dropped() int64 { return t.dropped.Load() }

// Name is the full topic name.
func (t *joinedTopic) Name() string { return t.name }

// Messages delivers messages from other nodes; it is closed when the topic
// is closed or the host shuts down.
func (t *joinedTopic) Messages() <-chan Message { return t.out }

// ListPeers are the connected peers subscribed to this topic.
func (t *joinedTopic) ListPeers() []peer.ID { return t.topic.ListPeers() }

// Publish sends data to the topic. gossipsub's own Publish succeeds with no
// peer to send to, so we first wait (bounded by ctx) until at least one
// peer has joined the topic.
func (t *joinedTopic) Publish(ctx context.Context, data []byte) error {
	if limit := t.h.cfg.MaxMessageSize - gossipOverhead - len(t.name); len(data) > limit {
		return fmt.Errorf("publish on %s: %d bytes, limit %d: %w", t.name, len(data), limit, ErrMessageTooLarge)
	}
	if err := t.waitForPeers(ctx); err != nil {
		return err
	}
	if err := t.topic.Publish(ctx, data); err != nil {
		if errors.Is(err, pubsub.ErrTopicClosed) {
			return fmt.Errorf("publish on %s: %w", t.name, ErrTopicClosed)
		}
		return fmt.Errorf("publish on %s: %w", t.name, err)
	}
	return nil
}

// waitForPeers polls the topic's peers; gossipsub has no event for "the
// first peer joined" short of an event handler per caller.
func (t *joinedTopic) waitForPeers(ctx context.Context) error {
	var tick *time.Ticker
	for {
		select {
		case <-t.done:
			return fmt.Errorf("publish on %s: %w", t.name, ErrTopicClosed)
		default:
		}
		if len(t.topic.ListPeers()) > 0 {
			return nil
		}
		if tick == nil {
			tick = time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish on %s: no peer on the topic: %w", t.name, ctx.Err())
		case <-t.done:
			return fmt.Errorf("publish on %s: %w", t.name, ErrTopicClosed)
		case <-tick.C:
		}
	}
}

// Close cancels the subscription, leaves the topic and removes the
// validator. It is idempotent.
func (t *joinedTopic) Close() error {
	t.closeOnce.Do(func() {
		t.cancel()
		t.sub.Cancel()
		t.wg.Wait()
		var errs []error
		// After the host shut pubsub down there is nothing left to undo.
		if t.h.ps != nil && t.h.ctx.Err() == nil {
			errs = append(errs, t.topic.Close(), t.h.ps.UnregisterTopicValidator(t.name))
		}
		t.h.mu.Lock()
		delete(t.h.topics, t)
		t.h.mu.Unlock()
		if err := errors.Join(errs...); err != nil {
			t.closeErr = fmt.Errorf("close topic %s: %w", t.name, err)
		}
	})
	return t.closeErr
}

// peerScoreParams tunes peer scoring for a small mesh with sparse traffic:
// no penalty for quiet mesh peers (bid requests are rare), a heavy one for
// invalid messages and protocol misbehaviour, loopback exempt from the
// IP-colocation penalty (a test network shares one address).
func peerScoreParams(cfg *Config, app *penalties) *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		// Must not be nil: Topic.SetScoreParams writes into it (and panics
		// in the pubsub event loop on a nil map).
		Topics:                      make(map[string]*pubsub.TopicScoreParams),
		TopicScoreCap:               10,
		AppSpecificScore:            app.score,
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    cfg.IPColocationWeight,
		IPColocationFactorThreshold: 8,
		IPColocationFactorWhitelist: cfg.ScoreIPWhitelist,
		BehaviourPenaltyWeight:      -10,
		BehaviourPenaltyThreshold:   6,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               pubsub.DefaultDecayInterval,
		DecayToZero:                 pubsub.DefaultDecayToZero,
		RetainScore:                 10 * time.Minute,
	}
}

// peerScoreThresholds: two invalid messages stop gossip to a peer, three
// stop publishing to it, four graylist it (see topicScoreParams).
func peerScoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:             -300,
		PublishThreshold:            -800,
		GraylistThreshold:           -1500,
		AcceptPXThreshold:           10,
		OpportunisticGraftThreshold: 1,
	}
}

// topicScoreParams: a little credit for time in the mesh and first
// deliveries, -100 × (invalid messages)², forgotten over an hour.
func topicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                    1,
		TimeInMeshWeight:               0.01,
		TimeInMeshQuantum:              time.Second,
		TimeInMeshCap:                  300,
		FirstMessageDeliveriesWeight:   1,
		FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(time.Hour),
		FirstMessageDeliveriesCap:      5,
		InvalidMessageDeliveriesWeight: -100,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
	}
}

// newPubSub starts gossipsub with our size limit, heartbeat and peer
// scoring. Messages carry no author and no gossipsub signature
// (StrictNoSign): the application signs the bytes it publishes (a signed
// envelope) and its validator checks them, so a message is signed and
// verified once, not twice, and its signature does not depend on gossip.
// Without an author and sequence number, a message is named by the hash
// of its data.
func (h *Host) newPubSub() (*pubsub.PubSub, error) {
	params := pubsub.DefaultGossipSubParams()
	params.HeartbeatInterval = h.cfg.GossipHeartbeat
	opts := []pubsub.Option{}
	if h.cfg.Metrics != nil {
		gm, err := newGossipMetrics(h.cfg.Metrics)
		if err != nil {
			return nil, fmt.Errorf("p2p: gossipsub metrics: %w", err)
		}
		opts = append(opts, pubsub.WithRawTracer(gm))
	}
	ps, err := pubsub.NewGossipSub(h.ctx, h.host, append(opts,
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string {
			sum := sha256.Sum256(m.GetData())
			return string(sum[:])
		}),
		// Room for a burst before validation, so that a flood does not
		// crowd out the few honest messages there (the default is 32).
		pubsub.WithValidateQueueSize(1024),
		pubsub.WithMaxMessageSize(h.cfg.MaxMessageSize),
		pubsub.WithGossipSubParams(params),
		pubsub.WithPeerScore(peerScoreParams(&h.cfg, h.penalties), peerScoreThresholds()),
		pubsub.WithLogger(slog.New(quietTagWarnings{h.logger("p2p.gossipsub").Handler()})),
	)...)
	if err != nil {
		return nil, fmt.Errorf("p2p: start gossipsub: %w", err)
	}
	return ps, nil
}

// quietTagWarnings demotes gossipsub's "error bumping delivery tag" to
// debug: it is logged for every message that arrives on a topic this node
// is leaving (as each node does on stopping), and says nothing an operator
// can act on.
type quietTagWarnings struct{ slog.Handler }

func (q quietTagWarnings) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && r.Message == "error bumping delivery tag" {
		if !q.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietTagWarnings) WithAttrs(as []slog.Attr) slog.Handler {
	return quietTagWarnings{q.Handler.WithAttrs(as)}
}

func (q quietTagWarnings) WithGroup(name string) slog.Handler {
	return quietTagWarnings{q.Handler.WithGroup(name)}
}
