package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dms-project/dms/internal/randid"
)

// Docker runs container images on the local Docker engine, through the
// docker command line: it is the engine's documented interface, and it
// keeps the node free of a client library that would double its size.
//
// Every container runs without network, with a read-only root, no
// capabilities, no new privileges, not as root (see containerUser), under the
// engine's cgroup limits for memory (no swap on top), CPU and process
// count; the job's inputs are read-only bind mounts and /outputs the only
// writable place besides a small /tmp. The container is removed when the
// job ends, however it ends.
type Docker struct {
	lifecycle
	log *slog.Logger
	bin string

	mu     sync.Mutex
	images map[string]imageCheck
	engine *engineCheck
}

var _ Executor = (*Docker)(nil)

// ErrNoImage: the image is not on this machine (the engine has no registry
// to pull from, or the provider chose not to).
var ErrNoImage = errors.New("image not present")

// ErrNoEngine: no Docker engine answers.
var ErrNoEngine = errors.New("no docker engine")

// imageCheckTTL is how long an image lookup is trusted: a provider hears
// many bid requests for one image, and `docker image inspect` costs tens of
// milliseconds.
const imageCheckTTL = 5 * time.Second

// containerUser is who a container runs as, whatever the image says: the
// node's own user, so that the node can read and remove what the job
// writes, or nobody (65534) when the node runs as root.
func containerUser() string {
	if uid := os.Getuid(); uid != 0 {
		return strconv.Itoa(uid) + ":" + strconv.Itoa(os.Getgid())
	}
	return "65534:65534"
}

type imageCheck struct {
	err error
	at  time.Time
}

type engineCheck struct {
	info DockerInfo
	err  error
	at   time.Time
}

// DockerInfo is what the engine says of itself.
type DockerInfo struct {
	Version string
	// GPU reports an NVIDIA runtime, so containers can be given GPUs.
	GPU bool
}

// NewDocker returns the Docker executor. It does not need an engine to be
// running: Engine says whether one answers, and Run fails without one.
func NewDocker(opts ...Option) (*Docker, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("new docker executor: %w", err)
	}
	return &Docker{lifecycle: newLifecycle(), log: cfg.logger.With("executor", KindDocker), bin: cfg.dockerBin, images: map[string]imageCheck{}}, nil
}

// Kind implements Executor.
func (d *Docker) Kind() Kind { return KindDocker }

// dockerCommandTimeout bounds one docker command that is not a job. A
// loaded machine (or engine) answers `docker version` in seconds, not
// milliseconds: too short a bound reads a busy engine as none.
const dockerCommandTimeout = 2 * time.Minute

// docker runs one docker command and returns its stdout, or an error that
// carries what it said on stderr. When the caller's context ended first,
// the error wraps the context's error, so that callers tell a cancelled
// probe from an engine that does not answer.
func (d *Docker) docker(ctx context.Context, args ...string) (string, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, dockerCommandTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if perr := parent.Err(); perr != nil {
			return out.String(), fmt.Errorf("docker %s: %w", args[0], perr)
		}
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return out.String(), fmt.Errorf("docker %s: %s", args[0], firstLine(msg))
	}
	return strings.TrimSpace(out.String()), nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Engine says whether an engine answers, and what it offers. The answer is
// kept for a while.
func (d *Docker) Engine(ctx context.Context) (DockerInfo, error) {
	d.mu.Lock()
	if e := d.engine; e != nil && time.Since(e.at) < imageCheckTTL {
		d.mu.Unlock()
		return e.info, e.err
	}
	d.mu.Unlock()
	var info DockerInfo
	v, err := d.docker(ctx, "version", "--format", "{{.Server.Version}}")
	if err != nil && ctx.Err() != nil {
		// The caller gave up: that says nothing of the engine, and is not
		// remembered.
		return info, err
	}
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrNoEngine, err)
	} else {
		info.Version = v
		if rt, rerr := d.docker(ctx, "info", "--format", "{{json .Runtimes}}"); rerr == nil {
			info.GPU = strings.Contains(rt, `"nvidia"`)
		}
	}
	d.mu.Lock()
	d.engine = &engineCheck{info: info, err: err, at: time.Now()}
	d.mu.Unlock()
	return info, err
}

// HasImage says whether the image is on this machine (nil) or why it
// cannot be used (ErrNoImage, ErrNoEngine).
func (d *Docker) HasImage(ctx context.Context, ref string) error {
	d.mu.Lock()
	if c, ok := d.images[ref]; ok && time.Since(c.at) < imageCheckTTL {
		d.mu.Unlock()
		return c.err
	}
	d.mu.Unlock()
	_, err := d.Engine(ctx)
	if err == nil {
		if _, ierr := d.docker(ctx, "image", "inspect", "--format", "{{.Id}}", ref); ierr != nil {
			err = fmt.Errorf("%w: %s is not on this provider (docker load or docker build it there)", ErrNoImage, ref)
		}
	}
	if ctx.Err() != nil {
		// A lookup the caller gave up on is not remembered (see Engine).
		return fmt.Errorf("look up image %s: %w", ref, ctx.Err())
	}
	d.mu.Lock()
	d.images[ref] = imageCheck{err: err, at: time.Now()}
	d.mu.Unlock()
	return err
}

// args builds the docker run command line of a job.
func (d *Docker) args(name string, spec *Spec) []string {
	a := []string{"run", "--name", name, "-i",
		"--network", "none", "--read-only", "--cap-drop", "ALL",
		"--security-opt", "no-new-privileges", "--user", containerUser(),
		"--pids-limit", "512",
		"--memory", strconv.FormatUint(spec.MemoryBytes, 10), "--memory-swap", strconv.FormatUint(spec.MemoryBytes, 10),
		"--tmpfs", "/tmp:rw,nosuid,nodev,size=64m",
	}
	if spec.CPUMilli > 0 {
		a = append(a, "--cpus", strconv.FormatFloat(float64(spec.CPUMilli)/1000, 'f', 3, 64))
	}
	for _, guest := range sortedKeys(spec.Mounts) {
		a = append(a, "--mount", "type=bind,source="+spec.Mounts[guest]+",target="+guest+",readonly")
	}
	if spec.OutputDir != "" {
		a = append(a, "--mount", "type=bind,source="+spec.OutputDir+",target="+OutputsPath)
	}
	for _, k := range sortedKeys(spec.Env) {
		a = append(a, "--env", k+"="+spec.Env[k])
	}
	if len(spec.GPUs) > 0 {
		// The quotes are the CLI's own syntax for a list of devices.
		a = append(a, "--gpus", `"device=`+strings.Join(spec.GPUs, ",")+`"`)
	}
	if len(spec.Entrypoint) > 0 {
		a = append(a, "--entrypoint", spec.Entrypoint[0])
	}
	a = append(a, "--", spec.Image)
	if len(spec.Entrypoint) > 1 {
		a = append(a, spec.Entrypoint[1:]...)
	}
	return append(a, spec.Args...)
}

// Run implements Executor.
func (d *Docker) Run(ctx context.Context, spec Spec, out Output) (Result, error) {
	res := Result{ExitCode: -1}
	if err := checkKind(&spec, KindDocker); err != nil {
		return res, fmt.Errorf("run docker job: %w", err)
	}
	// A job cancelled before it started is cancelled, whatever the engine
	// would have said (its checks are not made, or their answer is moot).
	cancelled := func() (Result, error) {
		res.Reason = "cancelled"
		return res, fmt.Errorf("run docker job: %w: %w", ErrCancelled, context.Cause(ctx))
	}
	if ctx.Err() != nil {
		return cancelled()
	}
	if len(spec.GPUs) > 0 {
		if info, err := d.Engine(ctx); err == nil && !info.GPU {
			return res, fmt.Errorf("run docker job: %w: the engine has no NVIDIA runtime to give the container GPUs", ErrNotAllowed)
		}
	}
	if err := d.HasImage(ctx, spec.Image); err != nil {
		if ctx.Err() != nil {
			return cancelled()
		}
		return res, fmt.Errorf("run docker job: %w", err)
	}
	if err := d.enter(); err != nil {
		return res, fmt.Errorf("run docker job: %w", err)
	}
	defer d.leave()

	name := "dms-job-" + randid.Hex(6)
	// The container goes, however the job ended: killed, timed out, failed
	// to start. A fresh context: the job's may be over.
	defer func() {
		if _, err := d.docker(context.Background(), "rm", "--force", "--volumes", name); err != nil && !strings.Contains(err.Error(), "No such container") {
			d.log.Warn("remove container", "container", name, "err", err)
		}
	}()
	runCtx, cancel := runContext(ctx, d.closeCtx, spec.Timeout)
	defer cancel()
	stdout, stderr := captures(spec.maxOutput(), out)
	cmd := exec.Command(d.bin, d.args(name, &spec)...)
	cmd.Stdin = bytes.NewReader(spec.Stdin)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("run docker job: %w: %v", ErrNoEngine, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var waitErr error
	stopped := false
	select {
	case waitErr = <-waited:
	case <-runCtx.Done():
		stopped = true
		// Killing the CLI would leave the container running: stop the
		// container, and the CLI follows.
		if _, err := d.docker(context.Background(), "kill", name); err != nil {
			d.log.Debug("kill container", "container", name, "err", err)
		}
		select {
		case waitErr = <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			waitErr = <-waited
		}
	}
	res.Duration = time.Since(start)
	res.Stdout, res.StdoutTruncated = stdout.result()
	res.Stderr, res.StderrTruncated = stderr.result()
	if stopped {
		var err error
		res.Reason, err = stopError(runCtx, spec.Timeout)
		return res, fmt.Errorf("run docker job: %w", err)
	}
	state, err := d.docker(context.Background(), "inspect", "--format", "{{.State.OOMKilled}} {{.State.ExitCode}}", name)
	if err != nil {
		// No container: the engine refused to create or start it, and said
		// why on stderr (which is then the CLI's, not the job's).
		why := firstLine(strings.TrimSpace(string(res.Stderr)))
		if why == "" && waitErr != nil {
			why = waitErr.Error()
		}
		return res, fmt.Errorf("run docker job: %w: the engine did not start the container: %s", ErrInvalidSpec, why)
	}
	oom, code, _ := strings.Cut(state, " ")
	res.ExitCode, _ = strconv.Atoi(code)
	if oom == "true" {
		res.Reason = "memory limit"
		return res, fmt.Errorf("run docker job: %w: the engine killed the container at %d bytes", ErrMemoryLimit, spec.MemoryBytes)
	}
	return res, nil
}

// Close implements Executor: running containers are killed and removed.
func (d *Docker) Close(ctx context.Context) error {
	if _, err := d.close(ctx); err != nil {
		return fmt.Errorf("close docker executor: %w", err)
	}
	return nil
}
