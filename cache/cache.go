// Package cache keeps content named by its sha256 on disk, within a size
// bound, dropping the least recently used first. A provider keeps the
// modules and inputs it fetched in one, so a job it runs again moves no
// bytes.
//
// Each entry is a file named by the hex sha256 of its content. Put checks
// the content against the name before it writes; Get checks it again
// before it returns a byte: hashing runs at hundreds of megabytes a
// second, less than fetching the same bytes costs, and it is what lets a
// bid say "I hold this hash" and a receipt name the hash of what ran
// without trusting a file that anything with access to the home could have
// changed. A file that no longer matches its name is removed and reported
// as a miss. Has trusts the name alone: it only decides what a bid claims.
//
// When an entry was last used is its file's modification time, so the
// eviction order survives a restart.
package cache

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// ErrMismatch: the content does not hash to the name it was given.
var ErrMismatch = errors.New("content does not match its sha256")

// ErrTooLarge: the content is larger than the whole cache.
var ErrTooLarge = errors.New("larger than the cache")

// Store is a bounded on-disk cache. One mutex owns the index and the files.
type Store struct {
	dir string
	max int64
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	size  int64
	index map[string]*list.Element // of *entry
	order *list.List               // most recently used at the front
}

type entry struct {
	hash string
	size int64
}

// Open opens (creating it if needed) the cache in dir, bounded to maxBytes,
// and indexes what an earlier run left there. Files that are not entries
// (a write cut short, anything else) are removed; if the entries exceed
// the bound (it may have been lowered), the least recently used go.
func Open(dir string, maxBytes int64, log *slog.Logger) (*Store, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("cache %s: size bound %d: want more than 0 bytes", dir, maxBytes)
	}
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	s := &Store{dir: dir, max: maxBytes, log: log, now: time.Now, index: map[string]*list.Element{}, order: list.New()}
	type found struct {
		entry
		used time.Time
	}
	var all []found
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		if !info.Mode().IsRegular() || !validHash(e.Name()) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				log.Warn("cache: remove stray file", "file", e.Name(), "err", err)
			}
			continue
		}
		all = append(all, found{entry{e.Name(), info.Size()}, info.ModTime()})
	}
	// Oldest first, each pushed to the front: the newest ends up there.
	slices.SortFunc(all, func(a, b found) int { return a.used.Compare(b.used) })
	for _, f := range all {
		s.index[f.hash] = s.order.PushFront(&entry{f.hash, f.size})
		s.size += f.size
	}
	s.mu.Lock()
	s.evictLocked(0)
	s.mu.Unlock()
	return s, nil
}

// Has reports whether the cache holds hash, by name only (see the package
// comment).
func (s *Store) Has(hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.index[hash]
	return ok
}

// Get returns the content named hash, checked against it, and marks it
// used. A missing entry, or one whose file no longer matches its name
// (which is then removed), is a miss.
func (s *Store) Get(hash string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.index[hash]
	if !ok {
		return nil, false
	}
	path := filepath.Join(s.dir, hash)
	data, err := os.ReadFile(path)
	if err == nil && sum(data) != hash {
		err = ErrMismatch
	}
	if err != nil {
		s.log.Warn("cache: entry dropped", "sha256", hash, "err", err)
		s.removeLocked(el)
		return nil, false
	}
	s.markLocked(el)
	return data, true
}

// Put stores data under hash, which it must hash to, and drops the least
// recently used entries to stay within the bound. Content larger than the
// whole cache is refused with ErrTooLarge.
func (s *Store) Put(hash string, data []byte) error {
	if !validHash(hash) {
		return fmt.Errorf("cache: name %q: want 64 lower-case hex digits", hash)
	}
	if got := sum(data); got != hash {
		return fmt.Errorf("cache: %w: named %s, hashes to %s", ErrMismatch, hash, got)
	}
	size := int64(len(data))
	if size > s.max {
		return fmt.Errorf("cache: %w: %d bytes, the bound is %d", ErrTooLarge, size, s.max)
	}
	if s.touch(hash) {
		return nil
	}
	// Written aside and renamed, so that a crash leaves no entry with
	// partial content (Open removes the leftover).
	tmp, err := os.CreateTemp(s.dir, ".put-*")
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Close())
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cache: write %s: %w", hash, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, hash)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cache: %w", err)
	}
	if el, ok := s.index[hash]; ok { // another Put of the same content won
		s.markLocked(el)
		return nil
	}
	// Make room before indexing the new entry, so it is never the one
	// evicted.
	s.evictLocked(size)
	el := s.order.PushFront(&entry{hash, size})
	s.index[hash] = el
	s.size += size
	s.markLocked(el)
	return nil
}

// touch marks an entry used, if there is one. Its content was checked when
// it was written and is checked again by the Get that uses it.
func (s *Store) touch(hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.index[hash]
	if ok {
		s.markLocked(el)
	}
	return ok
}

// markLocked makes el the most recently used, in memory and on disk.
func (s *Store) markLocked(el *list.Element) {
	s.order.MoveToFront(el)
	now := s.now()
	if err := os.Chtimes(filepath.Join(s.dir, el.Value.(*entry).hash), now, now); err != nil {
		s.log.Debug("cache: mark used", "sha256", el.Value.(*entry).hash, "err", err)
	}
}

// Size is how many bytes the entries hold.
func (s *Store) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Len is the number of entries.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// Max is the size bound.
func (s *Store) Max() int64 { return s.max }

// evictLocked drops least recently used entries until room more bytes fit.
func (s *Store) evictLocked(room int64) {
	for s.size+room > s.max {
		el := s.order.Back()
		if el == nil {
			return
		}
		s.removeLocked(el)
	}
}

func (s *Store) removeLocked(el *list.Element) {
	e := el.Value.(*entry)
	if err := os.Remove(filepath.Join(s.dir, e.hash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("cache: remove entry", "sha256", e.hash, "err", err)
	}
	s.order.Remove(el)
	delete(s.index, e.hash)
	s.size -= e.size
}

func sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
