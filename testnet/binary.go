package testnet

// Which dms binary the node processes of a test network run.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// testnetBinary is the dms binary the nodes run: this one, or a copy in
// DIR/bin when this one is go run's temporary build, which go run deletes
// when it exits, while the nodes must outlive it.
func testnetBinary(dir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the dms binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find the dms binary: %w", err)
	}
	if !isGoRunBuild(exe) {
		return exe, nil
	}
	dst := filepath.Join(dir, "bin", "dms")
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", err
	}
	if err := copyFile(exe, dst, 0o700); err != nil {
		return "", fmt.Errorf("copy the go run binary to %s: %w", dst, err)
	}
	return dst, nil
}

// isGoRunBuild recognises a binary that go run (or go test) built in its
// temporary work directory ($GOTMPDIR or the temp dir, go-build*/.../exe/).
func isGoRunBuild(exe string) bool {
	for _, part := range strings.Split(filepath.ToSlash(exe), "/") {
		if strings.HasPrefix(part, "go-build") {
			return true
		}
	}
	return false
}

// copyFile copies src to dst through a temporary file, so that a node
// starting meanwhile never runs half a binary.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".dms-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, in)
	err = errors.Join(err, tmp.Chmod(mode), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
