package resources

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ipfs/go-datastore"
	pebbleds "github.com/ipfs/go-ds-pebble"
)

// ErrHomeInUse means another process (or this one) already has the datastore
// open: a node is running on this home. Pebble locks its directory, so two
// writers can never interleave.
var ErrHomeInUse = errors.New("home in use")

// HomeInUseError says who holds the datastore, where that can be told.
type HomeInUseError struct {
	Dir string
	PID int // 0 when unknown
}

func (e *HomeInUseError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("a dms node is already running on %s (pid %d)", e.Dir, e.PID)
	}
	return fmt.Sprintf("a dms node is already running on %s", e.Dir)
}

// Is makes errors.Is(err, ErrHomeInUse) true.
func (e *HomeInUseError) Is(target error) bool { return target == ErrHomeInUse }

// OpenDatastore opens (creating it if needed) the on-disk datastore in dir.
// Every write is synced to disk before it returns: the ledger's promise that a
// lock survives a crash depends on it. homeDir is only used in messages.
func OpenDatastore(dir, homeDir string) (datastore.Batching, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open datastore: %w", err)
	}
	opts := &pebble.Options{Logger: quietPebbleLogger{}, FS: privateFS{vfs.Default}}
	// pebble's default compaction scheduler wakes every 100 ms to look for
	// work, for the life of the process: ten wake-ups a second in a node
	// that is otherwise idle for seconds at a time, and on a machine running
	// a test network of hundreds of nodes, thousands. This one grants a
	// waiting compaction when a running one finishes instead, which for a
	// datastore of a few thousand small records is all the concurrency it
	// needs (the name says "ForTest" because pebble's tests use it to make
	// scheduling deterministic).
	opts.Experimental.CompactionScheduler = pebble.NewConcurrencyLimitSchedulerWithNoPeriodicGrantingForTest()
	d, err := pebbleds.NewDatastore(dir,
		pebbleds.WithPebbleWriteOptions(pebble.Sync),
		pebbleds.WithPebbleOpts(opts),
	)
	if err != nil {
		if inUse(err) {
			return nil, &HomeInUseError{Dir: homeDir, PID: lockHolder(dir, err)}
		}
		return nil, fmt.Errorf("open datastore %s: %w", dir, err)
	}
	return d, nil
}

// inUse recognises pebble's directory lock failing: EAGAIN or EACCES from
// fcntl for another process, a plain message for this one.
func inUse(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process")
}

// lockHolder returns the pid holding pebble's LOCK file, or 0. It must not
// open the file when this process holds the lock: closing any descriptor of a
// file drops the process's POSIX locks on it.
func lockHolder(dir string, err error) int {
	if strings.Contains(err.Error(), "lock held by current process") {
		return os.Getpid()
	}
	return lockOwnerPID(filepath.Join(dir, "LOCK"))
}

// quietPebbleLogger sends pebble's informational chatter to debug level, so
// it stays off the terminal of a CLI command, and its errors to warn.
type quietPebbleLogger struct{}

func (quietPebbleLogger) Infof(format string, args ...interface{}) {
	slog.Default().Debug(fmt.Sprintf(format, args...), "subsystem", "pebble")
}
func (quietPebbleLogger) Errorf(format string, args ...interface{}) {
	slog.Default().Warn(fmt.Sprintf(format, args...), "subsystem", "pebble")
}
func (quietPebbleLogger) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// LockHolder is the process holding the lock of the datastore in dir, 0
// when none does or the system cannot tell. Only a process that does not
// have that datastore open may ask: the question opens the lock file, and
// closing any descriptor of a file drops the POSIX locks its process holds
// on it.
func LockHolder(dir string) int { return lockOwnerPID(filepath.Join(dir, "LOCK")) }
