//go:build unix

package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// jobLimit is one native job's memory cap.
type jobLimit interface {
	// apply adjusts the process attributes before start (cgroup fd).
	apply(attr *syscall.SysProcAttr)
	// started applies limits that need the pid (prlimit).
	started(pid int)
	// oomKilled reports whether the kernel killed the job for memory.
	oomKilled() bool
	// peak returns the peak memory the limiter saw, 0 if unknown.
	peak() uint64
	// killAll kills every process of the job still alive, even those that
	// left its process group.
	killAll()
	// close removes what prepare created.
	close()
}

func (n *Native) run(ctx context.Context, spec *Spec, out Output) (Result, error) {
	res := Result{ExitCode: -1}
	env := nativeEnv(spec.Env)
	if spec.OutputDir != "" {
		env = append(env, "DMS_OUTPUTS="+spec.OutputDir)
	}
	pathEnv := os.Getenv("PATH")
	if p, ok := spec.Env["PATH"]; ok {
		pathEnv = p
	}
	prog, err := lookPath(spec.Command[0], pathEnv)
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "dms-job-*")
	if err != nil {
		return res, fmt.Errorf("create work dir: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			n.log.Warn("remove job work dir", "dir", dir, "err", err)
		}
	}()

	lim, err := n.limits.prepare(spec.MemoryBytes)
	if err != nil {
		return res, fmt.Errorf("memory limit: %w", err)
	}
	defer lim.close()

	// Our own pipes, not exec's copying goroutines: Wait then returns when
	// the process exits, and we decide how long to drain what it left.
	outR, outW, err := os.Pipe()
	if err != nil {
		return res, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return res, errors.Join(fmt.Errorf("stderr pipe: %w", err), outR.Close(), outW.Close())
	}
	stdout, stderr := captures(spec.maxOutput(), out)

	cmd := &exec.Cmd{
		Path:        prog,
		Args:        spec.Command,
		Env:         env,
		Dir:         dir,
		Stdin:       bytes.NewReader(spec.Stdin),
		Stdout:      outW,
		Stderr:      errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}, // its own group, killed as one
		// A descendant that escaped the group and keeps stdin open must
		// not hold Wait forever.
		WaitDelay: killGrace,
	}
	lim.apply(cmd.SysProcAttr)

	runCtx, cancel := runContext(ctx, n.closeCtx, spec.Timeout)
	defer cancel()
	start := time.Now()
	err = cmd.Start()
	// The child has its copies; ours must go or the readers never see EOF.
	_ = outW.Close()
	_ = errW.Close()
	if err != nil {
		_ = outR.Close()
		_ = errR.Close()
		return res, fmt.Errorf("start %s: %w", prog, err)
	}
	pid := cmd.Process.Pid
	lim.started(pid)

	var drain sync.WaitGroup
	for _, p := range []struct {
		r *os.File
		w io.Writer
	}{{outR, stdout}, {errR, stderr}} {
		drain.Go(func() {
			_, _ = io.Copy(p.w, p.r)
		})
	}

	exited := make(chan error, 1)
	go func() { exited <- waitExit(cmd) }()
	var stopped bool
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-runCtx.Done():
		stopped = true
		killGroup(pid)
		lim.killAll()
		waitErr = <-exited
	}
	res.Duration = time.Since(start)
	// Leftover children (a shell's background jobs) die with the job. With
	// waitid(WNOWAIT) the leader is still a zombie here, so its group id
	// cannot have been reused.
	if canWaitNoReap {
		killGroup(pid)
		lim.killAll()
		waitErr = cmd.Wait()
	}

	drained := make(chan struct{})
	go func() { drain.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(killGrace):
		n.log.Warn("job output still open after exit; a process escaped its group", "pid", pid)
	}
	_ = outR.Close()
	_ = errR.Close()
	<-drained

	res.Stdout, res.StdoutTruncated = stdout.result()
	res.Stderr, res.StderrTruncated = stderr.result()
	res.PeakMemoryBytes = lim.peak()
	if res.PeakMemoryBytes == 0 && cmd.ProcessState != nil {
		res.PeakMemoryBytes = maxRSS(cmd.ProcessState)
	}

	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) && !errors.Is(waitErr, exec.ErrWaitDelay) {
		return res, fmt.Errorf("wait for %s: %w", prog, waitErr)
	}
	ps := cmd.ProcessState
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Reason = "signal: " + ws.Signal().String()
	} else {
		res.ExitCode = ps.ExitCode()
	}
	n.log.Debug("native job finished", "pid", pid, "exit", res.ExitCode, "reason", res.Reason,
		"duration", res.Duration, "stopped", stopped)
	switch {
	case stopped:
		res.ExitCode = -1
		reason, err := stopError(runCtx, spec.Timeout)
		res.Reason = reason
		return res, err
	case lim.oomKilled():
		res.Reason = "memory limit"
		return res, fmt.Errorf("%w: killed by the kernel at %d bytes", ErrMemoryLimit, spec.MemoryBytes)
	}
	return res, nil
}

// killGroup sends SIGKILL to the job's whole process group.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// waitExit waits for the job's process to exit: without reaping it where the
// platform allows (so its group id stays reserved), else by cmd.Wait.
func waitExit(cmd *exec.Cmd) error {
	if canWaitNoReap {
		return waitNoReap(cmd.Process.Pid)
	}
	return cmd.Wait()
}
