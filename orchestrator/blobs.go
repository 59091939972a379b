package orchestrator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/p2p"
)

// The fetch protocol moves what is too large for one message: modules over
// MaxInlineModule and inputs, requester to winner; outputs, provider to
// requester. Content is named by its sha256 and shared with one peer at a
// time: a blob is served only to a peer it was shared with, chunk by chunk,
// and the fetcher checks size and hash before it uses a byte.

// fetchChunk is the size of one data frame: small enough to need no large
// reservation anywhere, large enough that 16 MiB is 64 frames.
const fetchChunk = 256 << 10

// ErrNotShared: the peer asked for content not shared with it (or no longer).
var ErrNotShared = errors.New("not shared")

// FetchRequest opens a fetch stream.
type FetchRequest struct {
	SHA256 string `json:"sha256"`
}

// fetchHeader answers a FetchRequest before the data frames.
type fetchHeader struct {
	Size  int64  `json:"size"`
	Error string `json:"error,omitempty"`
}

// DecodeFetchRequest decodes and checks the opening message of a fetch.
func DecodeFetchRequest(data []byte) (*FetchRequest, error) {
	var r FetchRequest
	if err := decode(data, MaxReplySize, &r); err != nil {
		return nil, err
	}
	if err := checkHash("fetch", r.SHA256); err != nil {
		return nil, err
	}
	return &r, nil
}

func decodeFetchHeader(data []byte, want int64) (*fetchHeader, error) {
	var h fetchHeader
	if err := decode(data, MaxReplySize, &h); err != nil {
		return nil, err
	}
	if h.Error == "" && h.Size != want {
		return nil, invalid("fetch: the peer offers %d bytes, want %d", h.Size, want)
	}
	return &h, nil
}

// blobs is what this node shares, by hash. One mutex owns it.
type blobs struct {
	now func() time.Time
	log *slog.Logger

	mu sync.Mutex
	m  map[string]*sharedBlob
}

type sharedBlob struct {
	data []byte
	// with maps each peer it is shared with to its grant. Two jobs may
	// share the same module with the same winner at once: the first to end
	// must not take it from the second, so grants are counted.
	with map[peer.ID]*grant
}

// grant is the sharing of one blob with one peer: how many shares hold it
// and when the last of them ends.
type grant struct {
	until time.Time
	n     int
}

func newBlobs(log *slog.Logger) *blobs {
	return &blobs{now: time.Now, log: log, m: map[string]*sharedBlob{}}
}

// Share lets peer fetch data for ttl, and returns its name. Sharing the
// same content again (another job, another peer) keeps one copy.
func (s *Service) Share(data []byte, with peer.ID, ttl time.Duration) Blob {
	return s.blobs.share(data, with, ttl)
}

// Unshare stops sharing b with peer; content shared with nobody is dropped.
func (s *Service) Unshare(b Blob, with peer.ID) { s.blobs.unshare(b, with) }

func (b *blobs) share(data []byte, with peer.ID, ttl time.Duration) Blob {
	sum := sha256.Sum256(data)
	blob := Blob{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneLocked()
	e, ok := b.m[blob.SHA256]
	if !ok {
		e = &sharedBlob{data: data, with: map[peer.ID]*grant{}}
		b.m[blob.SHA256] = e
	}
	g, ok := e.with[with]
	if !ok {
		g = &grant{}
		e.with[with] = g
	}
	g.n++
	g.until = later(g.until, b.now().Add(ttl))
	return blob
}

func (b *blobs) unshare(blob Blob, with peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.m[blob.SHA256]; ok {
		if g, ok := e.with[with]; ok {
			if g.n--; g.n <= 0 {
				delete(e.with, with)
			}
		}
		if len(e.with) == 0 {
			delete(b.m, blob.SHA256)
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// SharedBytes is how much content this node holds for others to fetch.
func (s *Service) SharedBytes() int64 {
	s.blobs.mu.Lock()
	defer s.blobs.mu.Unlock()
	s.blobs.pruneLocked()
	var n int64
	for _, e := range s.blobs.m {
		n += int64(len(e.data))
	}
	return n
}

func (b *blobs) pruneLocked() {
	now := b.now()
	for h, e := range b.m {
		for p, g := range e.with {
			if now.After(g.until) {
				delete(e.with, p)
			}
		}
		if len(e.with) == 0 {
			delete(b.m, h)
		}
	}
}

func (b *blobs) get(hash string, from peer.ID) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneLocked()
	e, ok := b.m[hash]
	if !ok {
		return nil, false
	}
	if _, ok := e.with[from]; !ok {
		return nil, false
	}
	return e.data, true
}

// handleFetch serves one fetch: the header, then the data in chunks.
func (s *Service) handleFetch(_ context.Context, from peer.ID, st p2p.FramedStream) {
	st.SetMaxFrameSize(MaxReplySize)
	data, err := st.Recv()
	if err != nil {
		st.Reset()
		return
	}
	req, err := DecodeFetchRequest(data)
	if err != nil {
		st.Reset()
		return
	}
	content, ok := s.blobs.get(req.SHA256, from)
	send := func(h fetchHeader) error {
		b, err := Encode(&h)
		if err != nil {
			return err
		}
		return st.Send(b)
	}
	if !ok {
		_ = send(fetchHeader{Error: fmt.Sprintf("%s is not shared with %s", req.SHA256, from)})
		return
	}
	if err := send(fetchHeader{Size: int64(len(content))}); err != nil {
		st.Reset()
		return
	}
	st.SetMaxFrameSize(fetchChunk)
	for off := 0; off < len(content); off += fetchChunk {
		if err := st.Send(content[off:min(off+fetchChunk, len(content))]); err != nil {
			s.log.Debug("fetch: send", "to", from, "sha256", req.SHA256, "err", err)
			st.Reset()
			return
		}
	}
}

// Fetch gets b from peer from, refusing more than limit bytes, and checks
// its size and hash.
func (s *Service) Fetch(ctx context.Context, from peer.ID, b Blob, limit int64) ([]byte, error) {
	return fetchBlob(ctx, s.host, from, b, limit)
}

// fetchBlob is Fetch over host; the requester fetches each replica's
// outputs with it.
func fetchBlob(ctx context.Context, host Network, from peer.ID, b Blob, limit int64) ([]byte, error) {
	if err := b.check("blob", limit); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	st, err := host.OpenStream(ctx, from, ProtocolFetch)
	if err != nil {
		return nil, fmt.Errorf("fetch %s from %s: %w", short(b.SHA256), from, err)
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	fail := func(err error) ([]byte, error) {
		st.Reset()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("fetch %s from %s: %w", short(b.SHA256), from, err)
	}
	msg, err := Encode(&FetchRequest{SHA256: b.SHA256})
	if err != nil {
		return nil, err
	}
	st.SetMaxFrameSize(MaxReplySize)
	if err := st.Send(msg); err != nil {
		return fail(err)
	}
	data, err := st.Recv()
	if err != nil {
		return fail(err)
	}
	h, err := decodeFetchHeader(data, b.Size)
	if err != nil {
		return fail(err)
	}
	if h.Error != "" {
		return fail(fmt.Errorf("%w: %s", ErrNotShared, h.Error))
	}
	st.SetMaxFrameSize(fetchChunk)
	var buf bytes.Buffer
	buf.Grow(int(b.Size))
	for int64(buf.Len()) < b.Size {
		chunk, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return fail(fmt.Errorf("cut short at %d of %d bytes", buf.Len(), b.Size))
		}
		if err != nil {
			return fail(err)
		}
		if int64(buf.Len()+len(chunk)) > b.Size {
			return fail(invalid("more than the %d bytes announced", b.Size))
		}
		buf.Write(chunk)
	}
	sum := sha256.Sum256(buf.Bytes())
	if got := hex.EncodeToString(sum[:]); got != b.SHA256 {
		return fail(invalid("content hashes to %s, not %s", short(got), short(b.SHA256)))
	}
	return buf.Bytes(), nil
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}
