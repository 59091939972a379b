package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
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
		Name:  "submit",
		Usage: "run a job on the mesh: a WebAssembly module, a container image or a host command",
		UsageText: "dms job submit (--wasm FILE | --image IMAGE [--entrypoint PROGRAM] | --command PROGRAM | -f JOB.yaml)\n" +
			"   --cpu CORES --memory SIZE --duration D [--disk SIZE] [--gpu N [--gpu-model MODEL]] [--max-price P]\n" +
			"   [--env K=V]... [--input LOCAL[:GUEST]]... [--output-dir DIR] [--stdin FILE] [--queue-timeout D] [--retry-on-failure N]\n" +
			"   [--constraint C]... [--prefer C]... [--replicas K [--agree all|majority] [--replica-networks distinct|any]]\n" +
			"   [--json | --detach] [--] [ARGS...]",
		Description: "Sends the job's needs to the mesh, takes the best bid (by the node's ranking: price,\n" +
			"then what this node has seen the provider do before its claimed benchmark score, then\n" +
			"headroom; never a provider it avoids, see dms providers) and runs the job there. A job is\n" +
			"one of: a WebAssembly (WASI) module (--wasm), a container image the provider has (--image;\n" +
			"providers opt in with dms onboard --executors wasm,docker), or a command on the provider's\n" +
			"host (--command; only providers that opted into native jobs take it). -f reads the same\n" +
			"fields from a YAML file whose keys are the flags' names (_ may stand for -):\n" + wrapWords(jobFileKeyList()+".", 90) + "\n" +
			"env is a map or a list of K=V, inputs and args are lists; flags given as well win.\n\n" +
			"--input copies a file or directory into the job, read-only, at GUEST (default\n" +
			"/inputs/<its name>; a host command finds it under $DMS_INPUTS). What the job writes to\n" +
			"/outputs ($DMS_OUTPUTS for a host command) comes back to this node; --output-dir writes it\n" +
			"to DIR at once, dms job get later. Progress goes to stderr as it happens, the job's stdout\n" +
			"to stdout and its stderr to stderr as it runs. ARGS after the flags go to the job (write --\n" +
			"first when one starts with a dash).\n\n" +
			"--constraint limits the job to providers whose labels (dms onboard --label) meet it; a\n" +
			"provider that does not declines, saying which constraint it misses (dms job bids on it).\n" +
			"--prefer ranks the bids of providers that meet more preferences first.\n\n" +
			"When no provider can take the job (all busy, or none fits), it is queued: it waits, asking\n" +
			"again every few seconds, up to --queue-timeout, and dms job status says since when and why.\n" +
			"This node's jobs that compete for the same capacity start in the order they were submitted.\n" +
			"A provider that refuses the job or is lost while running it (silent, sending nothing within\n" +
			"seconds of accepting it, or past the job's duration plus a tenth plus a margin, whatever it\n" +
			"says) is replaced by another, and one that lost it is not asked again for this job; a job\n" +
			"that ran and exited non-zero has failed and is run again only with --retry-on-failure.\n\n" +
			"--replicas K runs the job on K distinct providers at once and delivers its result only when\n" +
			"their results agree (--agree all, or a majority); otherwise the job fails, listing each\n" +
			"provider's hashes. A WebAssembly job then runs with a clock and random seed fixed by the\n" +
			"request, so that honest replicas agree byte for byte; a container or host job is compared\n" +
			"as it runs, and must itself be deterministic.\n\n" +
			"Exit status: the job's own exit code when it ran and exited non-zero (as docker run does),\n" +
			"0 when it exited 0, 1 when dms failed (no provider, the job was stopped or cancelled), 2 for\n" +
			"a wrong command line, 130 on Ctrl-C, which cancels the job; --detach leaves it running and\n" +
			"prints its ID.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cpu", Usage: "cores the job needs, e.g. 1, 0.5 or 500m (millicores)"},
			&cli.StringFlag{Name: "memory", Usage: "memory the job needs, e.g. 256MiB or 1GiB; the sandbox or the engine holds the job to it"},
			&cli.StringFlag{Name: "duration", Usage: "how long the job may run before it is stopped, e.g. 30s, 10m or 2h"},
			&cli.StringFlag{Name: "wasm", Usage: "a WebAssembly module `FILE` to run (WASI preview 1, e.g. built with GOOS=wasip1 GOARCH=wasm), at most 16MiB"},
			&cli.StringFlag{Name: "image", Usage: "a container `IMAGE` to run; the provider must have it (docker load or docker build there)"},
			&cli.StringFlag{Name: "entrypoint", Usage: "the `PROGRAM` to run in the image instead of its entrypoint"},
			&cli.StringFlag{Name: "command", Usage: "a `PROGRAM` to run on the provider's host (native executor), with ARGS"},
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the job from a YAML `FILE` whose keys are the flags' names (listed above)"},
			&cli.StringFlag{Name: "disk", Usage: "disk the job needs, e.g. 1GiB (default: none)"},
			&cli.IntFlag{Name: "gpu", Usage: "how many GPUs the job needs (container jobs only)"},
			&cli.StringFlag{Name: "gpu-model", Usage: "the GPU model the job needs, as nvidia-smi names it or a word of it, e.g. H100"},
			&cli.StringFlag{Name: "max-price", Usage: "the most to pay for the whole job, in the providers' currency, e.g. 0.5 (default: no limit)"},
			&cli.GenericFlag{Name: "env", Usage: "an environment variable for the job, K=V (repeat for more)", Value: &envList{}},
			&cli.GenericFlag{Name: "input", Usage: "a file or directory to give the job, LOCAL or LOCAL:GUEST (repeat for more; at most 64MiB in all)", Value: &envList{}},
			&cli.StringFlag{Name: "output-dir", Usage: "write the files the job leaves in /outputs to `DIR` when it ends"},
			&cli.StringFlag{Name: "stdin", Usage: "a file to give the job as its standard input, at most 1MiB (- reads dms's own stdin)"},
			&cli.StringFlag{Name: "queue-timeout", Usage: "wait up to `D` for a provider when none can take the job, asking again every few seconds, e.g. 30m; 0 fails at once " +
				"(default 10m: long enough to outlast the jobs that fill a busy network, short enough that a job nobody can run does not hang for long)"},
			// Replication.
			&cli.IntFlag{Name: "replicas", Usage: fmt.Sprintf("run the job on `K` providers at once (1 to %d) and deliver its result only when they agree: "+
				"same stdout, exit code and /outputs files (default 1)", orchestrator.MaxReplicas)},
			&cli.StringFlag{Name: "agree", Usage: "with --replicas, how many must agree: all, or majority (more than half; the others are named as disagreeing) (default all)"},
			&cli.StringFlag{Name: "replica-networks", Usage: "with --replicas, distinct: each replica on another IP network (/24, /48) where the providers' addresses show one " +
				"(loopback addresses show none); any: distinct providers suffice (default distinct)"},
			&cli.IntFlag{Name: "retry-on-failure", Usage: "run the job again up to `N` times when it ran and failed (exited non-zero); a provider lost or refusing is retried elsewhere regardless (default 0)"},
			&cli.BoolFlag{Name: "json", Usage: "print the job's record as one JSON document when it ends, and no progress or output"},
			&cli.BoolFlag{Name: "detach", Usage: "print the job's ID once it is submitted and return; follow it with dms job status or dms job logs -f"},
			// Placement.
			&cli.GenericFlag{Name: "constraint", Usage: "run only on a provider whose labels meet `C`: KEY=VALUE, KEY!=VALUE, 'KEY in (A,B)', 'KEY notin (A,B)', 'KEY exists' (or KEY), '!KEY' (repeat for more; all must hold)", Value: &envList{}},
			&cli.GenericFlag{Name: "prefer", Usage: "rank first the bids of providers whose labels meet `C` (same forms as --constraint; repeat for more: more met ranks higher, before price)", Value: &envList{}},
		},
		Before: e.argsBefore(0, -1, "the job's arguments"),
		Action: e.jobSubmit,
	}
}

// submitRequest builds the job from the flags and the job file. Everything
// that can be checked here is, so that a mistake exits 2 naming its flag
// before the job reaches the network.
func (e *env) submitRequest(c *cli.Context) (api.SubmitJobRequest, string, error) {
	f := jobFlags{}
	if c.IsSet("file") {
		var err error
		if f, err = readJobFile(c.String("file")); err != nil {
			return api.SubmitJobRequest{}, "", err
		}
	}
	f.override(c)
	if c.Bool("json") && c.Bool("detach") {
		return api.SubmitJobRequest{}, "", usagef("--json and --detach do not go together: --detach prints the job ID, dms job status --json the record")
	}
	req, err := f.request()
	if err != nil {
		return req, "", err
	}
	req.Detach = c.Bool("detach")
	if req.Detach && f.OutputDir != "" {
		return req, "", usagef("--output-dir and --detach do not go together: fetch a detached job's outputs with dms job get ID --dir DIR")
	}
	if f.OutputDir != "" {
		if err := checkOutputDir(f.OutputDir); err != nil {
			return req, "", f.bad("output-dir", f.OutputDir, err)
		}
	}
	return req, f.OutputDir, nil
}

// checkOutputDir refuses, before the job runs, a directory the outputs
// could not be written to: the files are written next to nothing, so that
// what is there after is the job's alone.
func checkOutputDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // created when the outputs come
	case err != nil:
		return openError(err)
	case !st.IsDir():
		return errors.New("is a file; want a new or empty directory")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return openError(err)
	}
	if len(ents) > 0 {
		holds := ents[0].Name()
		if len(ents) > 1 {
			holds += fmt.Sprintf(" and %d more", len(ents)-1)
		}
		return fmt.Errorf("is not empty (it holds %s); want a new or empty directory (for a job that already ran, dms job get ID --dir NEW writes its files again)", holds)
	}
	return nil
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

func (e *env) jobSubmit(c *cli.Context) error {
	req, outputDir, err := e.submitRequest(c)
	if err != nil {
		return err
	}
	return e.withClient(c, func(cl *api.Client) error {
		asJSON := c.Bool("json")
		start := time.Now()
		pp := &progressPrinter{w: e.stderr, start: start}
		live := &liveOutput{stdout: e.stdout, stderr: e.stderr}
		if !asJSON && !req.Detach {
			what := req.Job.Image
			if req.Job.Executor == orchestrator.ExecutorWasm {
				what = capability.FormatBytes(uint64(len(req.Job.Module))) + " module"
			} else if req.Job.Executor == orchestrator.ExecutorNative {
				what = "host command " + req.Job.Command[0]
			}
			if len(req.Inputs) > 0 {
				what += ", " + capability.FormatBytes(uint64(len(req.Inputs))) + " of inputs"
			}
			pp.line(start, fmt.Sprintf("submitting job %s: %s, up to %s, %s", req.Job.ID, describeNeeds(req.Job.Requirements),
				capability.FormatDuration(req.Job.Duration.Std()), what))
		}
		rec, err := cl.SubmitJob(c.Context, req, func(p orchestrator.Progress) {
			if asJSON {
				return
			}
			if p.Kind == orchestrator.ProgressEvent && p.Event != nil && (p.Event.Kind == orchestrator.EventStdout || p.Event.Kind == orchestrator.EventStderr) {
				live.write(*p.Event)
				return
			}
			if p.Kind == orchestrator.ProgressRetry {
				live.restart()
			}
			pp.print(p)
		})
		if c.Context.Err() != nil {
			return &exitError{code: exitInterrupted, msg: fmt.Sprintf("interrupted: job %s is cancelled on its provider (--detach leaves a job running)", req.Job.ID)}
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
			fmt.Fprintf(e.stderr, "Job submitted; follow it with: %s job logs -f %s\n", e.dmsCommand(c), shortJobID(rec.ID))
			return nil
		case asJSON:
			if perr := printJSON(e.stdout, rec); perr != nil {
				return perr
			}
		default:
			live.finish(rec.Result)
			pp.end(rec)
			e.printTruncation(rec.Result)
		}
		if outputDir != "" && rec.Outputs != nil {
			if gerr := e.getOutputs(c, cl, rec, outputDir, asJSON); gerr != nil {
				return fmt.Errorf("%w; the files are kept on this node: %s job get %s --dir NEW writes them to a new directory", gerr, e.dmsCommand(c), shortJobID(rec.ID))
			}
		}
		return jobOutcome(rec, err)
	})
}

// dmsCommand is "dms" with the global flags the user gave that say which
// node to talk to, for the commands messages suggest.
func (e *env) dmsCommand(c *cli.Context) string {
	cmd := "dms"
	for _, name := range []string{"home", "remote", "token-file"} {
		if v, ok := global(c, name); ok {
			cmd += " --" + name + " " + home.ShellQuote(v)
		}
	}
	return cmd
}

// liveOutput prints a job's output as its chunks arrive. Each chunk says
// where it starts in its stream: a chunk that repeats what was printed is
// skipped, one after a gap (the stream dropped a line under load) stops
// the live printing of that stream, and finish prints from the result
// whatever was not printed yet. So the output is whole, in order, once.
type liveOutput struct {
	stdout, stderr io.Writer
	outAt, errAt   int64
	outGap, errGap bool
}

func (l *liveOutput) write(e orchestrator.Event) {
	w, at, gap := l.stdout, &l.outAt, &l.outGap
	if e.Kind == orchestrator.EventStderr {
		w, at, gap = l.stderr, &l.errAt, &l.errGap
	}
	end := e.Offset + int64(len(e.Data))
	switch {
	case *gap || end <= *at:
	case e.Offset > *at:
		*gap = true
	default:
		_, _ = w.Write(e.Data[*at-e.Offset:])
		*at = end
	}
}

// restart: the job runs again elsewhere, and its output starts over.
func (l *liveOutput) restart() {
	if l.outAt > 0 || l.errAt > 0 {
		fmt.Fprintln(l.stderr, "dms: the job is submitted again; its output starts over")
	}
	*l = liveOutput{stdout: l.stdout, stderr: l.stderr}
}

func (l *liveOutput) finish(r *orchestrator.Result) {
	if r == nil {
		return
	}
	if l.outAt < int64(len(r.Stdout)) {
		_, _ = l.stdout.Write(r.Stdout[l.outAt:])
	}
	if l.errAt < int64(len(r.Stderr)) {
		_, _ = l.stderr.Write(r.Stderr[l.errAt:])
	}
}

// jobOutcome is nil for a job that completed with exit code 0, and says
// why otherwise. A job that ran and exited non-zero makes dms exit with
// its code.
func jobOutcome(rec node.JobRecord, callErr error) error {
	id := shortJobID(rec.ID)
	r := rec.Result
	switch {
	case rec.State == node.JobCompleted && r != nil && r.ExitCode == 0:
		return nil
	case rec.State == node.JobCompleted && r != nil:
		return &exitError{code: r.ExitCode, msg: fmt.Sprintf("job %s exited with code %d", id, r.ExitCode)}
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

// printTruncation says where a stream was cut, at the limit it was held to.
func (e *env) printTruncation(r *orchestrator.Result) {
	if r == nil {
		return
	}
	limit := r.OutputLimit
	if limit == 0 {
		limit = orchestrator.MaxResultOutput
	}
	if r.StdoutTruncated {
		fmt.Fprintf(e.stderr, "dms: the job's stdout was cut at %s\n", capability.FormatBytes(uint64(limit)))
	}
	if r.StderrTruncated {
		fmt.Fprintf(e.stderr, "dms: the job's stderr was cut at %s\n", capability.FormatBytes(uint64(limit)))
	}
}
