//go:build !linux

package procmem

// ReleaseExecutable does nothing where the kernel offers no MADV_PAGEOUT.
func ReleaseExecutable() (int64, error) { return 0, nil }
