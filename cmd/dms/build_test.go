package main

import (
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cliNoDocsTag leaves urfave/cli's man-page and markdown generators out of
// the binary. dms never calls them, but linked they pull in md2man and
// blackfriday, whose package initialisation every command paid for at start
// (docs/performance.md, "What a client command costs").
const cliNoDocsTag = "urfave_cli_no_docs"

// Every documented build of dms uses the tag and is static, and the tag
// still does what it is for: a urfave/cli upgrade that renamed it would
// show here.
func TestBuildsLeaveOutCLIDocs(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"README.md", "Dockerfile", filepath.Join("docs", "operations.md")} {
		b, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		builds := 0
		for i, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "./cmd/dms") || !(strings.Contains(line, "go build") || strings.Contains(line, `"build"`)) {
				continue
			}
			builds++
			if !strings.Contains(line, cliNoDocsTag) {
				t.Errorf("%s:%d builds dms without -tags %s: %s", name, i+1, cliNoDocsTag, strings.TrimSpace(line))
			}
			// A static binary skips the dynamic loader and libc's start:
			// 3 to 6 ms of every command on a loaded machine.
			if !strings.Contains(line, "CGO_ENABLED=0") && !strings.Contains(string(b), "ENV CGO_ENABLED=0") {
				t.Errorf("%s:%d builds dms with cgo; write CGO_ENABLED=0 before it: %s", name, i+1, strings.TrimSpace(line))
			}
		}
		if builds == 0 {
			t.Errorf("%s: no build of ./cmd/dms found; this test looks for one per file", name)
		}
	}

	info, err := buildinfo.ReadFile(buildDMS(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range info.Deps {
		if strings.Contains(m.Path, "md2man") || strings.Contains(m.Path, "blackfriday") {
			t.Errorf("the binary built with -tags %s still links %s: the tag no longer leaves urfave/cli's doc generators out", cliNoDocsTag, m.Path)
		}
	}
}

// What every command pays before it does anything: exec, the runtime, and
// the initialisation of every linked package (docs/performance.md, "What a
// client command costs"). Run it alternately with an older binary's figure
// on a busy machine; one run says little.
func BenchmarkStartVersion(b *testing.B) {
	bin := buildDMS(b)
	for b.Loop() {
		if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil {
			b.Fatalf("dms --version: %v\n%s", err, out)
		}
	}
}
