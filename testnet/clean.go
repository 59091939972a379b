package testnet

// What `dms testnet down --clean` removes.

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/dms-project/dms/home"
)

var testnetHomeName = regexp.MustCompile(`^node-[0-9]+$`)

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
	for _, ent := range entries {
		p := filepath.Join(dir, ent.Name())
		switch {
		case ent.IsDir() && testnetHomeName.MatchString(ent.Name()):
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
