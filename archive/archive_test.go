package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPackUnpackRoundTrip(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "data", "a.txt"), "alpha\n")
	write(t, filepath.Join(src, "data", "sub", "b.txt"), "beta\n")
	write(t, filepath.Join(src, "single.csv"), "1,2\n")
	data, packed, err := Pack([]Entry{{Local: filepath.Join(src, "data"), Path: "inputs/data"}, {Local: filepath.Join(src, "single.csv"), Path: "/inputs/x.csv"}}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(packed) != 3 {
		t.Fatalf("packed %+v, want 3 files", packed)
	}
	dst := t.TempDir()
	got, err := Unpack(data, dst, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"inputs/data/a.txt": "alpha\n", "inputs/data/sub/b.txt": "beta\n", "inputs/x.csv": "1,2\n"}
	if len(got) != len(want) {
		t.Fatalf("unpacked %+v", got)
	}
	for _, f := range got {
		b, err := os.ReadFile(filepath.Join(dst, f.Path))
		if err != nil || string(b) != want[f.Path] || f.SHA256 != Sum(b) {
			t.Errorf("%s: %q %v (sha %s)", f.Path, b, err, f.SHA256)
		}
	}
	listed, err := List(data)
	if err != nil || len(listed) != 3 || listed[0] != got[0] {
		t.Fatalf("List: %+v %v", listed, err)
	}
}

func TestPackRefusesWhatMustNotTravel(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "big"), strings.Repeat("x", 100))
	if _, _, err := Pack([]Entry{{Local: filepath.Join(src, "big"), Path: "big"}}, 99); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Pack([]Entry{{Local: filepath.Join(src, "link"), Path: "l"}}, 1<<20); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a symlink: %v", err)
	}
	if _, _, err := Pack([]Entry{{Local: filepath.Join(src, "big"), Path: "../up"}}, 1<<20); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a path with ..: %v", err)
	}
}

// tarOf builds an archive by hand, as a hostile peer would.
func tarOf(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestUnpackStaysInsideItsDirectory(t *testing.T) {
	parent := t.TempDir()
	dst := filepath.Join(parent, "out")
	for name, data := range map[string][]byte{
		"dot-dot":   tarOf(t, &tar.Header{Typeflag: tar.TypeReg, Name: "../escaped", Size: 1}),
		"symlink":   tarOf(t, &tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/etc"}),
		"hardlink":  tarOf(t, &tar.Header{Typeflag: tar.TypeLink, Name: "l", Linkname: "/etc/passwd"}),
		"twice":     tarOf(t, &tar.Header{Typeflag: tar.TypeReg, Name: "a", Size: 1}, &tar.Header{Typeflag: tar.TypeReg, Name: "a", Size: 1}),
		"too large": tarOf(t, &tar.Header{Typeflag: tar.TypeReg, Name: "a", Size: 2000}),
		"garbage":   []byte("not a tar archive at all, not even close....................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."),
	} {
		t.Run(name, func(t *testing.T) {
			os.RemoveAll(dst)
			if _, err := Unpack(data, dst, 1000); err == nil {
				t.Fatal("unpacked")
			}
			if _, err := os.Stat(filepath.Join(parent, "escaped")); err == nil {
				t.Fatal("a file was written outside the directory")
			}
		})
	}
	// Absolute names land inside, not at the root.
	if files, err := Unpack(tarOf(t, &tar.Header{Typeflag: tar.TypeReg, Name: "/etc/x", Size: 1}), dst, 10); err != nil || files[0].Path != "etc/x" {
		t.Fatalf("absolute name: %+v %v", files, err)
	}
}

func FuzzUnpack(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "d/"})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "d/f", Size: 3})
	tw.Write([]byte("abc"))
	tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dst := filepath.Join(parent, "out")
		files, err := Unpack(data, dst, 1<<16)
		if err != nil {
			return
		}
		var total int64
		for _, fl := range files {
			total += fl.Size
			if _, err := CleanPath(fl.Path); err != nil {
				t.Fatalf("unpacked a bad path %q", fl.Path)
			}
		}
		if total > 1<<16 {
			t.Fatalf("unpacked %d bytes past the limit", total)
		}
		ents, _ := os.ReadDir(parent)
		if len(ents) != 1 {
			t.Fatalf("wrote beside the directory: %v", ents)
		}
	})
}
