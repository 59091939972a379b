package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/testnet"
	"github.com/urfave/cli/v2"
)

var updateCLIDoc = flag.Bool("update", false, "rewrite docs/cli.md from the command definitions")

const cliDocPath = "../../docs/cli.md"

// docs/cli.md is rendered from the command definitions, so it says what the
// binary does; this fails when someone changed a command and not the page.
func TestCLIDoc(t *testing.T) {
	got := renderCLIDoc(newEnv(io.Discard, io.Discard).app())
	if *updateCLIDoc {
		if err := os.WriteFile(cliDocPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(cliDocPath)
	if err != nil {
		t.Fatalf("%v; create it: go test ./cmd/dms -run TestCLIDoc -update", err)
	}
	if string(want) != got {
		t.Fatalf("docs/cli.md is stale: the command definitions changed. Regenerate it and commit the result:\n\tgo test ./cmd/dms -run TestCLIDoc -update\n%s", firstDiff(string(want), got))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("first difference, line %d:\n\tdocs/cli.md: %q\n\tcommands:    %q", i+1, x, y)
		}
	}
	return ""
}

// renderCLIDoc writes the app's commands as Markdown: the global flags once,
// then each command with its usage line, description and own flags.
func renderCLIDoc(app *cli.App) string {
	var b strings.Builder
	b.WriteString("<!-- Generated from the command definitions in cmd/dms; do not edit.\n" +
		"     Regenerate: go test ./cmd/dms -run TestCLIDoc -update -->\n\n")
	b.WriteString("# Command line reference\n\n")
	fmt.Fprintf(&b, "`%s`\n\n%s.\n\n", app.UsageText, app.Usage)
	b.WriteString(indentDesc(app.Description))
	b.WriteString("## Global flags\n\nAccepted before or after the command name; after it, the flag beats the environment variable.\n\n")
	writeFlags(&b, app.Flags, nil)
	global := map[string]bool{}
	for _, f := range app.Flags {
		global[f.Names()[0]] = true
	}
	b.WriteString("## Commands\n\n")
	var toc func(cmds []*cli.Command, depth int, prefix string)
	toc = func(cmds []*cli.Command, depth int, prefix string) {
		for _, c := range cmds {
			if c.Hidden || c.Name == "help" { // every group has one (app.go withOwnHelp)
				continue
			}
			path := prefix + " " + c.Name
			fmt.Fprintf(&b, "%s- [`%s`](#%s): %s\n", strings.Repeat("  ", depth), path, anchor(path), c.Usage)
			toc(c.Subcommands, depth+1, path)
		}
	}
	toc(app.Commands, 0, "dms")
	b.WriteString("\n")
	var walk func(cmds []*cli.Command, prefix string)
	walk = func(cmds []*cli.Command, prefix string) {
		for _, c := range cmds {
			if c.Hidden || c.Name == "help" { // every group has one (app.go withOwnHelp)
				continue
			}
			path := prefix + " " + c.Name
			fmt.Fprintf(&b, "### %s\n\n%s.\n\n```\n%s\n```\n\n", path, strings.TrimSuffix(c.Usage, "."), c.UsageText)
			if len(c.Aliases) > 0 {
				fmt.Fprintf(&b, "Aliases: %s.\n\n", strings.Join(c.Aliases, ", "))
			}
			b.WriteString(indentDesc(c.Description))
			writeFlags(&b, c.Flags, global)
			walk(c.Subcommands, path)
		}
	}
	walk(app.Commands, "dms")
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// anchor is the fragment a code host gives the heading "### dms job submit".
func anchor(path string) string { return strings.ReplaceAll(path, " ", "-") }

func indentDesc(d string) string {
	d = strings.TrimSpace(d)
	if d == "" {
		return ""
	}
	return "```text\n" + d + "\n```\n\n"
}

// writeFlags writes flags as a table, leaving out those in skip (the global
// flags every command repeats).
func writeFlags(b *strings.Builder, flags []cli.Flag, skip map[string]bool) {
	var rows []string
	for _, f := range flags {
		names := f.Names()
		if skip[names[0]] {
			continue
		}
		df, ok := f.(cli.DocGenerationFlag)
		if !ok {
			continue
		}
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		placeholder, usage := unquoteUsage(df.GetUsage())
		var spelled []string
		for _, n := range names {
			dash := "--"
			if len(n) == 1 {
				dash = "-"
			}
			s := dash + n
			if df.TakesValue() {
				if placeholder == "" {
					placeholder = "value"
				}
				s += " " + placeholder
			}
			spelled = append(spelled, "`"+s+"`")
		}
		if s, ok := f.(cli.DocGenerationSliceFlag); ok && s.IsSliceFlag() {
			usage += " (repeatable)"
		}
		def := ""
		if df.TakesValue() {
			def = df.GetDefaultText()
		}
		def = machineFree(def)
		if def != "" {
			def = "`" + def + "`"
		}
		var envs []string
		for _, e := range df.GetEnvVars() {
			envs = append(envs, "`"+e+"`")
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s |", strings.Join(spelled, ", "), cell(usage), def, strings.Join(envs, ", ")))
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("| flag | meaning | default | environment |\n|---|---|---|---|\n")
	b.WriteString(strings.Join(rows, "\n"))
	b.WriteString("\n\n")
}

func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}

// machineFree replaces what differs between machines in a default (the
// user's home directory, the test network's directory under $TMPDIR) with
// what a reader expects.
func machineFree(def string) string {
	def = strings.ReplaceAll(def, testnet.DefaultDir(), "$TMPDIR/dms-testnet-$UID")
	if dir, err := home.DefaultDir(); err == nil && dir != "" {
		def = strings.ReplaceAll(def, dir, "~/.dms")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" && h != "/" {
		def = strings.ReplaceAll(def, h+string(filepath.Separator), "~/")
	}
	return def
}

// unquoteUsage is urfave/cli's own (unexported): the first `word` in a
// flag's usage names its value.
func unquoteUsage(usage string) (name, rest string) {
	i := strings.IndexByte(usage, '`')
	if i < 0 {
		return "", usage
	}
	j := strings.IndexByte(usage[i+1:], '`')
	if j < 0 {
		return "", usage
	}
	name = usage[i+1 : i+1+j]
	return name, usage[:i] + name + usage[i+2+j:]
}
