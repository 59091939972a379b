package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

// jobCommands: job (submit, list, status, logs, cancel, bids), allocations
// and demo.
func (e *env) jobCommands() []*cli.Command {
	return []*cli.Command{e.jobCommand(), e.allocationsCommand(), e.demoCommand()}
}

func (e *env) jobCommand() *cli.Command {
	subs := []*cli.Command{
		e.jobSubmitCommand(), e.jobListCommand(), e.jobIDCommand("status", "show a job: state, provider, result and each step", e.jobStatus),
		e.jobIDCommand("logs", "print a job's output: its stdout to stdout, its stderr to stderr", e.jobLogs),
		e.jobIDCommand("cancel", "stop a job: a running one is stopped on its provider, one still bidding is dropped", e.jobCancel),
		e.jobIDCommand("bids", "show the bids for a job: those received as its requester, those placed as a provider", e.jobBids),
	}
	return e.commandGroup("job", "submit jobs to the mesh from the node running on --home, and follow them",
		"Jobs are WebAssembly (WASI) modules. The node running on --home (dms run) puts each\n"+
			"job's needs to the mesh, takes the best bid and follows the job to its end; these\n"+
			"commands talk to that node over its control socket. A job ID may be shortened to any\n"+
			"unique prefix of 4 characters or more. An ID this node has no job for exits 2.",
		subs)
}

// commandGroup is a command made of subcommands (dms job, dms testnet): it
// gives each subcommand the global flags and usage-error handling that the
// app gives top-level commands, and answers an unknown subcommand with the
// list of known ones (exit 2).
func (e *env) commandGroup(name, usage, description string, subs []*cli.Command) *cli.Command {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.Name
		s.Flags = append(s.Flags, globalFlags(false)...)
		s.OnUsageError = e.onUsage
		if s.Before == nil {
			s.Before = e.before
		}
		s.HideHelpCommand = true
	}
	return &cli.Command{
		Name: name, Usage: usage, Description: description, Subcommands: subs,
		// The group's own check: the subcommand and its arguments follow,
		// so the app's "flags only" check must not run here.
		Before: func(c *cli.Context) error {
			e.cmdPath = c.Command.HelpName
			return nil
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown %s command %q; %s commands: %s", name, c.Args().First(), name, strings.Join(names, ", "))
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

// onUsage turns urfave/cli's parse errors into usage errors (exit 2) for
// the commands the app does not set up itself.
func (e *env) onUsage(c *cli.Context, err error, _ bool) error {
	e.cmdPath = c.Command.HelpName
	return &usageError{msg: rewriteFlagError(err.Error()), err: err}
}

// argsBefore is the Before of a job command: it applies flags written
// after the arguments (the flag package stops at the first argument; users
// write dms job status ID --json), checks the number of arguments and sets
// the log level.
func (e *env) argsBefore(minArgs, maxArgs int, what string) cli.BeforeFunc {
	return func(c *cli.Context) error {
		e.cmdPath = c.Command.HelpName
		n := c.NArg()
		if maxArgs >= 0 {
			args, err := lateFlags(c)
			if err != nil {
				return err
			}
			n = len(args)
			if n > maxArgs {
				return usagef("unexpected argument %q: %s takes %s", args[maxArgs], e.cmdPath, what)
			}
		}
		if n < minArgs {
			return usagef("%s needs %s", e.cmdPath, what)
		}
		if v, ok := global(c, "log-level"); ok {
			l, err := node.ParseLogLevel(v)
			if err != nil {
				return badValue("log-level", v, err)
			}
			e.level.Set(l)
		}
		return nil
	}
}

// lateFlags sets the command's flags found among its arguments and
// returns the arguments left.
func lateFlags(c *cli.Context) ([]string, error) {
	args := c.Args().Slice()
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-" || !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var flag cli.Flag
		for _, f := range c.Command.Flags {
			for _, n := range f.Names() {
				if n == name {
					flag = f
				}
			}
		}
		if flag == nil {
			return nil, usagef("unknown flag --%s", name)
		}
		if _, isBool := flag.(*cli.BoolFlag); isBool && !hasValue {
			value = "true"
		} else if !hasValue {
			if i+1 >= len(args) {
				return nil, usagef("flag --%s needs a value", name)
			}
			i++
			value = args[i]
		}
		if err := c.Set(flag.Names()[0], value); err != nil {
			return nil, badValue(name, value, err)
		}
	}
	return rest, nil
}

// withNode calls the node running on --home.
func (e *env) withNode(c *cli.Context, f func(*controlClient) error) error {
	home, _ := global(c, "home")
	cl, err := dialControl(c.Context, home)
	if err != nil {
		return err
	}
	defer cl.Close()
	return f(cl)
}

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
func (e *env) submitRequest(c *cli.Context) (SubmitJobRequest, error) {
	var missing []string
	for _, f := range []string{"wasm", "cpu", "memory", "duration"} {
		if strings.TrimSpace(c.String(f)) == "" {
			missing = append(missing, "--"+f)
		}
	}
	if len(missing) > 0 {
		return SubmitJobRequest{}, usagef("missing %s: a job needs a module (--wasm) and what it needs of a provider (--cpu, --memory, --duration), e.g. dms job submit --cpu 0.5 --memory 256MiB --duration 1m --wasm job.wasm", strings.Join(missing, ", "))
	}
	if c.Bool("json") && c.Bool("detach") {
		return SubmitJobRequest{}, usagef("--json and --detach do not go together: --detach prints the job ID, dms job status --json the record")
	}
	job := orchestrator.JobSpec{ID: orchestrator.NewJobID(), Executor: orchestrator.ExecutorWasm, Args: c.Args().Slice()}
	var err error
	if job.Requirements.CPU.MilliCores, err = positive(c, "cpu", capability.ParseCPU); err != nil {
		return SubmitJobRequest{}, err
	}
	if job.Requirements.Memory, err = positive(c, "memory", capability.ParseBytes); err != nil {
		return SubmitJobRequest{}, err
	}
	if c.IsSet("disk") {
		if job.Requirements.Disk, err = capability.ParseBytes(c.String("disk")); err != nil {
			return SubmitJobRequest{}, badValue("disk", c.String("disk"), err)
		}
	}
	if job.Duration, err = capability.ParseDuration(c.String("duration")); err != nil {
		return SubmitJobRequest{}, badValue("duration", c.String("duration"), err)
	}
	req := SubmitJobRequest{Detach: c.Bool("detach")}
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
	return e.withNode(c, func(cl *controlClient) error {
		asJSON := c.Bool("json")
		start := time.Now()
		pp := &progressPrinter{w: e.stderr, start: start}
		if !asJSON && !req.Detach {
			pp.line(start, fmt.Sprintf("submitting job %s: %s, up to %s, %s module", req.Job.ID, describeNeeds(req.Job.Requirements),
				capability.FormatDuration(req.Job.Duration), capability.FormatBytes(uint64(len(req.Job.Module)))))
		}
		var rec node.JobRecord
		err := cl.stream(c.Context, pathJobSubmit, req, func(raw json.RawMessage) {
			var p orchestrator.Progress
			if !asJSON && json.Unmarshal(raw, &p) == nil {
				pp.print(p)
			}
		}, &rec)
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

// progressPrinter writes one line per step of a submission, each with the
// time since start.
type progressPrinter struct {
	w     io.Writer
	start time.Time
	// The bidding round under way: its attempt and the bids it drew.
	published bool
	attempt   int
	bids      int
	// name shows a peer; nil shows its short ID.
	name func(peer.ID) string
}

func (pp *progressPrinter) peer(p peer.ID) string {
	if pp.name != nil {
		return pp.name(p)
	}
	return shortPeer(p)
}

func (pp *progressPrinter) line(at time.Time, text string) {
	fmt.Fprintf(pp.w, "%8s  %s\n", formatElapsed(max(at.Sub(pp.start), 0)), text)
}

func (pp *progressPrinter) print(p orchestrator.Progress) {
	var text string
	switch p.Kind {
	case orchestrator.ProgressPublished:
		if pp.published && p.Attempt == pp.attempt {
			// The requester widens a request that drew too few bids.
			text = "bid request sent again"
			if p.Message != "" {
				text += ": " + p.Message
			}
			break
		}
		pp.published, pp.attempt, pp.bids = true, p.Attempt, 0
		text = "bid request sent to the mesh"
		if p.Attempt > 0 {
			text += fmt.Sprintf(" (attempt %d)", p.Attempt+1)
		}
	case orchestrator.ProgressBid:
		if p.Bid == nil {
			return
		}
		pp.bids++
		text = fmt.Sprintf("bid from %s: price %s, score %s", pp.peer(p.Bid.Provider), formatPrice(p.Bid.Price, p.Bid.Currency), formatScore(p.Bid.Score))
	case orchestrator.ProgressClosed:
		text = fmt.Sprintf("bidding closed with %d %s", pp.bids, plural(pp.bids, "bid", "bids"))
	case orchestrator.ProgressRefused:
		text = fmt.Sprintf("%s refused the job: %s", pp.peer(p.Provider), p.Message)
	case orchestrator.ProgressAccepted:
		text = fmt.Sprintf("winner %s", pp.peer(p.Provider))
		if p.Bid != nil {
			text += fmt.Sprintf(": price %s, score %s;", formatPrice(p.Bid.Price, p.Bid.Currency), formatScore(p.Bid.Score))
		}
		text += " allocation " + p.AllocationID
	case orchestrator.ProgressRetry:
		text = "submitting again: " + p.Message
	case orchestrator.ProgressEvent:
		ev := p.Event
		if ev == nil || ev.Kind != orchestrator.EventState || ev.State != orchestrator.StateRunning {
			return // the end is printed from the record
		}
		text = "running on " + pp.peer(p.Provider)
		if ev.Message != "" {
			text = "running again: " + ev.Message
		}
	default:
		return
	}
	pp.line(p.Time, text)
}

// end prints how a job ended.
func (pp *progressPrinter) end(rec node.JobRecord) {
	at := rec.Ended
	if at.IsZero() {
		at = time.Now()
	}
	r := rec.Result
	switch {
	case r != nil && rec.State == node.JobCompleted:
		pp.line(at, fmt.Sprintf("completed: exit code %d, ran %s", r.ExitCode, formatElapsed(r.Duration)))
	case r != nil && rec.State == node.JobCancelled:
		pp.line(at, fmt.Sprintf("cancelled after running %s", formatElapsed(r.Duration)))
	case r != nil:
		text := fmt.Sprintf("%s: exit code %d, ran %s", rec.State, r.ExitCode, formatElapsed(r.Duration))
		if r.Reason != "" {
			text += ": " + r.Reason
		}
		pp.line(at, text)
	case rec.Error != "":
		// The reason's head ("no acceptable bids"); the error says the rest.
		why, _, _ := strings.Cut(strings.TrimPrefix(rec.Error, "job "+rec.ID+": "), ": ")
		pp.line(at, rec.State+": "+why)
	default:
		pp.line(at, rec.State)
	}
}

func (e *env) jobListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		UsageText: "dms job list [--json]",
		Usage:     "list the jobs submitted from this node, oldest first",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the list as JSON"}},
		Before:    e.argsBefore(0, 0, "no arguments"),
		Action: func(c *cli.Context) error {
			return e.withNode(c, func(cl *controlClient) error {
				var resp JobListResponse
				if err := cl.call(c.Context, pathJobList, struct{}{}, &resp); err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(e.stdout, resp)
				}
				return e.printJobList(resp.Jobs)
			})
		},
	}
}

func (e *env) printJobList(jobs []node.JobRecord) error {
	if len(jobs) == 0 {
		fmt.Fprintln(e.stdout, "No jobs submitted from this node yet (dms job submit, or try dms demo).")
		return nil
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tEXIT\tPROVIDER\tSUBMITTED\tTOOK\tNOTE")
	for _, j := range jobs {
		exit, provider := "-", "-"
		if j.Result != nil && j.State != node.JobCancelled {
			exit = strconv.Itoa(j.Result.ExitCode)
		}
		if j.Provider != "" {
			provider = shortPeer(j.Provider)
		}
		took := "-"
		if !j.Ended.IsZero() {
			took = formatElapsed(j.Ended.Sub(j.Submitted))
		} else if !j.Final() {
			took = formatElapsed(time.Since(j.Submitted)) + " so far"
		}
		note := j.Error
		if note == "" && j.Result != nil {
			note = j.Result.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", shortJobID(j.ID), j.State, exit, provider, formatWhen(j.Submitted), took,
			clip(strings.TrimPrefix(note, "job "+j.ID+": "), 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(e.stdout, buf.Bytes())
}

// jobIDCommand is a command on one job, named by its ID.
func (e *env) jobIDCommand(name, usage string, action func(*cli.Context, *controlClient, string) error) *cli.Command {
	cmd := &cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: fmt.Sprintf("dms job %s [--json] ID", name),
		Before:    e.argsBefore(1, 1, "one job ID (dms job list shows them)"),
		Action: func(c *cli.Context) error {
			id := c.Args().First()
			return e.withNode(c, func(cl *controlClient) error { return action(c, cl, id) })
		},
	}
	switch name {
	case "status", "bids", "cancel":
		cmd.Flags = []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the reply as JSON"}}
	case "logs":
		cmd.UsageText = "dms job logs ID"
	}
	return cmd
}

func (e *env) jobStatus(c *cli.Context, cl *controlClient, id string) error {
	var rec node.JobRecord
	if err := cl.call(c.Context, pathJobStatus, JobRequest{ID: id}, &rec); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(e.stdout, rec)
	}
	w := e.stdout
	fmt.Fprintf(w, "job:        %s\n", rec.ID)
	fmt.Fprintf(w, "state:      %s\n", rec.State)
	fmt.Fprintf(w, "submitted:  %s\n", rec.Submitted.Local().Format("2006-01-02 15:04:05"))
	if !rec.Ended.IsZero() {
		fmt.Fprintf(w, "ended:      %s (%s after submitting)\n", rec.Ended.Local().Format("2006-01-02 15:04:05"), formatElapsed(rec.Ended.Sub(rec.Submitted)))
	}
	fmt.Fprintf(w, "needs:      %s, up to %s (%s)\n", describeNeeds(rec.Requirements), capability.FormatDuration(rec.Duration), rec.Executor)
	if len(rec.Args) > 0 {
		fmt.Fprintf(w, "args:       %s\n", strings.Join(quoteArgs(rec.Args), " "))
	}
	if rec.Provider != "" {
		fmt.Fprintf(w, "provider:   %s\n", rec.Provider)
		fmt.Fprintf(w, "allocation: %s\n", rec.AllocationID)
	}
	fmt.Fprintf(w, "bids:       %d (dms job bids %s)\n", len(rec.Bids), shortJobID(rec.ID))
	if r := rec.Result; r != nil {
		exit := fmt.Sprintf("exit code %d, ", r.ExitCode)
		if r.State == orchestrator.StateCancelled {
			exit = "" // stopped from outside: the code says nothing of the job
		}
		fmt.Fprintf(w, "result:     %s, %sran %s, %d %s\n", r.State, exit, formatElapsed(r.Duration), r.Restarts, plural(r.Restarts, "restart", "restarts"))
		if r.Reason != "" && r.Reason != string(r.State) {
			fmt.Fprintf(w, "reason:     %s\n", r.Reason)
		}
		fmt.Fprintf(w, "output:     %s stdout, %s stderr (dms job logs %s)\n", capability.FormatBytes(uint64(len(r.Stdout))), capability.FormatBytes(uint64(len(r.Stderr))), shortJobID(rec.ID))
	}
	if rec.Error != "" {
		fmt.Fprintf(w, "error:      %s\n", rec.Error)
	}
	if len(rec.Progress) > 0 {
		fmt.Fprintln(w, "\nsteps:")
		pp := &progressPrinter{w: w, start: rec.Submitted}
		for _, p := range rec.Progress {
			pp.print(p)
		}
		if rec.Final() {
			pp.end(rec)
		}
	}
	return nil
}

func (e *env) jobLogs(c *cli.Context, cl *controlClient, id string) error {
	var resp JobLogsResponse
	if err := cl.call(c.Context, pathJobLogs, JobRequest{ID: id}, &resp); err != nil {
		return err
	}
	if !resp.HasResult {
		if resp.State == node.JobBidding || resp.State == node.JobRunning {
			return fmt.Errorf("job %s is still %s: its output comes back when it ends (dms job status %s)", shortJobID(resp.ID), resp.State, shortJobID(resp.ID))
		}
		msg := fmt.Sprintf("job %s has no output: it %s before it ran", shortJobID(resp.ID), resp.State)
		if resp.Error != "" {
			msg += ": " + strings.TrimPrefix(resp.Error, "job "+resp.ID+": ")
		}
		return errors.New(msg)
	}
	e.printOutput(&orchestrator.Result{Stdout: resp.Stdout, Stderr: resp.Stderr, StdoutTruncated: resp.StdoutTruncated, StderrTruncated: resp.StderrTruncated})
	return nil
}

func (e *env) jobCancel(c *cli.Context, cl *controlClient, id string) error {
	var rec node.JobRecord
	if err := cl.call(c.Context, pathJobCancel, JobRequest{ID: id}, &rec); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(e.stdout, rec)
	}
	if rec.Final() {
		fmt.Fprintf(e.stdout, "Job %s %s.\n", rec.ID, rec.State)
	} else {
		fmt.Fprintf(e.stdout, "Asked to cancel job %s; it is still %s (dms job status %s).\n", rec.ID, rec.State, shortJobID(rec.ID))
	}
	return nil
}

func (e *env) jobBids(c *cli.Context, cl *controlClient, id string) error {
	var resp JobBidsResponse
	if err := cl.call(c.Context, pathJobBids, JobRequest{ID: id}, &resp); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(e.stdout, resp)
	}
	w := e.stdout
	if resp.Requester {
		if len(resp.Received) == 0 {
			fmt.Fprintf(w, "Job %s received no bids.\n", resp.JobID)
		} else {
			fmt.Fprintf(w, "Bids received for job %s (* won):\n", resp.JobID)
			if err := printBids(w, resp.Received, resp.Winner, shortPeer); err != nil {
				return err
			}
		}
	}
	if len(resp.Placed) > 0 {
		if resp.Requester {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "Bids this node placed for job %s as a provider:\n", resp.JobID)
		return printBids(w, resp.Placed, "", shortPeer)
	}
	return nil
}

// printBids prints bids as a table, marking the winner.
func printBids(w io.Writer, bids []orchestrator.Bid, winner peer.ID, name func(peer.ID) string) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tPROVIDER\tPRICE\tSCORE\tOFFERED CPU\tOFFERED MEMORY\tHOLD UNTIL")
	for _, b := range bids {
		mark := ""
		if winner != "" && b.Provider == winner {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, name(b.Provider), formatPrice(b.Price, b.Currency), formatScore(b.Score),
			capability.FormatCPU(b.Offered.CPU.MilliCores), capability.FormatBytes(b.Offered.Memory), b.HoldExpires.Local().Format("15:04:05"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(w, buf.Bytes())
}

// shortPeer shows a peer ID by its last 8 characters: every Ed25519 peer
// ID starts with the same 12D3KooW, so the end is what tells them apart.
func shortPeer(p peer.ID) string {
	s := p.String()
	if len(s) <= 8 {
		return s
	}
	return s[len(s)-8:]
}

// shortJobID is the part of a job ID a table shows; any unique prefix of
// 4 characters or more names the job.
func shortJobID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// describeNeeds prints a job's requirements as a user wrote them.
func describeNeeds(c capability.Capability) string {
	cores := "cores"
	if c.CPU.MilliCores == 1000 {
		cores = "core"
	}
	s := fmt.Sprintf("%s %s, %s memory", capability.FormatCPU(c.CPU.MilliCores), cores, capability.FormatBytes(c.Memory))
	if c.Disk > 0 {
		s += ", " + capability.FormatBytes(c.Disk) + " disk"
	}
	return s
}

// formatPrice prints a price with its currency; prices of short jobs are
// small, so up to six decimals show.
func formatPrice(v float64, currency string) string {
	if currency == "" {
		currency = capability.DefaultCurrency
	}
	s := strconv.FormatFloat(v, 'f', 6, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "0" && v > 0 {
		s = strconv.FormatFloat(v, 'g', 3, 64)
	}
	return s + " " + currency
}

// formatScore prints a benchmark score; 0 means the provider has not run
// a benchmark.
func formatScore(s float64) string {
	if s == 0 {
		return "none"
	}
	return strconv.FormatFloat(s, 'f', 1, 64)
}

// formatElapsed prints a duration to the precision a person reads:
// milliseconds under a second, then hundredths, then whole seconds.
func formatElapsed(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// formatWhen prints a time of today as 15:04:05, an older one with its date.
func formatWhen(t time.Time) string {
	t = t.Local()
	if y, m, d := t.Date(); time.Now().Year() == y && time.Now().Month() == m && time.Now().Day() == d {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04")
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return out
}

// plural picks the word for n of something.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
