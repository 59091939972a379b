package resources

import (
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// privateFS is pebble's filesystem with files created 0600 and directories
// 0700: nothing under a home may be readable by other users, and pebble
// itself creates with 0666 less the umask.
type privateFS struct{ vfs.FS }

var _ vfs.FS = privateFS{}

func private(name string, f vfs.File, err error) (vfs.File, error) {
	if err == nil {
		_ = os.Chmod(name, 0o600) // best effort: the data directory is 0700 anyway
	}
	return f, err
}

func (p privateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.Create(name, c)
	return private(name, f, err)
}

func (p privateFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := p.FS.OpenReadWrite(name, c, opts...)
	return private(name, f, err)
}

func (p privateFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.ReuseForWrite(oldname, newname, c)
	return private(newname, f, err)
}

func (p privateFS) Lock(name string) (io.Closer, error) {
	l, err := p.FS.Lock(name)
	if err == nil {
		_ = os.Chmod(name, 0o600)
	}
	return l, err
}

func (p privateFS) MkdirAll(dir string, _ os.FileMode) error { return p.FS.MkdirAll(dir, 0o700) }

func (p privateFS) Unwrap() vfs.FS { return p.FS }
