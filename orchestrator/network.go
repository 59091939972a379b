package orchestrator

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/p2p"
)

// Network is what the protocol needs of the mesh: who this node is, the
// bid-request topic, request/response exchanges and framed streams by
// protocol name, and a little about the peers. The node's p2p.Host is the
// real one (node checks that it is); tests drive the protocol over an
// in-memory one.
type Network interface {
	// ID is this node's peer ID.
	ID() peer.ID
	// Network is the network ID, for messages that name it.
	Network() string
	// Peers are the peers this node holds a connection to.
	Peers() []peer.ID
	// KnownPeers are the peers this node knows to be there now that
	// speak the protocol name: a lower bound of the network's providers.
	// The requester sizes its spread by them, and sends bid requests
	// straight to the ones nearest a job (direct.go).
	KnownPeers(name string) []peer.ID

	// JoinTopic joins a gossip topic; validate runs on every message
	// before it is delivered or forwarded.
	JoinTopic(name string, validate p2p.Validator) (p2p.Topic, error)
	// Penalize lowers a peer's gossip score, for a flood it sent.
	Penalize(p peer.ID)

	// HandleRequest answers requests of at most maxReq bytes on name.
	HandleRequest(name string, maxReq int, handler p2p.RequestHandler) error
	// Request sends one request to p on name and returns the response, of
	// at most maxResp bytes.
	Request(ctx context.Context, p peer.ID, name string, req []byte, maxResp int) ([]byte, error)
	// HandleStream serves long-lived framed streams on name.
	HandleStream(name string, handler p2p.StreamHandler) error
	// OpenStream opens a long-lived framed stream to p on name.
	OpenStream(ctx context.Context, p peer.ID, name string) (p2p.FramedStream, error)
}
