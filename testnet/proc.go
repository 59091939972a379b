package testnet

// The one reader of /proc in dms: whether a node process lives, and what
// it uses (the bench's process mode samples it).

import (
	"github.com/dms-project/dms/home"

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
	if len(b) == 0 {
		// A process that is exiting has let go of its memory, and with it
		// its command line, before it is a zombie: it is still ours, and
		// `down` must wait for it rather than report it stopped.
		return true
	}
	return slices.Contains(strings.Split(string(b), "\x00"), home)
}

// Locate is the pid of the process running the node of n's home now, 0 when
// none does. The pid the test network started is asked first; a node
// restarted outside it (dms --home DIR run) is found by the lock on its
// home's datastore, which only the process running a node holds. A node
// of a container network is only ever its container's.
func Locate(n Process) int {
	if nodeAlive(n.PID, n.Home) {
		return n.PID
	}
	if n.Container != "" {
		return 0
	}
	if pid := (home.Home{Dir: n.Home}).LockHolder(); pid > 0 && ProcessAlive(pid) {
		return pid
	}
	return 0
}

// Running returns the nodes that run, each with the pid that runs it now.
func Running(nodes []Process) []Process {
	var out []Process
	for _, n := range nodes {
		if pid := Locate(n); pid > 0 {
			n.PID = pid
			out = append(out, n)
		}
	}
	return out
}

// stillRunning reports whether n's process (n.PID as Locate found it)
// still runs the node, or a process still holds its home.
func stillRunning(n Process) bool {
	if nodeAlive(n.PID, n.Home) {
		return true
	}
	if n.Container != "" {
		return false
	}
	pid := (home.Home{Dir: n.Home}).LockHolder()
	return pid > 0 && ProcessAlive(pid)
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

// Memory is a process's resident memory, split: RSS counts every page it
// maps, Anon its own (heap, stacks), PSS shares each page mapped by several
// processes among them (N processes of one binary each count 1/N of its
// pages).
type Memory struct {
	RSS, Anon, PSS uint64 // bytes
}

// MemoryOf reads a process's memory from /proc/PID/smaps_rollup.
func MemoryOf(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			m.RSS = kb << 10
		case "Anonymous:":
			m.Anon = kb << 10
		case "Pss:":
			m.PSS = kb << 10
		}
	}
	if m.RSS == 0 {
		return m, fmt.Errorf("memory of pid %d: no Rss in smaps_rollup", pid)
	}
	return m, nil
}
