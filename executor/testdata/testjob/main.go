// Command testjob is the executor tests' guest program, built for wasip1 in
// TestMain. argv[1] picks what it does; see the cases below.
package main

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"io"
	mrand "math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

var sink [][]byte

func main() {
	if len(os.Args) < 2 {
		os.Stderr.WriteString("usage: job MODE [ARGS]\n")
		os.Exit(64)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "echo": // args, JOB_ID, stdin → stdout; a line on stderr
		os.Stdout.WriteString("args=" + strings.Join(args, ",") + "\n")
		os.Stdout.WriteString("JOB_ID=" + os.Getenv("JOB_ID") + "\n")
		in, _ := io.ReadAll(os.Stdin)
		os.Stdout.WriteString("stdin=" + string(in) + "\n")
		os.Stderr.WriteString("to stderr\n")
	case "entropy": // the clock, a monotonic reading and random numbers
		t0 := time.Now()
		var buf [16]byte
		_, _ = crand.Read(buf[:])
		os.Stdout.WriteString("now=" + t0.UTC().Format(time.RFC3339Nano) + "\n")
		os.Stdout.WriteString("elapsed=" + strconv.FormatInt(int64(time.Since(t0)), 10) + "\n")
		os.Stdout.WriteString("crypto=" + hex.EncodeToString(buf[:]) + "\n")
		os.Stdout.WriteString("math=" + strconv.FormatUint(mrand.Uint64(), 10) + "\n")
	case "env": // the whole environment, sorted
		env := os.Environ()
		sort.Strings(env)
		os.Stdout.WriteString(strings.Join(env, "\n") + "\n")
	case "exit":
		code, _ := strconv.Atoi(args[0])
		os.Stdout.WriteString("exiting\n")
		os.Exit(code)
	case "loop": // spins without calling anything
		n := 0
		for {
			n++
		}
	case "sleep":
		d, _ := time.ParseDuration(args[0])
		time.Sleep(d)
	case "hog": // allocates 1 MiB at a time, keeps it all live
		for {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			sink = append(sink, b)
		}
	case "open": // reads a file: fails without a mount
		b, err := os.ReadFile(args[0])
		if err != nil {
			os.Stderr.WriteString("open: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.Write(b)
	case "write": // creates a file: fails on a read-only mount
		if err := os.WriteFile(args[0], []byte("x"), 0o644); err != nil {
			os.Stderr.WriteString("write: " + err.Error() + "\n")
			os.Exit(1)
		}
	case "spam": // N bytes to stdout and to stderr, in 100-byte writes
		n, _ := strconv.Atoi(args[0])
		line := bytes.Repeat([]byte("x"), 99)
		line = append(line, '\n')
		for w := 0; w < n; w += len(line) {
			chunk := line[:min(len(line), n-w)]
			os.Stdout.Write(chunk)
			os.Stderr.Write(chunk)
		}
	default:
		os.Stderr.WriteString("unknown mode " + os.Args[1] + "\n")
		os.Exit(64)
	}
}
