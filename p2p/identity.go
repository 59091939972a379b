package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// ErrInsecureKeyFile is returned for a key file that group or others may
// access: such a key may already be someone else's too.
var ErrInsecureKeyFile = errors.New("p2p: key file accessible by group or others")

// maxKeyFile bounds how much of an identity file we read; an Ed25519 key
// marshals to 68 bytes.
const maxKeyFile = 4 << 10

// LoadOrCreateIdentity loads the node's private key from path, or creates
// an Ed25519 key there (mode 0600, parent directory 0700 if missing) when
// the file does not exist. created says which happened.
func LoadOrCreateIdentity(path string) (crypto.PrivKey, bool, error) {
	key, err := LoadIdentity(path)
	if err == nil {
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	key, _, err = crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("create identity: %w", err)
	}
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("create identity: %w", err)
	}
	if err := writeSecretFile(path, data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process created it first: use theirs.
			key, err := LoadIdentity(path)
			return key, false, err
		}
		return nil, false, fmt.Errorf("create identity: %w", err)
	}
	return key, true, nil
}

// LoadIdentity loads a private key written by LoadOrCreateIdentity
// (crypto.MarshalPrivateKey format), refusing a file that group or others
// may access.
func LoadIdentity(path string) (crypto.PrivKey, error) {
	data, err := readSecretFile(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	key, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("load identity %s: not a libp2p private key: %w", path, err)
	}
	return key, nil
}

// readSecretFile reads at most limit bytes of a file that only its owner
// may access.
func readSecretFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%s has mode %#o (fix with chmod 600 %s): %w", path, perm, path, ErrInsecureKeyFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a key file", path, limit)
	}
	return data, nil
}

// writeSecretFile creates path with mode 0600 and data, atomically: it
// writes a temporary file, syncs it, then links it into place, so a crash
// never leaves a half-written key and an existing file is never replaced
// (fs.ErrExist).
func writeSecretFile(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		return errors.Join(err, tmp.Close())
	}
	if _, err := tmp.Write(data); err != nil {
		return errors.Join(err, tmp.Close())
	}
	if err := tmp.Sync(); err != nil {
		return errors.Join(err, tmp.Close())
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, fs.ErrExist)
		}
		// Some filesystems have no hard links; fall back to a rename
		// after checking again that nothing is in the way.
		if _, serr := os.Lstat(path); serr == nil {
			return fmt.Errorf("%s: %w", path, fs.ErrExist)
		}
		if rerr := os.Rename(tmp.Name(), path); rerr != nil {
			return rerr
		}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable; best effort
		_ = d.Close()
	}
	return nil
}
