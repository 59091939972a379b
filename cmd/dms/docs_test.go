package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mdLink is a Markdown link or image: [text](target) or ![alt](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

var inlineCode = regexp.MustCompile("`[^`]*`")

// Every relative link in README.md and docs/*.md names a file or folder in
// the repository, so the documentation holds together in every clone.
func TestDocLinks(t *testing.T) {
	root := filepath.Join("..", "..")
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(root, "README.md"))
	if len(pages) < 2 {
		t.Fatalf("found %v: want README.md and the pages in docs/", pages)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(stripCode(string(b)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			p, err := filepath.Abs(filepath.Join(filepath.Dir(page), filepath.FromSlash(target)))
			if err != nil {
				t.Fatal(err)
			}
			rel, err := filepath.Rel(abs, p)
			if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				t.Errorf("%s: link %q leads out of the repository", filepath.Base(page), m[1])
				continue
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: link %q: no such file in the repository", filepath.Base(page), m[1])
			}
		}
	}
}

// stripCode drops fenced code blocks and inline code, where brackets are not links.
func stripCode(s string) string {
	var out []string
	fenced := false
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			out = append(out, inlineCode.ReplaceAllString(line, ""))
		}
	}
	return strings.Join(out, "\n")
}

// docTest is a test or fuzz target that a page names as evidence.
var docTest = regexp.MustCompile("`((?:Test|Fuzz)[A-Z][A-Za-z0-9_]*)`")

// Every test that docs/*.md names as evidence exists, so a renamed or
// removed test cannot leave the threat model pointing at nothing.
func TestDocTestsExist(t *testing.T) {
	root := filepath.Join("..", "..")
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	named := map[string][]string{}
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range docTest.FindAllStringSubmatch(string(b), -1) {
			named[m[1]] = append(named[m[1]], filepath.Base(page))
		}
	}
	if len(named) == 0 {
		t.Fatal("docs/*.md name no tests: want security.md's evidence")
	}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "vendor" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for name := range named {
			if strings.Contains(string(b), "func "+name+"(") {
				delete(named, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, pages := range named {
		t.Errorf("%s names %s, which no _test.go file defines: rename it there or remove it", strings.Join(pages, ", "), name)
	}
}
