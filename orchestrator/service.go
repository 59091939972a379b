package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/p2p"
)

// Config holds both sides' settings.
type Config struct {
	Requester RequesterConfig
	Provider  ProviderConfig
	// Requests bounds what one requester may publish (at the validator).
	Requests RequestLimits
	Logger   *slog.Logger
	// Observe, if set, sees every valid bid request as it arrives (the
	// bench measures gossip with it). It must not block.
	Observe func(req *BidRequest, receivedAt time.Time)
	// Reputation tunes what the requester remembers of providers (zero:
	// DefaultReputationConfig). ProviderRecords are the records kept from
	// before; SaveRecord, if set, keeps each one that changes (one with no
	// events is to be deleted).
	Reputation      ReputationConfig
	ProviderRecords []ProviderRecord
	SaveRecord      func(ProviderRecord) error
}

// DefaultConfig suits a real network.
func DefaultConfig() Config {
	return Config{Requester: DefaultRequesterConfig(), Provider: DefaultProviderConfig(), Requests: DefaultRequestLimits(), Reputation: DefaultReputationConfig()}
}

// LocalConfig suits a test network on one machine: short windows so tests
// and the demo do not wait on timers meant for the internet.
func LocalConfig() Config {
	c := DefaultConfig()
	c.Requester.BiddingWindow = 2 * time.Second
	c.Requester.InvokeTimeout = 5 * time.Second
	c.Provider.Heartbeat = 300 * time.Millisecond
	c.Requester.LostAfter = 5 * c.Provider.Heartbeat
	c.Provider.HoldGrace = 5 * time.Second
	c.Provider.HoldWindow = c.Requester.BiddingWindow
	c.Requester.Keepalive = c.Provider.Heartbeat
	c.Provider.FollowTimeout = 5 * c.Requester.Keepalive
	c.Provider.AbandonGrace = 3 * time.Second
	c.Requester.DeadlineMargin = 2 * time.Second
	// On one loaded machine an honest provider can be slow to say its first
	// word, and one heartbeat late is "lost": the stall timeout is a real
	// node's, and the cool-down short, so that such a false offence costs
	// a test network seconds, not the rest of its run. Long enough still to
	// show that an offender is left out.
	c.Requester.StallTimeout = 5 * time.Second
	c.Reputation.Cooldown, c.Reputation.MaxCooldown = 15*time.Second, 5*time.Minute
	return c
}

// Service is the protocol on one node: it joins the bid-request topic,
// feeds requests to the provider side and offers Submit on the requester
// side.
type Service struct {
	*Requester
	provider  *Provider
	host      Network
	key       crypto.PrivKey
	blobs     *blobs
	topic     p2p.Topic
	validator *Validator
	drops     *dropLog
	log       *slog.Logger
	observe   func(*BidRequest, time.Time)

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewService joins the topic and registers the protocol handlers on host.
// When it fails nothing is left running.
func NewService(host Network, key crypto.PrivKey, backend Backend, cfg Config) (_ *Service, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Requests.Validate(); err != nil {
		return nil, err
	}
	if cfg.Reputation == (ReputationConfig{}) {
		cfg.Reputation = DefaultReputationConfig()
	}
	rep, err := NewReputation(cfg.Reputation, cfg.ProviderRecords, cfg.SaveRecord, log)
	if err != nil {
		return nil, err
	}
	s := &Service{host: host, key: key, validator: NewValidator(nil, cfg.Requests), log: log.With("subsystem", "orchestrator"), observe: cfg.Observe}
	s.blobs = newBlobs(s.log)
	s.drops = newDropLog(s.log, nil)
	s.topic, err = host.JoinTopic(TopicBidRequests, func(_ context.Context, via peer.ID, data []byte) (peer.ID, any, error) {
		req, err := s.admit(via, data)
		switch {
		case err == nil:
			return req.Requester, req, nil
		case errors.Is(err, ErrStale):
			return "", nil, fmt.Errorf("%w: %w", p2p.ErrIgnore, err)
		case errors.Is(err, ErrRateLimited):
			// Dropped, never rejected: gossipsub blames every peer that
			// delivered a rejected message, and an honest relay may have
			// counted the requester's messages in another order and
			// rightly accepted it. The peer that sent it loses gossip
			// score when it is to blame (ErrFlooding, see admit).
			return "", nil, fmt.Errorf("%w: %w", p2p.ErrIgnore, err)
		}
		// Rejected: gossipsub lowers the score of via, which sent us
		// what no honest peer forwards.
		return "", nil, err
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.topic.Close())
		}
	}()
	if s.provider, err = NewProvider(host, key, backend, cfg.Provider, log); err != nil {
		return nil, err
	}
	s.Requester, err = newRequester(host, key, cfg.Requester, requesterDeps{
		topic: s.topic, prefs: backend.Preferences, blobs: s.blobs,
		// The requester keeps to the rate every validator holds it to,
		// waiting for its turn rather than having its own requests refused.
		pace:  rate.NewLimiter(rate.Limit(cfg.Requests.Rate), cfg.Requests.Burst),
		local: s.provider.HandleOwnRequest,
		rep:   rep,
	}, log)
	if err != nil {
		s.provider.Close()
		return nil, err
	}
	if err := host.HandleRequest(ProtocolBidRequest, MaxBidRequestSize+envelopeOverhead, s.handleDirect); err != nil {
		s.provider.Close()
		s.Requester.close()
		return nil, err
	}
	if err := host.HandleStream(ProtocolFetch, s.handleFetch); err != nil {
		s.provider.Close()
		s.Requester.close()
		return nil, err
	}
	s.wg.Add(1)
	go s.readLoop()
	return s, nil
}

// admit runs the validator on a bid request that via sent us, on the
// topic or by name, and notes a drop. The peer that sent it loses gossip
// score when it is to blame (ErrFlooding): it relays one requester far over
// that requester's rate, or it is the requester itself over its own.
func (s *Service) admit(via peer.ID, data []byte) (*BidRequest, error) {
	req, err := s.validator.Validate(via, data)
	if err != nil {
		s.drops.note(via, err)
		if errors.Is(err, ErrFlooding) {
			s.host.Penalize(via)
		}
	}
	return req, err
}

// readLoop hands validated bid requests to the provider side. The topic
// validator already checked signer, freshness and replay, and its decoded
// request comes with the message.
func (s *Service) readLoop() {
	defer s.wg.Done()
	for m := range s.topic.Messages() {
		req, ok := m.Value.(*BidRequest)
		if !ok {
			continue
		}
		if s.observe != nil {
			s.observe(req, m.ReceivedAt)
		}
		s.provider.HandleBidRequest(req)
	}
}

// RegisteredBids returns the bids this node placed for a job.
func (s *Service) RegisteredBids(jobID string) []Bid { return s.provider.RegisteredBids(jobID) }

// Declined says why this node, as a provider, did not bid for a job.
func (s *Service) Declined(jobID string) string { return s.provider.Declined(jobID) }

// Stats are the protocol's counters on this node.
type Stats struct {
	RequestsSeen int64 `json:"requests_seen"` // bid requests heard as a provider
	BidsSent     int64 `json:"bids_sent"`     // as a provider
	BidsReceived int64 `json:"bids_received"` // as a requester, taken or not
	// SignaturesVerified counts the bid requests whose signature the
	// topic validator checked.
	SignaturesVerified int64 `json:"signatures_verified"`
	// RequestsDropped counts the bid requests the topic validator
	// dropped, by reason (DropReason's names).
	RequestsDropped map[string]int64 `json:"requests_dropped"`
	// RequestersThrottled counts the times a requester, as this provider
	// saw it, came to hold far more than it ran and was refused bids.
	RequestersThrottled int64 `json:"requesters_throttled"`
	// HoldsDisplaced counts the unclaimed holds this provider dropped for
	// another requester's bid (see mayDisplace).
	HoldsDisplaced int64 `json:"holds_displaced"`
}

// Stats returns the protocol's counters.
func (s *Service) Stats() Stats {
	st := Stats{RequestsSeen: s.provider.RequestsSeen(), BidsSent: s.provider.BidsSent(), BidsReceived: s.BidsReceived(),
		SignaturesVerified: s.validator.Verified(), RequestsDropped: map[string]int64{},
		RequestersThrottled: s.provider.Throttled(), HoldsDisplaced: s.provider.Displaced()}
	for r, n := range s.validator.Dropped() {
		st.RequestsDropped[r.String()] = n
	}
	return st
}

// Probe publishes a bid request that no provider takes (see NewProbe),
// under jobID ("" picks one).
func (s *Service) Probe(ctx context.Context, jobID string) error {
	req := NewProbe(s.host.ID())
	if jobID != "" {
		req.JobID = jobID
	}
	data, err := SealBidRequest(req, s.key)
	if err != nil {
		return err
	}
	return s.topic.Publish(ctx, data)
}

// Ran tells the provider side that an allocation of requester's ran
// here, using used for d: its standing grows with what it runs.
func (s *Service) Ran(requester peer.ID, used capability.Capability, d time.Duration) {
	s.provider.Ran(requester, used, d)
}

// Standing says how this node, as a provider, sees a requester.
func (s *Service) Standing(requester peer.ID) Standing { return s.provider.Standing(requester) }

// Topic is the joined bid-request topic (for measurements).
func (s *Service) Topic() p2p.Topic { return s.topic }

// Close leaves the topic and waits for the read loop and pending bids. The
// host's handlers stay registered; closing the host removes them.
func (s *Service) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.topic.Close()
		s.wg.Wait()
		s.provider.Close()
		s.Requester.close()
	})
	return err
}
