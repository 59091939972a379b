//go:build unix && !linux

package executor

import (
	"errors"
	"log/slog"
	"os"
	"syscall"
)

// canWaitNoReap: only Linux waits without reaping here; elsewhere leftover
// children of a finished job are not killed (a timeout still kills the
// whole group).
const canWaitNoReap = false

func waitNoReap(int) error { return errors.ErrUnsupported }

// maxRSS is the job's peak resident memory (BSDs and macOS report bytes).
func maxRSS(ps *os.ProcessState) uint64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > 0 {
		return uint64(ru.Maxrss)
	}
	return 0
}

// newMemLimiter: no cgroups and no prlimit here, so memory is not capped.
func newMemLimiter(_ string, log *slog.Logger) memLimiter {
	log.Warn("native jobs run without a memory cap on this platform")
	return noLimiter{}
}

type noLimiter struct{}

func (noLimiter) mode() string                     { return "none" }
func (noLimiter) prepare(uint64) (jobLimit, error) { return noLimit{}, nil }

type noLimit struct{}

func (noLimit) apply(*syscall.SysProcAttr) {}
func (noLimit) started(int)                {}
func (noLimit) oomKilled() bool            { return false }
func (noLimit) peak() uint64               { return 0 }
func (noLimit) killAll()                   {}
func (noLimit) close()                     {}
