package orchestrator

import (
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Two jobs with the same module may win on the same provider at once; the
// first to end must leave the module shared for the second.
func TestSharingTheSameBlobTwiceWithOnePeerIsCounted(t *testing.T) {
	b := newBlobs(slog.New(slog.DiscardHandler))
	p := peer.ID("winner")
	data := []byte("module bytes")
	first := b.share(data, p, time.Minute)
	second := b.share(data, p, time.Minute)
	if first != second {
		t.Fatalf("the same content got two names: %v and %v", first, second)
	}
	b.unshare(first, p)
	if _, ok := b.get(first.SHA256, p); !ok {
		t.Fatal("the first job's end took the module from the second job")
	}
	b.unshare(second, p)
	if _, ok := b.get(first.SHA256, p); ok {
		t.Fatal("the module is still shared after both jobs ended")
	}
}

func TestGrantLastsUntilItsLatestShareEnds(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBlobs(slog.New(slog.DiscardHandler))
	b.now = func() time.Time { return now }
	p := peer.ID("winner")
	blob := b.share([]byte("x"), p, time.Hour)
	b.share([]byte("x"), p, time.Second) // a shorter second share must not cut the first
	now = now.Add(time.Minute)
	if _, ok := b.get(blob.SHA256, p); !ok {
		t.Fatal("a shorter second share ended the first one's hour")
	}
}
