//go:build linux

// Package procmem trims what a long-running process keeps resident of its
// own executable. A Go binary is tens of MiB of code and read-only data;
// the kernel maps pages around each one touched at start-up (fault-around,
// from a page cache that often holds the whole file), so an idle node would
// show most of its binary as resident though it runs a small part of it.
package procmem

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ReleaseExecutable asks the kernel to drop the resident pages of this
// process's executable mappings (code and read-only data, never writable
// data). They are clean file pages: what the process still uses faults back
// in, from the page cache. It returns how many bytes it advised, and does
// nothing where the kernel lacks MADV_PAGEOUT (before Linux 5.4).
func ReleaseExecutable() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if err := madvise(uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT); err != nil {
			return total, err
		}
		total += int64(end - start)
	}
	return total, sc.Err()
}

func madvise(addr, length uintptr, advice int) error {
	_, _, e := unix.Syscall(unix.SYS_MADVISE, addr, length, uintptr(advice))
	if e != 0 {
		return e
	}
	return nil
}
