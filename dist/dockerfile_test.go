package dist

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The Dockerfile at the root builds an image whose node runs as a non-root
// user, prints its version and can initialise its home on the volume.
//
// No registry is reachable where this runs, so the builder is an image made
// here from this machine's Go toolchain (GO_IMAGE), and the modules come
// from this machine's module cache, copied into the build context.
func TestDockerfile(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: builds a container image")
	}
	// The builder compiles the node and every module from an empty cache
	// (under 3 minutes on the project's 2-core machine when quiet, 13 beside
	// other builds): .ci/run asks for it once, in a step of its own, rather
	// than in every go test of the tree.
	if os.Getenv("DMS_TEST_DOCKERFILE") == "" {
		t.Skip("set DMS_TEST_DOCKERFILE=1 to build the container image from the Dockerfile (minutes: a cold build of the node)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker command on PATH: the container image is not built")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), d.Add(-30*time.Second))
	}
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers (docker version: %v: %s): the container image is not built", err, bytes.TrimSpace(out))
	}

	suffix := randomHex(t)
	goImage := "dms-test-go:" + suffix
	image := "dms-test:" + suffix
	importGo(ctx, t, goImage)
	t.Cleanup(func() { docker(context.Background(), t, "rmi", "--force", goImage) })

	buildCtx, goproxy := buildContext(t)
	t.Cleanup(func() { docker(context.Background(), t, "rmi", "--force", image) })
	cmd := exec.CommandContext(ctx, "docker", "build", "--build-arg", "GO_IMAGE="+goImage, "--build-arg", "GOPROXY="+goproxy,
		"--build-arg", "VERSION=v0.0.0-test", "-t", image, buildCtx)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0") // the engine here may have no BuildKit; the Dockerfile needs none
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}

	out := docker(ctx, t, "run", "--rm", image, "--version")
	if !strings.Contains(out, "dms version v0.0.0-test") {
		t.Errorf("docker run %s --version printed %q, want the version passed as VERSION", image, out)
	}
	user := strings.TrimSpace(docker(ctx, t, "image", "inspect", "--format", "{{.Config.User}}", image))
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" || strings.Trim(uid, "0123456789") != "" {
		t.Errorf("image user %q: want a numeric non-root UID", user)
	}
	// The home on the volume belongs to that user: init writes the identity key there.
	if out := docker(ctx, t, "run", "--rm", image, "init"); !strings.Contains(out, "/data") {
		t.Errorf("docker run %s init printed %q, want the home /data named", image, out)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// docker runs a docker command and returns its output; a failure fails the test.
func docker(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// importGo makes an image that holds this machine's Go toolchain at
// /usr/local/go, as the golang images do, and nothing else: the go tool and
// the compiler are static, and CGO_ENABLED=0 needs no C toolchain.
func importGo(ctx context.Context, t *testing.T, tag string) {
	t.Helper()
	gr, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	goroot := strings.TrimSpace(string(gr))
	cmd := exec.CommandContext(ctx, "docker", "import",
		"--change", "ENV PATH=/usr/local/go/bin:/usr/bin:/bin",
		"--change", "ENV HOME=/root",
		"-", tag)
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	werr := writeGoroot(pw, goroot)
	pw.CloseWithError(werr)
	if err := errors.Join(werr, cmd.Wait()); err != nil {
		t.Fatalf("docker import of GOROOT %s: %v\n%s", goroot, err, out.Bytes())
	}
}

func writeGoroot(w io.Writer, goroot string) error {
	tw := tar.NewWriter(w)
	for _, d := range []struct {
		name string
		mode int64
	}{{"tmp/", 0o1777}, {"root/", 0o700}, {"usr/", 0o755}, {"usr/local/", 0o755}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode}); err != nil {
			return err
		}
	}
	tool := filepath.Join("pkg", "tool", runtime.GOOS+"_"+runtime.GOARCH)
	err := filepath.WalkDir(goroot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(goroot, path)
		if rel != "." && !keepInGoroot(rel, d, tool) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(filepath.Join("usr/local/go", rel))
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	return errors.Join(err, tw.Close())
}

// keepInGoroot keeps what go build needs: the go command, this platform's
// tools, the standard library's source and the toolchain's settings.
func keepInGoroot(rel string, d fs.DirEntry, tool string) bool {
	top, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	switch top {
	case "bin", "src", "go.env", "VERSION":
	case "pkg":
		r := filepath.ToSlash(rel)
		t := filepath.ToSlash(tool)
		return r == "pkg" || r == "pkg/tool" || r == "pkg/include" || strings.HasPrefix(r, "pkg/include/") ||
			r == t || strings.HasPrefix(r, t+"/")
	default:
		return false
	}
	if d.IsDir() {
		return d.Name() != "testdata"
	}
	return !strings.HasSuffix(d.Name(), "_test.go")
}

// buildContext copies the repository into a temporary directory, with this
// machine's module downloads beside it as a module proxy (.modproxy), so
// that the build needs no network: the build argument GOPROXY points the
// builder at that copy.
func buildContext(t *testing.T) (dir, goproxy string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	skip := map[string]bool{".git": true, ".scratch": true, "internal_warm": true, "vendor": true, ".modproxy": true}
	if err := copyTree(root, dir, func(rel string) bool { return skip[rel] }); err != nil {
		t.Fatalf("copying the build context: %v", err)
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	cache := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	err = copyTree(cache, filepath.Join(dir, ".modproxy"), func(rel string) bool {
		return rel == "sumdb" || strings.HasSuffix(rel, ".lock") || strings.HasSuffix(rel, ".partial")
	})
	if err != nil {
		t.Fatalf("copying the module cache's downloads: %v", err)
	}
	return dir, "file:///src/.modproxy"
}

// copyTree copies the regular files and directories under from into to,
// leaving out the paths (relative to from) that skip names.
func copyTree(from, to string, skip func(rel string) bool) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if rel != "." && skip(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
}
