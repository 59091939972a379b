package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/urfave/cli/v2"
)

// envList is a repeatable K=V flag. It does not split on commas, as
// urfave/cli's string slices do: an environment value may hold one.
type envList struct{ vals []string }

func (l *envList) Set(v string) error { l.vals = append(l.vals, v); return nil }
func (l *envList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.vals, " ")
}

func (e *env) jobSubmitCommand() *cli.Command {
	return &cli.Command{
		Name:      "submit",
		Usage:     "run a WebAssembly job on the mesh and print its output",
		UsageText: "dms job submit --cpu CORES --memory SIZE --duration D --wasm FILE [--disk SIZE] [--max-price P]\n   [--env K=V]... [--stdin FILE] [--json | --detach] [--] [ARGS...]",
		Description: "Sends the job's needs to the mesh, takes the best bid (by the node's ranking: price,\n" +
			"then benchmark score, then headroom) and runs the job there. Progress goes to stderr as it\n" +
			"happens, with the time since submitting; then the job's stdout goes to stdout and its\n" +
			"stderr to stderr. ARGS after the flags go to the job (write -- first when one starts with\n" +
			"a dash). Exit status: 0 when the job completed with exit code 0, 1 when it failed, exited\n" +
			"non-zero, found no provider or was cancelled, 2 for a wrong command line. Ctrl-C cancels\n" +
			"the job; --detach leaves it running and prints its ID.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cpu", Usage: "cores the job needs, e.g. 1, 0.5 or 500m (millicores)"},
			&cli.StringFlag{Name: "memory", Usage: "memory the job needs, e.g. 256MiB or 1GiB; the sandbox holds the job to it"},
			&cli.StringFlag{Name: "duration", Usage: "how long the job may run before it is stopped, e.g. 30s, 10m or 2h"},
			&cli.StringFlag{Name: "wasm", Usage: "the WebAssembly module to run (WASI preview 1, e.g. built with GOOS=wasip1 GOARCH=wasm), at most 16MiB"},
			&cli.StringFlag{Name: "disk", Usage: "disk the job needs, e.g. 1GiB (default: none)"},
			&cli.StringFlag{Name: "max-price", Usage: "the most to pay for the whole job, in the providers' currency, e.g. 0.5 (default: no limit)"},
			&cli.GenericFlag{Name: "env", Usage: "an environment variable for the job, K=V (repeat for more)", Value: &envList{}},
			&cli.StringFlag{Name: "stdin", Usage: "a file to give the job as its standard input, at most 1MiB (- reads dms's own stdin)"},
			&cli.BoolFlag{Name: "json", Usage: "print the job's record as one JSON document when it ends, and no progress"},
			&cli.BoolFlag{Name: "detach", Usage: "print the job's ID once it is submitted and return; follow it with dms job status"},
		},
		Before: e.argsBefore(0, -1, "the job's arguments"),
		Action: e.jobSubmit,
	}
}

// submitRequest builds the job from the flags. Everything that can be
// checked here is, so that a mistake exits 2 naming its flag before the
// job reaches the network.
func (e *env) submitRequest(c *cli.Context) (api.SubmitJobRequest, error) {
	var missing []string
	for _, f := range []string{"wasm", "cpu", "memory", "duration"} {
		if strings.TrimSpace(c.String(f)) == "" {
			missing = append(missing, "--"+f)
		}
	}
	if len(missing) > 0 {
		return api.SubmitJobRequest{}, usagef("missing %s: a job needs a module (--wasm) and what it needs of a provider (--cpu, --memory, --duration), e.g. dms job submit --cpu 0.5 --memory 256MiB --duration 1m --wasm job.wasm", strings.Join(missing, ", "))
	}
	if c.Bool("json") && c.Bool("detach") {
		return api.SubmitJobRequest{}, usagef("--json and --detach do not go together: --detach prints the job ID, dms job status --json the record")
	}
	job := orchestrator.JobSpec{ID: orchestrator.NewJobID(), Executor: orchestrator.ExecutorWasm, Args: c.Args().Slice()}
	var err error
	if job.Requirements.CPU.MilliCores, err = positive(c, "cpu", capability.ParseCPU); err != nil {
		return api.SubmitJobRequest{}, err
	}
	if job.Requirements.Memory, err = positive(c, "memory", capability.ParseBytes); err != nil {
		return api.SubmitJobRequest{}, err
	}
	if c.IsSet("disk") {
		if job.Requirements.Disk, err = capability.ParseBytes(c.String("disk")); err != nil {
			return api.SubmitJobRequest{}, badValue("disk", c.String("disk"), err)
		}
	}
	if job.Duration, err = capability.ParseDuration(c.String("duration")); err != nil {
		return api.SubmitJobRequest{}, badValue("duration", c.String("duration"), err)
	}
	req := api.SubmitJobRequest{Detach: c.Bool("detach")}
	if c.IsSet("max-price") {
		v := c.String("max-price")
		p, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(p >= 0) || p > 1e15 {
			return req, badValue("max-price", v, errors.New("want a number >= 0, e.g. 0.5"))
		}
		req.MaxPrice = &p
	}
	if env := c.Generic("env").(*envList); len(env.vals) > 0 {
		job.Env = map[string]string{}
		for _, kv := range env.vals {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.ContainsAny(k, "\x00 ") || strings.Contains(v, "\x00") {
				return req, badValue("env", kv, errors.New("want NAME=VALUE, e.g. --env GREETING=hi"))
			}
			job.Env[k] = v
		}
	}
	n, size := len(job.Args)+len(job.Env), 0
	for _, a := range job.Args {
		size += len(a)
	}
	for k, v := range job.Env {
		size += len(k) + len(v)
	}
	if n > orchestrator.MaxArgs || size > orchestrator.MaxArgBytes {
		return req, usagef("the job's arguments and --env are %d values of %s: a job takes at most %d values of %s", n,
			capability.FormatBytes(uint64(size)), orchestrator.MaxArgs, capability.FormatBytes(orchestrator.MaxArgBytes))
	}
	if c.IsSet("stdin") {
		if job.Stdin, err = readLimited("stdin", c.String("stdin"), orchestrator.MaxStdin); err != nil {
			return req, err
		}
	}
	if job.Module, err = readModule(c.String("wasm")); err != nil {
		return req, err
	}
	req.Job = job
	return req, nil
}

// positive parses a required amount that must be more than zero.
func positive(c *cli.Context, flag string, parse func(string) (uint64, error)) (uint64, error) {
	v := c.String(flag)
	n, err := parse(v)
	if err != nil {
		return 0, badValue(flag, v, err)
	}
	if n == 0 {
		return 0, badValue(flag, v, errors.New("want more than zero"))
	}
	return n, nil
}

// readLimited reads a file named by a flag, at most limit bytes; "-" is
// dms's own standard input.
func readLimited(flag, path string, limit int) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, badValue(flag, path, openError(err))
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return nil, badValue(flag, path, errors.New("is a directory, want a file"))
		} else if err == nil && st.Size() > int64(limit) {
			return nil, badValue(flag, path, fmt.Errorf("%s is over the limit of %s", capability.FormatBytes(uint64(st.Size())), capability.FormatBytes(uint64(limit))))
		}
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, badValue(flag, path, err)
	}
	if len(data) > limit {
		return nil, badValue(flag, path, fmt.Errorf("more than the limit of %s", capability.FormatBytes(uint64(limit))))
	}
	return data, nil
}

func openError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("no such file")
	case errors.Is(err, fs.ErrPermission):
		return errors.New("permission denied")
	}
	return err
}

// wasmMagic starts every WebAssembly binary; wasmVersion1 follows it in a
// core module, the only kind the sandbox runs.
var (
	wasmMagic    = []byte("\x00asm")
	wasmVersion1 = []byte{1, 0, 0, 0}
)

// readModule reads --wasm and checks that it is a core WebAssembly module
// within the protocol's size limit, so a wrong file is refused here rather
// than by a provider after bidding.
func readModule(path string) ([]byte, error) {
	data, err := readLimited("wasm", path, orchestrator.MaxModuleSize)
	if err != nil {
		return nil, err
	}
	switch {
	case len(data) < 8 || !bytes.Equal(data[:4], wasmMagic):
		return nil, badValue("wasm", path, errors.New(`not a WebAssembly module: it does not start with \0asm (build one with GOOS=wasip1 GOARCH=wasm go build -o job.wasm)`))
	case !bytes.Equal(data[4:8], wasmVersion1):
		return nil, badValue("wasm", path, fmt.Errorf("WebAssembly binary version %x: want a core module (version 1); components are not supported", data[4:8]))
	}
	return data, nil
}

func (e *env) jobSubmit(c *cli.Context) error {
	req, err := e.submitRequest(c)
	if err != nil {
		return err
	}
	return e.withClient(c, func(cl *api.Client) error {
		asJSON := c.Bool("json")
		start := time.Now()
		pp := &progressPrinter{w: e.stderr, start: start}
		if !asJSON && !req.Detach {
			pp.line(start, fmt.Sprintf("submitting job %s: %s, up to %s, %s module", req.Job.ID, describeNeeds(req.Job.Requirements),
				capability.FormatDuration(req.Job.Duration), capability.FormatBytes(uint64(len(req.Job.Module)))))
		}
		rec, err := cl.SubmitJob(c.Context, req, func(p orchestrator.Progress) {
			if !asJSON {
				pp.print(p)
			}
		})
		if c.Context.Err() != nil {
			return fmt.Errorf("interrupted: job %s is cancelled on its provider (--detach leaves a job running)", req.Job.ID)
		}
		if rec.ID == "" {
			return err // the node refused the job, or the call failed
		}
		switch {
		case req.Detach:
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, rec.ID)
			fmt.Fprintf(e.stderr, "Job submitted; follow it with: dms job status %s\n", rec.ID)
			return nil
		case asJSON:
			if perr := printJSON(e.stdout, rec); perr != nil {
				return perr
			}
		default:
			pp.end(rec)
			e.printOutput(rec.Result)
		}
		return jobOutcome(rec, err)
	})
}

// jobOutcome is nil for a job that completed with exit code 0, and says
// why otherwise.
func jobOutcome(rec node.JobRecord, callErr error) error {
	id := shortJobID(rec.ID)
	r := rec.Result
	switch {
	case rec.State == node.JobCompleted && r != nil && r.ExitCode == 0:
		return nil
	case rec.State == node.JobCompleted && r != nil:
		return fmt.Errorf("job %s exited with code %d", id, r.ExitCode)
	case rec.State == node.JobCancelled:
		return fmt.Errorf("job %s was cancelled", id)
	case r != nil && r.Reason != "":
		return fmt.Errorf("job %s failed: %s", id, r.Reason)
	case rec.Error != "":
		return fmt.Errorf("job %s failed: %s", id, strings.TrimPrefix(rec.Error, "job "+rec.ID+": "))
	case callErr != nil:
		return callErr
	case !rec.Final():
		return fmt.Errorf("job %s is still %s", id, rec.State)
	}
	return fmt.Errorf("job %s ended %s", id, rec.State)
}

// printOutput writes a job's stdout to stdout and its stderr to stderr.
func (e *env) printOutput(r *orchestrator.Result) {
	if r == nil {
		return
	}
	_, _ = e.stdout.Write(r.Stdout)
	_, _ = e.stderr.Write(r.Stderr)
	if r.StdoutTruncated {
		fmt.Fprintf(e.stderr, "dms: the job's stdout was cut at %s\n", capability.FormatBytes(orchestrator.MaxResultOutput))
	}
	if r.StderrTruncated {
		fmt.Fprintf(e.stderr, "dms: the job's stderr was cut at %s\n", capability.FormatBytes(orchestrator.MaxResultOutput))
	}
}
