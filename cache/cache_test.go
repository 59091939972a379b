package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// content returns n bytes that differ by seed, and their name.
func content(seed byte, n int) (string, []byte) {
	data := bytes.Repeat([]byte{seed}, n)
	return sum(data), data
}

// open opens a cache in dir with a clock that moves a second per call, so
// that file times order entries even on a coarse filesystem clock.
func open(t *testing.T, dir string, max int64) *Store {
	t.Helper()
	s, err := Open(dir, max, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if fi, err := os.ReadDir(dir); err == nil {
		for _, e := range fi {
			if info, err := e.Info(); err == nil && info.ModTime().After(clock) {
				clock = info.ModTime()
			}
		}
	}
	s.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	return s
}

func TestPutGetRoundTrip(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), 1000)
	h, data := content('a', 100)
	if s.Has(h) {
		t.Fatal("empty cache has an entry")
	}
	if err := s.Put(h, data); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Get(h)
	if !ok || !bytes.Equal(got, data) || !s.Has(h) || s.Size() != 100 || s.Len() != 1 {
		t.Fatalf("get %v (%d bytes), size %d, len %d", ok, len(got), s.Size(), s.Len())
	}
	if err := s.Put(h, data); err != nil || s.Size() != 100 || s.Len() != 1 {
		t.Fatalf("second put: %v, size %d, len %d", err, s.Size(), s.Len())
	}
}

func TestSizeStaysWithinBoundAndLeastRecentlyUsedGoFirst(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), 300)
	ha, a := content('a', 100)
	hb, b := content('b', 100)
	hc, c := content('c', 100)
	hd, d := content('d', 150)
	for _, p := range []struct {
		h    string
		data []byte
	}{{ha, a}, {hb, b}, {hc, c}} {
		if err := s.Put(p.h, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.Get(ha); !ok { // a is now the most recently used, b the least
		t.Fatal("a missing")
	}
	if err := s.Put(hd, d); err != nil {
		t.Fatal(err)
	}
	// d needs 150 bytes: b, then c go; a (used) and d stay.
	for h, want := range map[string]bool{ha: true, hb: false, hc: false, hd: true} {
		if s.Has(h) != want {
			t.Errorf("has %s = %v, want %v", h[:8], !want, want)
		}
	}
	if s.Size() != 250 || s.Size() > s.Max() {
		t.Fatalf("size %d, want 250 within %d", s.Size(), s.Max())
	}
	files, _ := os.ReadDir(s.dir)
	if len(files) != 2 {
		t.Fatalf("%d files on disk, want 2", len(files))
	}
}

func TestContentNotMatchingItsNameIsRefused(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), 1000)
	h, _ := content('a', 10)
	_, other := content('b', 10)
	if err := s.Put(h, other); !errors.Is(err, ErrMismatch) {
		t.Fatalf("put of other content: %v, want ErrMismatch", err)
	}
	if err := s.Put("../x", other); err == nil {
		t.Fatal("put under a name that is not a hash accepted")
	}
	if s.Has(h) || s.Len() != 0 {
		t.Fatal("refused content was kept")
	}
	_, big := content('c', 1001)
	if err := s.Put(sum(big), big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("content over the bound: %v, want ErrTooLarge", err)
	}
}

// A file changed on disk after it was written is not served: it is
// dropped and the caller fetches again.
func TestEntryChangedOnDiskIsAMiss(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), 1000)
	h, data := content('a', 100)
	if err := s.Put(h, data); err != nil {
		t.Fatal(err)
	}
	data[0] = 'x'
	if err := os.WriteFile(filepath.Join(s.dir, h), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Get(h); ok {
		t.Fatalf("changed entry served (%q...)", got[:4])
	}
	if s.Has(h) || s.Size() != 0 {
		t.Fatal("changed entry kept in the index")
	}
	if _, err := os.Stat(filepath.Join(s.dir, h)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("changed entry's file: %v, want removed", err)
	}
}

// A restart keeps the entries and their order of use; what a write cut
// short left behind goes.
func TestRestartKeepsEntriesAndTheirOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir, 1000)
	ha, a := content('a', 100)
	hb, b := content('b', 100)
	hc, c := content('c', 100)
	for _, p := range []struct {
		h    string
		data []byte
	}{{ha, a}, {hb, b}, {hc, c}} {
		if err := s.Put(p.h, p.data); err != nil {
			t.Fatal(err)
		}
	}
	s.Get(ha) // b is now the least recently used
	if err := os.WriteFile(filepath.Join(dir, ".put-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	again := open(t, dir, 1000)
	if again.Len() != 3 || again.Size() != 300 {
		t.Fatalf("after restart: %d entries, %d bytes, want 3 and 300", again.Len(), again.Size())
	}
	if got, ok := again.Get(hc); !ok || !bytes.Equal(got, c) {
		t.Fatal("entry lost in the restart")
	}
	if _, err := os.Stat(filepath.Join(dir, ".put-123")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover of a cut write: %v, want removed", err)
	}
	// A lower bound on the next start evicts in the order of use: b first
	// (least recent), then a (c was just used).
	smaller := open(t, dir, 200)
	if smaller.Has(hb) || !smaller.Has(ha) || !smaller.Has(hc) || smaller.Size() != 200 {
		t.Fatalf("after restart with a lower bound: a %v b %v c %v, size %d; want b gone",
			smaller.Has(ha), smaller.Has(hb), smaller.Has(hc), smaller.Size())
	}
}

func TestOpenRefusesANonPositiveBound(t *testing.T) {
	t.Parallel()
	if _, err := Open(t.TempDir(), 0, nil); err == nil {
		t.Fatal("bound 0 accepted")
	}
}

// BenchmarkGet2MiB: what a hit costs, read and hash check included, for a
// module the size of examples/hello (2.2 MiB).
func BenchmarkGet2MiB(b *testing.B) {
	s, err := Open(b.TempDir(), 1<<30, nil)
	if err != nil {
		b.Fatal(err)
	}
	h, data := content('m', 2282502)
	if err := s.Put(h, data); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, ok := s.Get(h); !ok {
			b.Fatal("miss")
		}
	}
}
