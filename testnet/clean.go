package testnet

// What `dms testnet down --clean` removes.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dms-project/dms/home"
)

// ErrHomeHeld: Clean found a home that a running node holds, and removed
// nothing.
var ErrHomeHeld = errors.New("a node still runs on a home in the test network directory; nothing removed")

// isNodeHomeName reports whether name is node-N, the name a test network
// gives its homes.
func isNodeHomeName(name string) bool {
	n, ok := strings.CutPrefix(name, "node-")
	if !ok || n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] < '0' || n[i] > '9' {
			return false
		}
	}
	return true
}

// Clean removes what test networks leave in dir (homes named node-N, the
// swarm key, the binary copy, the shared wasm cache, the build context of
// a container network's image) and dir itself once empty. It touches nothing else: --dir may name a directory that holds
// more.
func Clean(dir string) (homes int, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	// A home a node still runs on is not removed from under it, nor is
	// anything else: the caller stops it first (Stop finds it by its home).
	var held []string
	for _, ent := range entries {
		if !ent.IsDir() || !isNodeHomeName(ent.Name()) {
			continue
		}
		if pid := (home.Home{Dir: filepath.Join(dir, ent.Name())}).LockHolder(); pid > 0 && ProcessAlive(pid) {
			held = append(held, fmt.Sprintf("%s (pid %d)", ent.Name(), pid))
		}
	}
	if len(held) > 0 {
		return 0, fmt.Errorf("%w: %s; stop %s first (dms testnet down --dir %s stops the nodes of the network it records; kill PID stops one started by hand)",
			ErrHomeHeld, strings.Join(held, ", "), plural(len(held), "it", "them"), home.ShellQuote(dir))
	}
	for _, ent := range entries {
		p := filepath.Join(dir, ent.Name())
		switch {
		case ent.IsDir() && isNodeHomeName(ent.Name()):
			if _, err := os.Stat(filepath.Join(p, home.IdentityFile)); err != nil {
				continue // not a home of ours
			}
			if err := os.RemoveAll(p); err != nil {
				return homes, err
			}
			homes++
		case ent.Name() == WasmCacheShared && ent.IsDir():
			if err := os.RemoveAll(p); err != nil {
				return homes, err
			}
		case ent.Name() == SwarmKeyFile:
			if err := os.Remove(p); err != nil {
				return homes, err
			}
		case ent.Name() == "bin" && ent.IsDir():
			if err := removeFiles(p, "dms"); err != nil {
				return homes, err
			}
		case ent.Name() == imageDir && ent.IsDir():
			if err := removeFiles(p, "Dockerfile", "dms"); err != nil {
				return homes, err
			}
		}
	}
	_ = os.Remove(dir) // only if empty
	return homes, nil
}

// removeFiles removes the named files of dir, then dir if that left it
// empty.
func removeFiles(dir string, names ...string) error {
	for _, name := range names {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	_ = os.Remove(dir) // only if empty
	return nil
}
