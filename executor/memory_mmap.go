//go:build linux || darwin

package executor

import (
	"log/slog"
	"math"

	"golang.org/x/sys/unix"
)

// reserveMemory maps limit bytes of address space for a linear memory
// without committing it: the kernel provides zeroed pages as they are first
// touched.
func reserveMemory(limit uint64) ([]byte, bool) {
	if limit == 0 || limit > math.MaxInt {
		return nil, false
	}
	b, err := unix.Mmap(-1, 0, int(limit), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		slog.Default().Debug("reserve wasm memory; growing a slice instead", "bytes", limit, "err", err)
		return nil, false
	}
	return b, true
}

func releaseMemory(b []byte) {
	if err := unix.Munmap(b); err != nil {
		slog.Default().Warn("release wasm memory", "err", err)
	}
}
