// Package archive packs a job's files into tar archives and unpacks them,
// within limits: the inputs a requester sends and the outputs a provider
// returns. Only regular files and directories travel; names are cleaned,
// relative and never leave the directory they are unpacked into, so an
// archive from a peer cannot write outside it, however it was made.
package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ErrTooLarge: the files are more than the limit allows.
var ErrTooLarge = errors.New("over the size limit")

// ErrInvalid: an archive or a path is malformed.
var ErrInvalid = errors.New("invalid archive")

// MaxFiles bounds how many entries one archive may hold.
const MaxFiles = 10000

// File is one file of an archive, with its content's hash.
type File struct {
	Path   string `json:"path"` // slash-separated, relative
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Entry maps a local file or directory to where it appears in the archive
// (a relative, slash-separated path).
type Entry struct {
	Local string
	Path  string
}

// CleanPath checks a path inside an archive: relative once its leading
// slashes are dropped, without "..", and not empty. It returns the cleaned
// form.
func CleanPath(p string) (string, error) {
	raw := p
	p = strings.TrimLeft(filepath.ToSlash(p), "/")
	if p == "" {
		return "", fmt.Errorf("%w: empty path %q", ErrInvalid, raw)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: path %q leaves its directory", ErrInvalid, raw)
		}
	}
	c := path.Clean(p)
	if c == "." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: path %q", ErrInvalid, raw)
	}
	return c, nil
}

// Pack writes the entries into one tar archive of at most limit bytes of
// file content. A directory is packed with everything under it; symbolic
// links, devices and the like are refused rather than followed.
func Pack(entries []Entry, limit int64) ([]byte, []File, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var files []File
	var total int64
	seen := map[string]bool{}
	add := func(local, name string, fi fs.FileInfo) error {
		if seen[name] {
			return fmt.Errorf("%w: %s is given twice", ErrInvalid, name)
		}
		seen[name] = true
		if len(seen) > MaxFiles {
			return fmt.Errorf("%w: more than %d files", ErrTooLarge, MaxFiles)
		}
		switch {
		case fi.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: fi.ModTime()})
		case fi.Mode().IsRegular():
		default:
			return fmt.Errorf("%w: %s is not a regular file or directory (links are not followed)", ErrInvalid, local)
		}
		if total += fi.Size(); total > limit {
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
		}
		f, err := os.Open(local)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: fi.Size(), Mode: 0o644, ModTime: fi.ModTime()}); err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(f, fi.Size()))
		if err != nil {
			return err
		}
		if n != fi.Size() {
			return fmt.Errorf("%s changed while it was read", local)
		}
		files = append(files, File{Path: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
		return nil
	}
	for _, e := range entries {
		name, err := CleanPath(e.Path)
		if err != nil {
			return nil, nil, err
		}
		fi, err := os.Lstat(e.Local)
		if err != nil {
			return nil, nil, err
		}
		if !fi.IsDir() {
			if err := add(e.Local, name, fi); err != nil {
				return nil, nil, err
			}
			continue
		}
		err = filepath.WalkDir(e.Local, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(e.Local, p)
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			return add(p, path.Join(name, filepath.ToSlash(rel)), fi)
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), files, nil
}

// PackDir packs everything under dir, its paths relative to dir.
func PackDir(dir string, limit int64) ([]byte, []File, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	entries := make([]Entry, 0, len(ents))
	for _, e := range ents {
		entries = append(entries, Entry{Local: filepath.Join(dir, e.Name()), Path: e.Name()})
	}
	return Pack(entries, limit)
}

// Unpack writes the archive's files under dir (created if need be), at
// most limit bytes of content, and returns them with their hashes. Files
// are written 0644 and directories 0755 so a sandboxed job's user can read
// them; dir's own permissions keep others out.
func Unpack(data []byte, dir string, limit int64) ([]File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tr := tar.NewReader(bytes.NewReader(data))
	var files []File
	var total int64
	count := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if count++; count > MaxFiles {
			return nil, fmt.Errorf("%w: more than %d entries", ErrTooLarge, MaxFiles)
		}
		name, err := CleanPath(hdr.Name)
		if err != nil {
			return nil, err
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return nil, err
			}
			continue
		case tar.TypeReg:
		default:
			return nil, fmt.Errorf("%w: %s is not a regular file or directory", ErrInvalid, name)
		}
		if hdr.Size < 0 {
			return nil, fmt.Errorf("%w: %s has a negative size", ErrInvalid, name)
		}
		if total += hdr.Size; total > limit {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, err
		}
		// O_EXCL: a name given twice, or a file where a directory's link
		// would sit, is refused rather than overwritten.
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(tr, hdr.Size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		if n != hdr.Size {
			return nil, fmt.Errorf("%w: %s is cut short", ErrInvalid, name)
		}
		files = append(files, File{Path: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// List returns the files of an archive without writing them.
func List(data []byte) ([]File, error) {
	tr := tar.NewReader(bytes.NewReader(data))
	var files []File
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if n >= MaxFiles {
			return nil, fmt.Errorf("%w: more than %d entries", ErrTooLarge, MaxFiles)
		}
		name, err := CleanPath(hdr.Name)
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		h := sha256.New()
		size, err := io.Copy(h, tr)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		files = append(files, File{Path: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// Sum is the hex sha256 of data, as files and blobs are named.
func Sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
