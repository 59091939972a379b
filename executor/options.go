package executor

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// Option configures an executor. Options are applied over the defaults and
// the result is validated once, before anything is started.
type Option func(*config) error

type config struct {
	logger *slog.Logger

	// wasm
	cacheEntries int
	cacheBytes   int64
	cacheAge     time.Duration
	cacheDir     string
	mountRoots   []string

	// native
	cgroupParent string

	// docker
	dockerBin string
}

func defaultConfig() config {
	return config{
		logger:       slog.Default().With("subsystem", "executor"),
		cacheEntries: 8,
		cacheBytes:   32 << 20,
		cacheAge:     2 * time.Minute,
		cgroupParent: cgroupAuto,
		dockerBin:    "docker",
	}
}

func newConfig(opts []Option) (config, error) {
	c := defaultConfig()
	for _, o := range opts {
		if err := o(&c); err != nil {
			return c, err
		}
	}
	return c, c.validate()
}

func (c *config) validate() error {
	if c.logger == nil {
		return errors.New("executor option: logger is nil")
	}
	if c.cacheEntries < 1 {
		return fmt.Errorf("executor option: module cache entries must be >= 1, got %d", c.cacheEntries)
	}
	if c.cacheBytes < 1 {
		return fmt.Errorf("executor option: module cache bytes must be >= 1, got %d", c.cacheBytes)
	}
	return nil
}

// WithLogger sets the logger; the default is slog.Default() tagged
// subsystem=executor.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("executor option WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithModuleCache bounds the wasm compiled-module cache by entry count and by
// the total size of the cached modules' wasm bytes (compiled code is several
// times larger). Defaults: 8 entries, 32 MiB. Wasm only.
func WithModuleCache(entries int, bytes int64) Option {
	return func(c *config) error {
		c.cacheEntries, c.cacheBytes = entries, bytes
		return nil
	}
}

// WithCompilationCacheDir keeps compiled wasm code in dir too, so a restarted
// node does not compile a known module again. The directory must be private
// to the node (wazero trusts its contents). Wasm only.
func WithCompilationCacheDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("executor option WithCompilationCacheDir: empty directory")
		}
		c.cacheDir = dir
		return nil
	}
}

// WithMountRoots lets wasm jobs mount directories (read-only) that lie under
// one of roots. Without it a Spec with Mounts is refused with ErrNotAllowed:
// a requester must never name an arbitrary host path.
func WithMountRoots(roots ...string) Option {
	return func(c *config) error {
		for _, r := range roots {
			if !filepath.IsAbs(r) {
				return fmt.Errorf("executor option WithMountRoots: %q is not an absolute path", r)
			}
			c.mountRoots = append(c.mountRoots, filepath.Clean(r))
		}
		return nil
	}
}

// cgroupAuto makes the native executor look for a usable cgroup v2 group on
// its own: its own group under /sys/fs/cgroup.
const cgroupAuto = "auto"

// WithCgroupParent names the cgroup v2 directory under which the native
// executor creates one child group per job (with memory.max). It must have
// the memory controller in cgroup.subtree_control and be writable, e.g. an
// empty child of a group systemd delegated to dms (Delegate=yes). "" turns
// cgroups off. Without a usable group, memory is capped with RLIMIT_AS.
// Native only.
func WithCgroupParent(dir string) Option {
	return func(c *config) error {
		if dir != "" && !filepath.IsAbs(dir) {
			return fmt.Errorf("executor option WithCgroupParent: %q is not an absolute path", dir)
		}
		c.cgroupParent = dir
		return nil
	}
}

// WithDockerBinary names the docker command line the Docker executor runs
// (default "docker", found in PATH).
func WithDockerBinary(path string) Option {
	return func(c *config) error {
		if path == "" {
			return errors.New("executor option WithDockerBinary: empty path")
		}
		c.dockerBin = path
		return nil
	}
}

// WithModuleCacheAge evicts a compiled module nobody ran for d (default 2
// minutes; 0 keeps modules until the count or size bounds push them out).
// With WithCompilationCacheDir a module evicted from memory compiles again
// from the disk cache in milliseconds. Wasm only.
func WithModuleCacheAge(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("executor option WithModuleCacheAge: %v is negative", d)
		}
		c.cacheAge = d
		return nil
	}
}
