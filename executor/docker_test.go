package executor_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/executor"
)

func newDocker(t *testing.T) *executor.Docker {
	t.Helper()
	d, err := executor.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	return d
}

func TestDockerRunsAnImageOverInputsAndOutputs(t *testing.T) {
	ref := examples.NeedFilesImage(t)
	d := newDocker(t)
	in, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(in, "a.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(out, 0o777) // the container's user, nobody, writes there
	spec := executor.Spec{Kind: executor.KindDocker, Image: ref, Args: []string{"-id", "-exit", "3"},
		Mounts: map[string]string{"/inputs": in}, OutputDir: out,
		MemoryBytes: 64 << 20, CPUMilli: 500, Timeout: time.Minute, Env: map[string]string{"K": "v"}}
	res, err := d.Run(context.Background(), spec, nil)
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, res.Stderr)
	}
	if res.ExitCode != 3 || !strings.Contains(string(res.Stdout), "uid 65534 gid 65534") || !strings.Contains(string(res.Stdout), "file a.txt: 6 bytes") {
		t.Fatalf("exit %d, stdout %q", res.ExitCode, res.Stdout)
	}
	if b, err := os.ReadFile(filepath.Join(out, "a.txt.upper")); err != nil || string(b) != "HELLO\n" {
		t.Fatalf("output: %q %v", b, err)
	}
	// The root is read-only: writing anywhere but /outputs fails.
	spec.Args = []string{"-out", "/etc"}
	if res, err := d.Run(context.Background(), spec, nil); err != nil || res.ExitCode == 0 || !strings.Contains(string(res.Stderr), "read-only") {
		t.Fatalf("writing to /etc: exit %d err %v stderr %q", res.ExitCode, err, res.Stderr)
	}
	// No container is left behind.
	if names := containers(t); slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "dms-job-") }) {
		t.Fatalf("containers left: %v", names)
	}
}

func TestDockerEnforcesLimits(t *testing.T) {
	ref := examples.NeedFilesImage(t)
	d := newDocker(t)
	base := executor.Spec{Kind: executor.KindDocker, Image: ref, MemoryBytes: 32 << 20, Timeout: time.Minute}

	slow := base
	slow.Args, slow.Timeout = []string{"-tick", "600"}, 800*time.Millisecond
	if res, err := d.Run(context.Background(), slow, nil); !errors.Is(err, executor.ErrTimeout) || res.Reason != "timeout" {
		t.Fatalf("slow job: %v (reason %q)", err, res.Reason)
	}
	hog := base
	hog.Args = []string{"-alloc", "200"}
	if res, err := d.Run(context.Background(), hog, nil); !errors.Is(err, executor.ErrMemoryLimit) || res.Reason != "memory limit" {
		t.Fatalf("memory hog: %v (reason %q, exit %d)", err, res.Reason, res.ExitCode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Run(ctx, slow, nil); !errors.Is(err, executor.ErrCancelled) {
		t.Fatalf("cancelled job: %v", err)
	}
	missing := base
	missing.Image = "dms-no-such-image:never"
	if _, err := d.Run(context.Background(), missing, nil); !errors.Is(err, executor.ErrNoImage) {
		t.Fatalf("missing image: %v", err)
	}
	if err := d.HasImage(context.Background(), ref); err != nil {
		t.Fatalf("HasImage(%s): %v", ref, err)
	}
	if names := containers(t); slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "dms-job-") }) {
		t.Fatalf("containers left: %v", names)
	}
}

func containers(t *testing.T) []string {
	t.Helper()
	out, err := dockerOutput("ps", "--all", "--format", "{{.Names}}")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

func dockerOutput(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return string(out), err
}
