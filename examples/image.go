package examples

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// FilesImage builds examples/files as a static binary in a container image
// FROM scratch on the local Docker engine, once per process, and returns
// the image's reference. The engine needs no registry: nothing is pulled.
// It needs the Go toolchain and this source tree (tests and the
// walkthroughs in the README have both).
func FilesImage(ctx context.Context) (string, error) {
	filesImage.once.Do(func() { filesImage.ref, filesImage.err = buildFilesImage(ctx) })
	return filesImage.ref, filesImage.err
}

var filesImage struct {
	once sync.Once
	ref  string
	err  error
}

// ErrNoDocker: no Docker engine answers here.
var ErrNoDocker = errors.New("no docker engine")

func buildFilesImage(ctx context.Context) (string, error) {
	if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: %v: %s", ErrNoDocker, err, strings.TrimSpace(string(out)))
	}
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("files image: cannot find the examples source")
	}
	src := filepath.Join(filepath.Dir(self), "files")
	dir, err := os.MkdirTemp("", "dms-files-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "files"), ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("files image: go build: %v: %s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "files"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(bin)
	ref := "dms-example-files:" + hex.EncodeToString(sum[:6])
	if exec.CommandContext(ctx, "docker", "image", "inspect", ref).Run() == nil {
		return ref, nil // built before, by an earlier run
	}
	dockerfile := "FROM scratch\nCOPY files /files\nENTRYPOINT [\"/files\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "docker", "build", "--quiet", "--tag", ref, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("files image: docker build: %v: %s", err, out)
	}
	return ref, nil
}

// NeedFilesImage is FilesImage for tests: it skips t, saying why, where no
// Docker engine answers, and fails it when the build fails.
func NeedFilesImage(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ref, err := FilesImage(ctx)
	if errors.Is(err, ErrNoDocker) {
		t.Skipf("skipping: no Docker engine answers here (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
