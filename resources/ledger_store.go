package resources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// Datastore keys. Allocation records live under AllocationsPrefix so the
// node can list them; they are written and deleted only together with their
// lock.
var (
	registeredKey  = datastore.NewKey("/resources/registered")
	benchmarkKey   = datastore.NewKey("/resources/benchmark")
	preferencesKey = datastore.NewKey("/resources/preferences")
	locksPrefix    = datastore.NewKey("/resources/locks")
	// AllocationsPrefix is where allocation records (a lock's Meta) are kept.
	AllocationsPrefix = datastore.NewKey("/allocations")
)

// AllocationKey is the datastore key of an allocation's record.
func AllocationKey(allocID string) datastore.Key { return AllocationsPrefix.ChildString(allocID) }

func lockKey(allocID string) datastore.Key { return locksPrefix.ChildString(allocID) }

// lockRecord is a lock as stored; Meta is stored apart, under AllocationKey.
type lockRecord struct {
	Capability capability.Capability `json:"capability"`
	Since      time.Time             `json:"since"`
}

// The datastore calls take a context that pebble ignores; the ledger's own
// methods have none, so they use this one.
var bg = context.Background()

func (l *Ledger) putJSON(k datastore.Key, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", k, err)
	}
	if err := l.ds.Put(bg, k, b); err != nil {
		return fmt.Errorf("write %s: %w", k, err)
	}
	return nil
}

// writeLock stores a lock and its allocation record in one batch.
func (l *Ledger) writeLock(lk Lock) error {
	rec, err := json.Marshal(lockRecord{Capability: lk.Capability, Since: lk.Since})
	if err != nil {
		return fmt.Errorf("encode lock: %w", err)
	}
	b, err := l.ds.Batch(bg)
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	if err := b.Put(bg, lockKey(lk.ID), rec); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	meta := lk.Meta
	if meta == nil {
		meta = []byte{}
	}
	if err := b.Put(bg, AllocationKey(lk.ID), meta); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	if err := b.Commit(bg); err != nil {
		return fmt.Errorf("commit lock %s: %w", lk.ID, err)
	}
	return nil
}

// deleteLocks removes locks with their allocation records, and the
// registered capability too when deregister is set, in one batch.
func (l *Ledger) deleteLocks(ids []string, deregister bool) error {
	b, err := l.ds.Batch(bg)
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	for _, id := range ids {
		if err := b.Delete(bg, lockKey(id)); err != nil {
			return fmt.Errorf("batch: %w", err)
		}
		if err := b.Delete(bg, AllocationKey(id)); err != nil {
			return fmt.Errorf("batch: %w", err)
		}
	}
	if deregister {
		if err := b.Delete(bg, registeredKey); err != nil {
			return fmt.Errorf("batch: %w", err)
		}
	}
	if err := b.Commit(bg); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// load reads the persisted state; holds start empty.
func (l *Ledger) load() error {
	if err := l.getJSON(registeredKey, &l.registered); err != nil {
		return err
	}
	var b Benchmark
	switch err := l.getJSON(benchmarkKey, &b); {
	case err != nil:
		return err
	case b.Score > 0:
		l.bench = &b
	}
	prefs, err := l.ds.Get(bg, preferencesKey)
	switch {
	case err == nil:
		l.preferences = prefs
	case !errors.Is(err, datastore.ErrNotFound):
		return fmt.Errorf("read preferences: %w", err)
	}
	res, err := l.ds.Query(bg, query.Query{Prefix: locksPrefix.String()})
	if err != nil {
		return fmt.Errorf("list locks: %w", err)
	}
	entries, err := res.Rest()
	if err != nil {
		return fmt.Errorf("list locks: %w", err)
	}
	for _, e := range entries {
		id := strings.TrimPrefix(e.Key, locksPrefix.String()+"/")
		var rec lockRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			return fmt.Errorf("read lock %s: %w", id, err)
		}
		meta, err := l.ds.Get(bg, AllocationKey(id))
		if err != nil && !errors.Is(err, datastore.ErrNotFound) {
			return fmt.Errorf("read allocation %s: %w", id, err)
		}
		if errors.Is(err, datastore.ErrNotFound) {
			l.log.Warn("lock without allocation record", "allocation", id)
		}
		if len(meta) == 0 {
			meta = nil
		}
		l.locks[id] = Lock{ID: id, Capability: rec.Capability, Meta: meta, Since: rec.Since}
	}
	if _, err := l.registered.Subtract(l.sumLocked()); err != nil && len(l.locks) > 0 {
		l.log.Error("stored locks exceed the registered capability; offering nothing until they are released", "err", err)
	}
	return nil
}

func (l *Ledger) getJSON(k datastore.Key, v any) error {
	b, err := l.ds.Get(bg, k)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", k, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", k, err)
	}
	return nil
}

// SetBenchmark stores a benchmark and stamps its score on the registered
// capability, in one batch, so that bids carry the latest score.
func (l *Ledger) SetBenchmark(b Benchmark) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("set benchmark: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	reg := cloneCap(l.registered)
	reg.CPU.Score = b.Score
	bb, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("set benchmark: %w", err)
	}
	batch, err := l.ds.Batch(bg)
	if err != nil {
		return fmt.Errorf("set benchmark: %w", err)
	}
	if err := batch.Put(bg, benchmarkKey, bb); err != nil {
		return fmt.Errorf("set benchmark: %w", err)
	}
	if !l.registered.IsZero() {
		rb, err := json.Marshal(reg)
		if err != nil {
			return fmt.Errorf("set benchmark: %w", err)
		}
		if err := batch.Put(bg, registeredKey, rb); err != nil {
			return fmt.Errorf("set benchmark: %w", err)
		}
	}
	if err := batch.Commit(bg); err != nil {
		return fmt.Errorf("set benchmark: commit: %w", err)
	}
	l.bench = &b
	if !l.registered.IsZero() {
		l.registered = reg
	}
	return nil
}

// Benchmark returns the stored benchmark, if any.
func (l *Ledger) Benchmark() (Benchmark, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bench == nil {
		return Benchmark{}, false
	}
	return *l.bench, true
}

// SetPreferences stores the node's preferences, opaque to this package.
func (l *Ledger) SetPreferences(p []byte) error {
	if len(p) > MaxMetaSize {
		return fmt.Errorf("set preferences: %d bytes, at most %d", len(p), MaxMetaSize)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ds.Put(bg, preferencesKey, p); err != nil {
		return fmt.Errorf("set preferences: %w", err)
	}
	l.preferences = slices.Clone(p)
	return nil
}

// Preferences returns the stored preferences, nil if none.
func (l *Ledger) Preferences() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.preferences)
}
