package testnet

// The one reader of /proc in dms: whether a node process lives, and what
// it uses (the bench's process mode samples it).

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// ClockTicks is USER_HZ, which /proc reports CPU times in; 100 on every
// Linux this runs on.
const ClockTicks = 100

// procStat returns the fields of /proc/PID/stat after the command name
// (which may hold spaces): [0] is the state, [11] utime, [12] stime.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f, nil
}

// ProcessAlive reports whether pid is a running process. A zombie counts as
// gone: a node that `up` started outlives `up` and is reparented to init,
// and in some containers init never reaps, so a stopped node would answer
// kill(pid, 0) forever.
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false // ESRCH: gone; EPERM: another user's, so not a node of ours
	}
	f, err := procStat(pid)
	if err != nil {
		return true // no /proc here: trust kill
	}
	switch f[0] {
	case "Z", "X":
		return false
	}
	return true
}

// nodeAlive reports whether pid is still the node of home: where /proc
// tells, a pid that was reused by another program since is not, so that
// `down` never signals a stranger.
func nodeAlive(pid int, home string) bool {
	if !ProcessAlive(pid) {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist) || !dirExists("/proc/self")
	}
	return slices.Contains(strings.Split(string(b), "\x00"), home)
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// CPUTicks is a process's user plus system time, in ClockTicks.
func CPUTicks(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu time of pid %d: unexpected /proc format", pid)
	}
	return u + s, nil
}

// RSS is a process's resident set size in bytes.
func RSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("memory of pid %d: no VmRSS in /proc", pid)
}
