package executor

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// canWaitNoReap: Linux has waitid(WNOWAIT), so stragglers of a job's group
// can be killed while the leader's pid is still reserved.
const canWaitNoReap = true

func waitNoReap(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// maxRSS is the job's peak resident memory as the kernel counted it
// (Linux reports kilobytes).
func maxRSS(ps *os.ProcessState) uint64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > 0 {
		return uint64(ru.Maxrss) * 1024
	}
	return 0
}

// newMemLimiter picks cgroup v2 when a usable parent group exists and falls
// back to RLIMIT_AS, saying why.
func newMemLimiter(parent string, log *slog.Logger) memLimiter {
	if parent == "" {
		log.Info("cgroups disabled; native memory cap uses RLIMIT_AS")
		return rlimitLimiter{}
	}
	dir, err := cgroupParent(parent)
	if err != nil {
		log.Info("no usable cgroup v2 group; native memory cap uses RLIMIT_AS (virtual memory, best effort)",
			"reason", err)
		return rlimitLimiter{}
	}
	return &cgroupLimiter{parent: dir, log: log}
}

// cgroupParent finds and checks the group under which job groups go.
func cgroupParent(parent string) (string, error) {
	if parent == cgroupAuto {
		const mount = "/sys/fs/cgroup"
		self, err := selfCgroup()
		if err != nil {
			return "", err
		}
		parent = filepath.Join(mount, self)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(parent, &st); err != nil {
		return "", fmt.Errorf("statfs %s: %w", parent, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return "", fmt.Errorf("%s is not a cgroup v2 hierarchy", parent)
	}
	ctl, err := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
	if err != nil {
		return "", fmt.Errorf("read subtree_control: %w", err)
	}
	if !hasWord(string(ctl), "memory") {
		// Only possible in a group with no processes of its own (a
		// delegated, empty parent), so this usually fails for our own group.
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			return "", fmt.Errorf("enable memory controller in %s: %w", parent, err)
		}
	}
	probe := filepath.Join(parent, "dms-probe-"+randomID())
	if err := os.Mkdir(probe, 0o755); err != nil {
		return "", fmt.Errorf("create a child group in %s: %w", parent, err)
	}
	_, statErr := os.Stat(filepath.Join(probe, "memory.max"))
	if err := os.Remove(probe); err != nil {
		return "", fmt.Errorf("remove probe group: %w", err)
	}
	if statErr != nil {
		return "", fmt.Errorf("child groups of %s get no memory.max: %w", parent, statErr)
	}
	return parent, nil
}

// selfCgroup reads this process's cgroup v2 path ("0::/path").
func selfCgroup() (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cgroupLimiter puts each job in its own child group with memory.max: the
// kernel caps the whole job (children included) and reports OOM kills.
type cgroupLimiter struct {
	parent string
	log    *slog.Logger
}

func (c *cgroupLimiter) mode() string { return "cgroup2 " + c.parent }

func (c *cgroupLimiter) prepare(limit uint64) (jobLimit, error) {
	dir := filepath.Join(c.parent, "dms-job-"+randomID())
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	j := &cgroupJob{dir: dir, log: c.log}
	write := func(file, val string) error {
		return os.WriteFile(filepath.Join(dir, file), []byte(val), 0)
	}
	if err := write("memory.max", strconv.FormatUint(limit, 10)); err != nil {
		j.close()
		return nil, fmt.Errorf("set memory.max: %w", err)
	}
	_ = write("memory.swap.max", "0") // absent without swap accounting
	_ = write("memory.oom.group", "1")
	fd, err := os.Open(dir)
	if err != nil {
		j.close()
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	j.fd = fd
	return j, nil
}

type cgroupJob struct {
	dir string
	fd  *os.File
	log *slog.Logger
}

// apply starts the process inside the group (clone3 CLONE_INTO_CGROUP), so
// not one allocation happens outside the cap.
func (j *cgroupJob) apply(attr *syscall.SysProcAttr) {
	attr.UseCgroupFD = true
	attr.CgroupFD = int(j.fd.Fd())
}

func (j *cgroupJob) started(int) {}

func (j *cgroupJob) oomKilled() bool {
	b, err := os.ReadFile(filepath.Join(j.dir, "memory.events"))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && (f[0] == "oom_kill" || f[0] == "oom_group_kill") && f[1] != "0" {
			return true
		}
	}
	return false
}

func (j *cgroupJob) peak() uint64 {
	b, err := os.ReadFile(filepath.Join(j.dir, "memory.peak")) // Linux 5.19+
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

func (j *cgroupJob) killAll() {
	// cgroup.kill (Linux 5.14+) reaches processes that left the group.
	if err := os.WriteFile(filepath.Join(j.dir, "cgroup.kill"), []byte("1"), 0); err == nil {
		return
	}
	b, err := os.ReadFile(filepath.Join(j.dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (j *cgroupJob) close() {
	if j.fd != nil {
		_ = j.fd.Close()
	}
	// The group can only go once the kernel has finished with its last
	// process, which may lag the kill a little.
	for i := 0; ; i++ {
		err := os.Remove(j.dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if i == 50 {
			j.log.Warn("remove job cgroup", "dir", j.dir, "err", err)
			return
		}
		j.killAll()
		time.Sleep(10 * time.Millisecond)
	}
}

// rlimitLimiter caps the job's virtual address space with prlimit right
// after start. Best effort: it counts reservations, not use (a Go or JVM
// program may need far more address space than memory), a child forked
// before the call escapes it, and a job that hits it just sees allocations
// fail, so it is not reported as ErrMemoryLimit.
type rlimitLimiter struct{}

func (rlimitLimiter) mode() string { return "rlimit-as" }

func (rlimitLimiter) prepare(limit uint64) (jobLimit, error) {
	return &rlimitJob{limit: limit}, nil
}

type rlimitJob struct{ limit uint64 }

func (*rlimitJob) apply(*syscall.SysProcAttr) {}

func (j *rlimitJob) started(pid int) {
	lim := unix.Rlimit{Cur: j.limit, Max: j.limit}
	if err := unix.Prlimit(pid, unix.RLIMIT_AS, &lim, nil); err != nil {
		slog.Default().Warn("prlimit RLIMIT_AS on native job", "pid", pid, "err", err)
	}
}

func (*rlimitJob) oomKilled() bool { return false }
func (*rlimitJob) peak() uint64    { return 0 }
func (*rlimitJob) killAll()        {}
func (*rlimitJob) close()          {}
