// Command startbench measures what a dms client command costs: each binary
// given runs each command -n times, the binaries alternating in a random
// order so that load on a shared machine falls on all of them alike, and
// the medians of wall time, CPU (user+sys) and minor page faults are
// printed. Beside them it measures the node's own time for the same
// requests (a fresh connection to the control socket each time, as a
// command makes) and, with GODEBUG=inittrace=1, how long each binary takes
// from exec to the end of its last package init.
//
//	go build -tags urfave_cli_no_docs -o /tmp/dms ./cmd/dms
//	dms testnet up --nodes 1 --dir /tmp/tn
//	go run ./cmd/dms/testdata/startbench -home /tmp/tn/node-0 /tmp/dms /tmp/dms.old
//
// Write every binary compared the same way, freshly (go build -o, or dd
// with a large block size): how a file's pages came into the page cache
// decides how many of them one fault maps, and a cp'd copy of the same
// binary can fault a third more and start 25% slower. -floor takes a Go
// program that does nothing, the start of any Go process here.
//
// docs/performance.md ("What a client command costs") has its figures.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type sample struct{ wall, cpu, faults float64 }

func main() {
	n := flag.Int("n", 50, "runs of each command with each binary")
	dir := flag.String("home", "", "the home of a running node (dms testnet up --nodes 1); without it only --version is measured")
	floor := flag.String("floor", "", "a Go program that does nothing, to show the floor of any Go process here")
	cmds := flag.String("cmds", "--version;status;job list", "the commands, separated by ';'")
	flag.Parse()
	bins := flag.Args()
	if len(bins) == 0 {
		fmt.Fprintln(os.Stderr, "usage: startbench [-n N] [-home DIR] [-floor BIN] DMS-BINARY...")
		os.Exit(2)
	}
	var cases [][]string
	for _, c := range strings.Split(*cmds, ";") {
		args := strings.Fields(c)
		if len(args) > 0 && args[0] != "--version" && *dir == "" {
			continue
		}
		if len(args) > 0 && args[0] != "--version" {
			args = append([]string{"--home", *dir}, args...)
		}
		cases = append(cases, args)
	}
	if *floor != "" {
		bins = append(bins, *floor)
	}

	res := map[string][]sample{}
	key := func(bin string, c []string) string { return bin + "\x00" + strings.Join(c, " ") }
	for i := 0; i < *n; i++ {
		for _, c := range cases {
			for _, j := range rand.Perm(len(bins)) {
				if bins[j] == *floor && c[len(c)-1] != "--version" {
					continue
				}
				s, err := runOnce(bins[j], c, "")
				if err != nil {
					fmt.Fprintf(os.Stderr, "%s %s: %v\n", bins[j], strings.Join(c, " "), err)
					os.Exit(1)
				}
				res[key(bins[j], c)] = append(res[key(bins[j], c)], s)
			}
		}
	}
	fmt.Printf("%d runs each, medians (p10-p90 of wall)\n", *n)
	fmt.Printf("%-22s %-28s %22s %9s %8s\n", "binary", "command", "wall ms", "CPU ms", "faults")
	for _, c := range cases {
		for _, b := range bins {
			ss := res[key(b, c)]
			if len(ss) == 0 {
				continue
			}
			w := pick(ss, func(s sample) float64 { return s.wall })
			fmt.Printf("%-22s %-28s %7.1f (%5.1f-%5.1f) %9.1f %8.0f\n", filepath.Base(b), clip(strings.Join(c, " ")),
				w[len(w)/2], w[len(w)/10], w[len(w)*9/10],
				median(pick(ss, func(s sample) float64 { return s.cpu })),
				median(pick(ss, func(s sample) float64 { return s.faults })))
		}
	}

	// Exec to the end of the last package init, and the inits' own total.
	fmt.Println("\nGODEBUG=inittrace=1 --version: end of the last init, sum of init clock (ms), medians")
	for _, b := range bins {
		if b == *floor {
			continue
		}
		var ends, sums []float64
		for i := 0; i < *n; i++ {
			end, sum, err := inittrace(b)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", b, err)
				os.Exit(1)
			}
			ends, sums = append(ends, end), append(sums, sum)
		}
		fmt.Printf("%-22s end %5.1f  sum %5.1f\n", filepath.Base(b), median(ends), median(sums))
	}

	if *dir == "" {
		return
	}
	// The node's own time: a fresh connection per request, as a command's.
	sock := filepath.Join(*dir, "dms.sock")
	fmt.Println("\nthe node's own time, fresh connection each request (ms), median (p10-p90)")
	for _, path := range []string{"/v1/status", "/v1/jobs", "/v1/jobs?view=summary"} {
		var ws []float64
		size := 0
		for i := 0; i < *n; i++ {
			tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			}}
			start := time.Now()
			resp, err := (&http.Client{Transport: tr}).Get("http://dms" + path)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ws = append(ws, ms(time.Since(start)))
			size = len(b)
			tr.CloseIdleConnections()
		}
		slices.Sort(ws)
		fmt.Printf("GET %-22s %6.2f (%5.2f-%5.2f)  %d B\n", path, ws[len(ws)/2], ws[len(ws)/10], ws[len(ws)*9/10], size)
	}
}

func runOnce(bin string, args []string, godebug string) (sample, error) {
	cmd := exec.Command(bin, args...)
	if godebug != "" {
		cmd.Env = append(os.Environ(), "GODEBUG="+godebug)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%v\n%s", err, out.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return sample{
		wall:   ms(wall),
		cpu:    ms(cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()),
		faults: float64(ru.Minflt + ru.Majflt),
	}, nil
}

// inittrace runs bin --version with GODEBUG=inittrace=1 and returns the
// end of its last init ("@start ms, clock ms") and the sum of the clocks.
func inittrace(bin string) (end, sum float64, err error) {
	cmd := exec.Command(bin, "--version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errb
	if err := cmd.Run(); err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(&errb)
	for sc.Scan() {
		// init github.com/x/y @12.3 ms, 0.012 ms clock, 1234 bytes, 5 allocs
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[0] != "init" || !strings.HasPrefix(f[2], "@") {
			continue
		}
		at, err1 := strconv.ParseFloat(strings.TrimPrefix(f[2], "@"), 64)
		clock, err2 := strconv.ParseFloat(f[4], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		end = max(end, at+clock)
		sum += clock
	}
	return end, sum, nil
}

func pick(ss []sample, f func(sample) float64) []float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	return v
}

func median(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func clip(s string) string {
	if i := strings.Index(s, " "); strings.HasPrefix(s, "--home") && i > 0 {
		if j := strings.Index(s[i+1:], " "); j > 0 {
			s = s[i+1+j+1:]
		}
	}
	return s
}
