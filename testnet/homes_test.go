package testnet

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dms-project/dms/home"
)

func TestHomesShareOneWasmCacheAndCleanRemovesIt(t *testing.T) {
	dir := t.TempDir()
	a, b, own := filepath.Join(dir, "node-0"), filepath.Join(dir, "node-1"), filepath.Join(dir, "node-2")
	if err := os.MkdirAll(filepath.Join(own, home.WasmCacheDir), 0o700); err != nil {
		t.Fatal(err)
	}
	shared, err := sharedWasmCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{a, b, a, own} { // a twice: the second is a no-op
		if err := linkWasmCache(h, shared); err != nil {
			t.Fatalf("linkWasmCache(%s): %v", h, err)
		}
	}
	if err := os.WriteFile(filepath.Join(a, home.WasmCacheDir, "compiled"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b, home.WasmCacheDir, "compiled")); err != nil {
		t.Fatalf("node-1 does not see what node-0 compiled: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(own, home.WasmCacheDir)); err != nil || !fi.IsDir() {
		t.Fatalf("a home's own cache was replaced: %v %v", fi, err)
	}
	for _, h := range []string{a, b, own} { // Clean takes a node-N with an identity for a home
		if err := os.WriteFile(filepath.Join(h, home.IdentityFile), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// What a container network leaves: its image's build context.
	if err := os.MkdirAll(filepath.Join(dir, imageDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, imageDir, "Dockerfile"), []byte("FROM scratch\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Clean(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		left, _ := os.ReadDir(dir)
		t.Fatalf("%s after Clean: %v, holding %v; want it gone with all it held", dir, err, left)
	}
}
