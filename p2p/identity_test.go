package p2p

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "home", "identity.key")

	key, created, err := LoadOrCreateIdentity(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateIdentity = created %v, %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %#o, want 0600", st.Mode().Perm())
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("created directory mode %v, %v; want 0700", st.Mode().Perm(), err)
	}

	again, created, err := LoadOrCreateIdentity(path)
	if err != nil || created {
		t.Fatalf("reload: created %v, %v", created, err)
	}
	if !key.Equals(again) {
		t.Fatal("reloaded key differs")
	}
	loaded, err := LoadIdentity(path)
	if err != nil || !key.Equals(loaded) {
		t.Fatalf("LoadIdentity: %v", err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(path); !errors.Is(err, ErrInsecureKeyFile) {
		t.Fatalf("LoadIdentity of a 0644 file: %v, want ErrInsecureKeyFile", err)
	}
	if _, _, err := LoadOrCreateIdentity(path); !errors.Is(err, ErrInsecureKeyFile) {
		t.Fatalf("LoadOrCreateIdentity of a 0644 file: %v, want ErrInsecureKeyFile (and no new key)", err)
	}

	garbage := filepath.Join(dir, "garbage.key")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(garbage); err == nil {
		t.Fatal("LoadIdentity accepted garbage")
	}
	if _, err := LoadIdentity(filepath.Join(dir, "missing.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadIdentity of a missing file: %v, want ErrNotExist", err)
	}
}
