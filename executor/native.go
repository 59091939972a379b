package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Native runs a job as a host process. It is not a sandbox: the process sees
// the provider's filesystem and network as the dms user does. It exists for
// providers that allow it explicitly; otherwise every Run is refused.
//
// What it does bound: run time (the whole process group is killed at the
// timeout), output, environment (only what the Spec gives, plus PATH), the
// working directory (a fresh temporary one), and memory: a cgroup v2 group
// per job with memory.max where one can be created, else RLIMIT_AS.
type Native struct {
	log     *slog.Logger
	allowed bool
	limits  memLimiter

	lifecycle
}

var _ Executor = (*Native)(nil)

// killGrace bounds how long output pipes are drained after the job's process
// group is gone, in case a descendant escaped the group and holds them.
const killGrace = 2 * time.Second

// NewNative returns the native executor. Unless allowed, it refuses every
// job with ErrNotAllowed, so a node can always construct one and let the
// provider's setting decide.
func NewNative(allowed bool, opts ...Option) (*Native, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("new native executor: %w", err)
	}
	n := &Native{log: cfg.logger.With("executor", KindNative), allowed: allowed}
	if allowed {
		n.limits = newMemLimiter(cfg.cgroupParent, n.log)
		n.log.Info("native jobs allowed", "memory_limit", n.limits.mode())
	}
	n.lifecycle = newLifecycle()
	return n, nil
}

// Kind implements Executor.
func (n *Native) Kind() Kind { return KindNative }

// Allowed reports whether the provider allows native jobs.
func (n *Native) Allowed() bool { return n.allowed }

// MemoryLimitMode says how memory caps are enforced: "cgroup2 <dir>",
// "rlimit-as" (virtual address space, best effort) or "none".
func (n *Native) MemoryLimitMode() string {
	if n.limits == nil {
		return "none"
	}
	return n.limits.mode()
}

// Close stops running jobs (killing their process groups) and waits for them.
func (n *Native) Close(ctx context.Context) error {
	if _, err := n.close(ctx); err != nil {
		return fmt.Errorf("close native executor: %w", err)
	}
	return nil
}

// Run implements Executor.
func (n *Native) Run(ctx context.Context, spec Spec, out Output) (Result, error) {
	res := Result{ExitCode: -1}
	if !n.allowed {
		return res, fmt.Errorf("run native job: %w: this provider does not run native processes", ErrNotAllowed)
	}
	if err := checkKind(&spec, KindNative); err != nil {
		return res, fmt.Errorf("run native job: %w", err)
	}
	if err := n.enter(); err != nil {
		return res, fmt.Errorf("run native job: %w", err)
	}
	defer n.leave()

	res, err := n.run(ctx, &spec, out)
	if err != nil {
		return res, fmt.Errorf("run native job: %w", err)
	}
	return res, nil
}

// nativeEnv is the job's whole environment: the Spec's variables, plus the
// provider's PATH unless the Spec sets one.
func nativeEnv(env map[string]string) []string {
	out := make([]string, 0, len(env)+1)
	for _, k := range sortedKeys(env) {
		out = append(out, k+"="+env[k])
	}
	if _, ok := env["PATH"]; !ok {
		out = append(out, "PATH="+os.Getenv("PATH"))
	}
	return out
}

// lookPath resolves argv[0] against the job's PATH (not necessarily ours).
func lookPath(name, path string) (string, error) {
	if strings.ContainsRune(name, filepath.Separator) {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // relative PATH entries would resolve in the job's temp dir
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: Command: %q not found in PATH", ErrInvalidSpec, name)
}

// memLimiter enforces Spec.MemoryBytes on native jobs; one per platform.
type memLimiter interface {
	mode() string
	// prepare is called before each start and returns the job's handle.
	prepare(limit uint64) (jobLimit, error)
}

// errNativeUnsupported explains a refusal on platforms without process groups.
var errNativeUnsupported = errors.New("native jobs need a unix host")
