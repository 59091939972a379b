//go:build linux

package resources

import (
	"io"
	"os"
	"syscall"
)

// lockOwnerPID asks the kernel which process holds a POSIX write lock on path
// (pebble's LOCK file), or 0 if none or unknown.
func lockOwnerPID(path string) int {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil || lk.Type == syscall.F_UNLCK {
		return 0
	}
	return int(lk.Pid)
}
