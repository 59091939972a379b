package resources

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/ipfs/go-datastore"
)

// Sentinel errors callers branch on. A hold or lock that does not fit wraps
// capability.ErrInsufficient instead, naming the dimension.
var (
	ErrUnknownHold = errors.New("no such hold (never placed, released or expired)")
	ErrUnknownLock = errors.New("no such lock")
	ErrDuplicateID = errors.New("id already in use")
	ErrInvalidID   = errors.New("invalid id")
	ErrBelowLocked = errors.New("below what is locked now")
	ErrLocked      = errors.New("allocations hold locks")
	ErrBadExpiry   = errors.New("bad hold expiry")
	ErrMetaTooBig  = errors.New("allocation record too large")
)

// MaxMetaSize bounds an allocation record kept with a lock.
const MaxMetaSize = 16 << 20

// validID keeps ids usable as one datastore key segment and in a terminal:
// 1-200 bytes, a letter or digit first, then letters, digits, '.', '_', ':'
// or '-'. It is written out rather than a regexp because the regexp's
// bounded repetition compiled at every start of the program, client
// commands included, for half a millisecond.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 200 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == ':' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Hold is a short claim on capability, placed when a node bids, dropped when it
// expires or is released, or promoted to a Lock when the bid wins. Holds live
// in memory only: a bid does not outlive the process that made it. What a
// hold was placed for is its holder's business: the ledger knows only ids.
type Hold struct {
	ID         string                `json:"id"`
	Capability capability.Capability `json:"capability"`
	Since      time.Time             `json:"since"`
	Expires    time.Time             `json:"expires"`
	// Pinned is set by Pin once the hold is handed to its invoker: it is
	// then never displaced, and only promoted or released.
	Pinned bool `json:"claimed,omitempty"`
}

// Lock is a firm claim by an allocation. It is persisted in the same batch as
// the allocation record Meta, so neither survives a crash without the other.
type Lock struct {
	ID         string                `json:"id"`
	Capability capability.Capability `json:"capability"`
	Meta       []byte                `json:"meta,omitempty"`
	Since      time.Time             `json:"since"`
}

// Snapshot is the whole ledger at one instant.
type Snapshot struct {
	At         time.Time             `json:"at"`
	Registered capability.Capability `json:"registered"`
	Holds      []Hold                `json:"holds"`
	Locks      []Lock                `json:"locks"`
	Held       capability.Capability `json:"held"`   // sum of holds
	Locked     capability.Capability `json:"locked"` // sum of locks
	// Ceiling is the most the machine can give the node right now, from the
	// monitor; nil when not monitored.
	Ceiling   *capability.Capability `json:"ceiling,omitempty"`
	Available capability.Capability  `json:"available"`
	Benchmark *Benchmark             `json:"benchmark,omitempty"`
}

// Ledger is the node's account of its capability:
//
//	available = min(registered, ceiling) − holds − locks   (per dimension, never below 0)
//
// where ceiling (from the Monitor, see Ceiling) is what the machine can give
// now. A hold or lock is only placed when it fits in available, so the sum of
// holds and locks never exceeds the registered capability. One mutex owns all
// of the state, and a change is written to the datastore (in one batch where
// it touches several keys) before memory is changed, so memory never claims
// what disk does not. The ledger calls nothing outside itself under its lock,
// so a holder may call it under its own (the provider's bid book does).
type Ledger struct {
	mu      sync.Mutex
	ds      datastore.Batching
	now     func() time.Time
	log     *slog.Logger
	maxHold time.Duration

	registered  capability.Capability
	holds       map[string]Hold
	locks       map[string]Lock
	ceiling     *capability.Capability
	bench       *Benchmark
	preferences []byte
}

type ledgerConfig struct {
	now     func() time.Time
	log     *slog.Logger
	maxHold time.Duration
}

// LedgerOption configures a Ledger.
type LedgerOption func(*ledgerConfig) error

// WithClock replaces time.Now, so tests can expire holds without sleeping.
func WithClock(now func() time.Time) LedgerOption {
	return func(c *ledgerConfig) error {
		if now == nil {
			return errors.New("clock: nil")
		}
		c.now = now
		return nil
	}
}

// WithLedgerLogger sets the logger.
func WithLedgerLogger(l *slog.Logger) LedgerOption {
	return func(c *ledgerConfig) error {
		if l == nil {
			return errors.New("logger: nil")
		}
		c.log = l
		return nil
	}
}

// WithMaxHold bounds how far in the future a hold may expire (default 10
// minutes): a hold is for the time between a bid and its invocation.
func WithMaxHold(d time.Duration) LedgerOption {
	return func(c *ledgerConfig) error {
		if d <= 0 {
			return fmt.Errorf("max hold %v: want more than zero", d)
		}
		c.maxHold = d
		return nil
	}
}

// DefaultMaxHold is the longest hold a ledger accepts unless told otherwise.
const DefaultMaxHold = 10 * time.Minute

// NewLedger loads the ledger kept in ds (registered capability, locks with
// their allocation records, benchmark, preferences). ds must be safe for
// concurrent use; the caller keeps ownership and closes it after the ledger
// is no longer used.
func NewLedger(ds datastore.Batching, opts ...LedgerOption) (*Ledger, error) {
	cfg := ledgerConfig{now: time.Now, log: slog.Default().With("subsystem", "ledger"), maxHold: DefaultMaxHold}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("new ledger: %w", err)
		}
	}
	if ds == nil {
		return nil, errors.New("new ledger: nil datastore")
	}
	l := &Ledger{
		ds: ds, now: cfg.now, log: cfg.log, maxHold: cfg.maxHold,
		holds: map[string]Hold{}, locks: map[string]Lock{},
	}
	if err := l.load(); err != nil {
		return nil, fmt.Errorf("new ledger: %w", err)
	}
	return l, nil
}

// Register sets the registered capability (the offer). It is refused if it
// would not cover what is locked now. Holds that no longer fit are released,
// newest first. The stored benchmark score, if any, is carried in CPU.Score.
func (l *Ledger) Register(c capability.Capability) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	c = cloneCap(c)
	if l.bench != nil {
		c.CPU.Score = l.bench.Score
	}
	locked := l.sumLocked()
	if _, err := c.Subtract(locked); err != nil {
		return fmt.Errorf("register %s: %w (locked now: %s): %w", c, ErrBelowLocked, locked, err)
	}
	if err := l.putJSON(registeredKey, c); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	l.registered = c
	l.dropHoldsThatDoNotFit()
	l.log.Debug("registered capability", "capability", c.String())
	return nil
}

// Registered returns the registered capability (zero when not onboarded).
func (l *Ledger) Registered() capability.Capability {
	l.mu.Lock()
	defer l.mu.Unlock()
	return cloneCap(l.registered)
}

// Reserve places a hold of id on c until expires. It is refused, wrapping
// capability.ErrInsufficient and naming the dimension, when c does not fit
// in what is available. GPU requirements are resolved to concrete GPUs,
// which the stored hold names.
//
// displaceable names holds that this one may displace, in the order to drop
// them (the holder's policy: the ledger has none). When c does not fit, the
// fewest of those (unpinned ones only) that make it fit are dropped and
// their ids returned; when even all of them would not, nothing changes.
func (l *Ledger) Reserve(id string, c capability.Capability, expires time.Time, displaceable []string) (displaced []string, err error) {
	if !validID(id) {
		return nil, fmt.Errorf("hold %q: %w: want 1-200 letters, digits, '.', '_', ':' or '-'", id, ErrInvalidID)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("hold %s: %w", id, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !expires.After(now) {
		return nil, fmt.Errorf("hold %s: %w: %v is not in the future", id, ErrBadExpiry, expires)
	}
	if expires.Sub(now) > l.maxHold {
		return nil, fmt.Errorf("hold %s: %w: %v from now is longer than the %v a hold may last", id, ErrBadExpiry, expires.Sub(now).Round(time.Second), l.maxHold)
	}
	l.expireLocked()
	if _, ok := l.holds[id]; ok {
		return nil, fmt.Errorf("hold %s: %w", id, ErrDuplicateID)
	}
	resolved, err := resolve(c, l.availableLocked())
	var dropped []Hold
	for _, pid := range displaceable {
		if err == nil {
			break
		}
		h, ok := l.holds[pid]
		if !ok || h.Pinned {
			continue
		}
		delete(l.holds, pid)
		dropped = append(dropped, h)
		resolved, err = resolve(c, l.availableLocked())
	}
	if err != nil {
		for _, h := range dropped {
			l.holds[h.ID] = h
		}
		return nil, fmt.Errorf("hold %s: %w", id, err)
	}
	for _, h := range dropped {
		displaced = append(displaced, h.ID)
		l.log.Debug("hold displaced", "hold", h.ID, "by", id)
	}
	l.holds[id] = Hold{ID: id, Capability: resolved, Since: now, Expires: expires}
	return displaced, nil
}

// Pin marks an unexpired, unpinned hold as handed to its invoker: it can
// then not be pinned again (ErrUnknownHold), nor displaced, only promoted
// or released.
func (l *Ledger) Pin(id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	h, ok := l.holds[id]
	if !ok || h.Pinned {
		return fmt.Errorf("pin hold %s: %w", id, ErrUnknownHold)
	}
	h.Pinned = true
	l.holds[id] = h
	return nil
}

// HasHold reports whether an unexpired hold of that ID exists.
func (l *Ledger) HasHold(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	_, ok := l.holds[id]
	return ok
}

// Release drops a hold; it reports whether there was one.
func (l *Ledger) Release(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	_, ok := l.holds[id]
	delete(l.holds, id)
	return ok
}

// Promote turns hold holdID into a firm lock for allocation allocID, writing
// the lock and the allocation record meta in one batch.
func (l *Ledger) Promote(holdID, allocID string, meta []byte) error {
	if err := checkLockArgs(allocID, meta); err != nil {
		return fmt.Errorf("promote %s: %w", holdID, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	h, ok := l.holds[holdID]
	if !ok {
		return fmt.Errorf("promote %s: %w", holdID, ErrUnknownHold)
	}
	if _, ok := l.locks[allocID]; ok {
		return fmt.Errorf("promote %s to %s: %w", holdID, allocID, ErrDuplicateID)
	}
	lk := Lock{ID: allocID, Capability: h.Capability, Meta: slices.Clone(meta), Since: l.now()}
	if err := l.writeLock(lk); err != nil {
		return fmt.Errorf("promote %s to %s: %w", holdID, allocID, err)
	}
	delete(l.holds, holdID)
	l.locks[allocID] = lk
	return nil
}

// Lock places a firm lock for allocation allocID directly, without a hold,
// written in one batch with the allocation record meta. It is refused,
// wrapping capability.ErrInsufficient, when c does not fit.
func (l *Ledger) Lock(allocID string, c capability.Capability, meta []byte) error {
	if err := checkLockArgs(allocID, meta); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("lock %s: %w", allocID, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	if _, ok := l.locks[allocID]; ok {
		return fmt.Errorf("lock %s: %w", allocID, ErrDuplicateID)
	}
	resolved, err := resolve(c, l.availableLocked())
	if err != nil {
		return fmt.Errorf("lock %s: %w", allocID, err)
	}
	lk := Lock{ID: allocID, Capability: resolved, Meta: slices.Clone(meta), Since: l.now()}
	if err := l.writeLock(lk); err != nil {
		return fmt.Errorf("lock %s: %w", allocID, err)
	}
	l.locks[allocID] = lk
	return nil
}

// Unlock removes an allocation's lock and its allocation record in one batch.
func (l *Ledger) Unlock(allocID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	if _, ok := l.locks[allocID]; !ok {
		return fmt.Errorf("unlock %s: %w", allocID, ErrUnknownLock)
	}
	if err := l.deleteLocks([]string{allocID}, false); err != nil {
		return fmt.Errorf("unlock %s: %w", allocID, err)
	}
	delete(l.locks, allocID)
	return nil
}

// Deregister withdraws the registered capability and drops every hold. While
// allocations hold locks it is refused with ErrLocked (listing them) unless
// force is set; forced, it also removes those locks and their allocation
// records, in one batch, and returns them so the caller can stop them.
func (l *Ledger) Deregister(force bool) ([]Lock, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	affected := l.sortedLocks()
	if len(affected) > 0 && !force {
		ids := make([]string, len(affected))
		for i, lk := range affected {
			ids[i] = lk.ID
		}
		return affected, fmt.Errorf("deregister: %w: %v", ErrLocked, ids)
	}
	ids := make([]string, 0, len(affected))
	for _, lk := range affected {
		ids = append(ids, lk.ID)
	}
	if err := l.deleteLocks(ids, true); err != nil {
		return nil, fmt.Errorf("deregister: %w", err)
	}
	l.registered = capability.Capability{}
	l.locks = map[string]Lock{}
	l.holds = map[string]Hold{}
	return affected, nil
}

// Locks returns the locks, oldest first.
func (l *Ledger) Locks() []Lock {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sortedLocks()
}

// Holds returns the unexpired holds, oldest first.
func (l *Ledger) Holds() []Hold {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	return l.sortedHolds()
}

// Available returns what can still be held or locked now.
func (l *Ledger) Available() capability.Capability {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	return l.availableLocked()
}

// Locked returns the sum of the locks.
func (l *Ledger) Locked() capability.Capability {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sumLocked()
}

// Snapshot returns all of the ledger at once, consistently.
func (l *Ledger) Snapshot() Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
	s := Snapshot{
		At:         l.now(),
		Registered: cloneCap(l.registered),
		Holds:      l.sortedHolds(),
		Locks:      l.sortedLocks(),
		Held:       l.sumHeld(),
		Locked:     l.sumLocked(),
		Available:  l.availableLocked(),
	}
	if l.ceiling != nil {
		c := cloneCap(*l.ceiling)
		s.Ceiling = &c
	}
	if l.bench != nil {
		b := *l.bench
		s.Benchmark = &b
	}
	return s
}

// SetCeiling caps what is available by what the machine can give the node
// now (CPU, memory and disk; see Ceiling). The monitor calls it on every
// sample. Existing holds and locks are kept even if the ceiling drops below
// them; only new ones are refused.
func (l *Ledger) SetCeiling(c capability.Capability) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c = cloneCap(c)
	l.ceiling = &c
}

// ClearCeiling removes the cap set by SetCeiling.
func (l *Ledger) ClearCeiling() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ceiling = nil
}

// expireLocked drops the holds whose expiry has passed. Every entry point
// calls it, so expiry needs no goroutine and follows the injected clock.
func (l *Ledger) expireLocked() {
	now := l.now()
	for id, h := range l.holds {
		if !h.Expires.After(now) {
			delete(l.holds, id)
			l.log.Debug("hold expired", "hold", id)
		}
	}
}

// availableLocked computes min(registered, ceiling) − holds − locks.
func (l *Ledger) availableLocked() capability.Capability {
	used, err := l.sumHeld().Add(l.sumLocked())
	if err != nil {
		return zeroLike(l.registered)
	}
	avail, err := l.registered.Subtract(used)
	if err != nil {
		// Only a datastore edited by hand gets here: offer nothing.
		return zeroLike(l.registered)
	}
	if c := l.ceiling; c != nil {
		room := func(ceil, used uint64) uint64 {
			if used >= ceil {
				return 0
			}
			return ceil - used
		}
		avail.CPU.MilliCores = min(avail.CPU.MilliCores, room(c.CPU.MilliCores, used.CPU.MilliCores))
		avail.Memory = min(avail.Memory, room(c.Memory, used.Memory))
		avail.Disk = min(avail.Disk, room(c.Disk, used.Disk))
	}
	return avail
}

// dropHoldsThatDoNotFit keeps the invariant after the registered capability
// shrinks: holds are released, newest first, until the rest fit.
func (l *Ledger) dropHoldsThatDoNotFit() {
	holds := l.sortedHolds()
	for i := len(holds) - 1; i >= 0; i-- {
		used, err := l.sumHeld().Add(l.sumLocked())
		if err == nil && used.Fits(l.registered) {
			return
		}
		delete(l.holds, holds[i].ID)
		l.log.Info("hold released: no longer fits the registered capability", "hold", holds[i].ID)
	}
}

func (l *Ledger) sumHeld() capability.Capability {
	var s capability.Capability
	for _, h := range l.sortedHolds() {
		s, _ = s.Add(h.Capability) // cannot overflow: each fit in registered
	}
	return s
}

func (l *Ledger) sumLocked() capability.Capability {
	var s capability.Capability
	for _, lk := range l.sortedLocks() {
		s, _ = s.Add(lk.Capability)
	}
	return s
}

func (l *Ledger) sortedHolds() []Hold {
	out := make([]Hold, 0, len(l.holds))
	for _, h := range l.holds {
		h.Capability = cloneCap(h.Capability)
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Hold) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

func (l *Ledger) sortedLocks() []Lock {
	out := make([]Lock, 0, len(l.locks))
	for _, lk := range l.locks {
		lk.Capability = cloneCap(lk.Capability)
		lk.Meta = slices.Clone(lk.Meta)
		out = append(out, lk)
	}
	slices.SortFunc(out, func(a, b Lock) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// resolve checks that want fits in avail and replaces each GPU requirement
// by the concrete GPU it takes (the first free one that satisfies it, as
// capability.Subtract does), so that holds and locks name real devices.
func resolve(want, avail capability.Capability) (capability.Capability, error) {
	if _, err := avail.Subtract(want); err != nil {
		return capability.Capability{}, err
	}
	out := cloneCap(want)
	if len(want.GPUs) == 0 {
		return out, nil
	}
	left := slices.Clone(avail.GPUs)
	out.GPUs = out.GPUs[:0]
	for _, req := range want.GPUs {
		for i, g := range left {
			if g.Satisfies(req) {
				out.GPUs = append(out.GPUs, g)
				left = slices.Delete(left, i, i+1)
				break
			}
		}
	}
	return out, nil
}

func checkLockArgs(allocID string, meta []byte) error {
	if !validID(allocID) {
		return fmt.Errorf("allocation %q: %w: want 1-200 letters, digits, '.', '_', ':' or '-'", allocID, ErrInvalidID)
	}
	if len(meta) > MaxMetaSize {
		return fmt.Errorf("allocation %s: %w: %d bytes, at most %d", allocID, ErrMetaTooBig, len(meta), MaxMetaSize)
	}
	return nil
}

func cloneCap(c capability.Capability) capability.Capability {
	c.GPUs = slices.Clone(c.GPUs)
	c.Connectivity.ListenAddrs = slices.Clone(c.Connectivity.ListenAddrs)
	return c
}

// zeroLike keeps c's descriptive fields (model, price) with no resources.
func zeroLike(c capability.Capability) capability.Capability {
	c = cloneCap(c)
	c.CPU.MilliCores, c.Memory, c.Disk, c.GPUs = 0, 0, 0, nil
	return c
}
