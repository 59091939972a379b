// Command files is the sample job that works on files: it reads every file
// under /inputs, writes an upper-cased copy of each to /outputs, and a
// summary beside them. It is built twice: for WASI (files.wasm, run by the
// wasm sandbox) and as a static Linux binary for a container image (the
// tests build one FROM scratch).
//
// Usage: files [-in DIR] [-out DIR] [-tick N] [-alloc MIB] [-id] [-exit CODE]
//
//	-tick N    first print N numbered lines, a tenth of a second apart
//	           (to watch output arrive live)
//	-alloc MIB first take and touch MIB MiB of memory (to meet a limit)
//	-id        first print the user and group the job runs as
//	-exit CODE exit with CODE at the end
package main

//go:generate ./build.sh

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	in, out, tick, alloc, exit := "/inputs", "/outputs", 0, 0, 0
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		if args[i] == "-id" {
			say("uid " + strconv.Itoa(os.Getuid()) + " gid " + strconv.Itoa(os.Getgid()))
			continue
		}
		if i+1 >= len(args) {
			fail("files: " + args[i] + " wants a value")
		}
		switch args[i] {
		case "-in":
			in = args[i+1]
		case "-out":
			out = args[i+1]
		case "-tick", "-exit", "-alloc":
			n, err := strconv.Atoi(args[i+1])
			if err != nil {
				fail("files: " + args[i] + " wants a number, got " + strconv.Quote(args[i+1]))
			}
			switch args[i] {
			case "-tick":
				tick = n
			case "-alloc":
				alloc = n
			default:
				exit = n
			}
		default:
			fail("files: unknown flag " + args[i])
		}
		i++
	}
	if alloc > 0 {
		mem := make([]byte, alloc<<20)
		for i := range mem {
			mem[i] = byte(i)
		}
		say("took " + strconv.Itoa(alloc) + " MiB")
	}
	for i := 1; i <= tick; i++ {
		say("tick " + strconv.Itoa(i))
		time.Sleep(100 * time.Millisecond)
	}
	var summary strings.Builder
	files, total := 0, 0
	if _, err := os.Stat(in); err != nil {
		in = "" // no inputs: a job may make files from nothing
	}
	err := filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
		if in == "" {
			return filepath.SkipAll
		}
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(in, p)
		dst := filepath.Join(out, rel+".upper")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, bytes.ToUpper(data), 0o644); err != nil {
			return err
		}
		line := "file " + rel + ": " + strconv.Itoa(len(data)) + " bytes"
		say(line)
		summary.WriteString(line + "\n")
		files++
		total += len(data)
		return nil
	})
	if err != nil {
		fail("files: " + err.Error())
	}
	summary.WriteString(strconv.Itoa(files) + " files, " + strconv.Itoa(total) + " bytes\n")
	if err := os.WriteFile(filepath.Join(out, "summary.txt"), []byte(summary.String()), 0o644); err != nil {
		fail("files: write summary: " + err.Error())
	}
	say(strconv.Itoa(files) + " files, " + strconv.Itoa(total) + " bytes")
	os.Exit(exit)
}

func say(line string) { os.Stdout.WriteString(line + "\n") }

func fail(msg string) {
	os.Stderr.WriteString(msg + "\n")
	os.Exit(1)
}
