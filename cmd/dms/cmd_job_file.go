package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/orchestrator"
)

// jobFlags are what dms job submit takes, from its flags or from a job
// file (-f job.yaml), whose keys are the flags' names (jobFileKeys):
//
//	image: dms-example-files:latest
//	cpu: 0.5
//	memory: 64MiB
//	duration: 1m
//	inputs: [data/, notes.txt:/inputs/n.txt]
//	args: [-tick, "3"]
//	env: {GREETING: hi}
//	output-dir: out
//	constraints: [region=eu-west, "gpu exists"]
//	prefer: tier=gold
//	queue-timeout: 30m
//	retry-on-failure: 2
//	replicas: 3
//	agree: majority
//
// Relative paths in a file are relative to the file's directory.
type jobFlags struct {
	Wasm       string
	Image      string
	Entrypoint string
	Command    string
	CPU        string
	Memory     string
	Disk       string
	Duration   string
	GPU        int
	GPUModel   string
	MaxPrice   string
	Env        map[string]string
	Args       []string
	Inputs     []string
	OutputDir  string
	Stdin      string
	// Placement: hard constraints on the providers' labels and soft ones
	// that rank bids.
	Constraints []string
	Prefer      []string
	// QueueTimeout is a duration ("10m", "0"); RetryOnFailure a count.
	QueueTimeout   string
	RetryOnFailure int
	// Replicas, Agree and ReplicaNetworks ask for a replicated run: on
	// that many providers at once, its result delivered only when they
	// agree.
	Replicas        int
	Agree           string
	ReplicaNetworks string

	// from names where each value came from, for messages: "--memory" or
	// "memory in job.yaml".
	from map[string]string
}

// jobFileKey is a key of a job file: the name of a flag of dms job submit
// (or args, the job's arguments), and how its value is read into the
// fields. The file's keys, the help that lists them and the parser are
// this one table.
type jobFileKey struct {
	name string // the flag's name; "_" may stand for "-" in a file
	// alias is another spelling accepted (inputs for input: the value is a
	// list).
	alias string
	// what the value is, for the help and for a value of the wrong type.
	want string
	set  func(f *jobFlags, v *yaml.Node) error
}

func scalarKey(name, want string, field func(f *jobFlags) *string) jobFileKey {
	return jobFileKey{name: name, want: want, set: func(f *jobFlags, v *yaml.Node) error {
		if v.Kind != yaml.ScalarNode {
			return errors.New("want " + want)
		}
		*field(f) = v.Value
		return nil
	}}
}

// stringList reads a list of strings, or one string as a list of one.
func stringList(v *yaml.Node) ([]string, error) {
	if v.Kind == yaml.ScalarNode {
		return []string{v.Value}, nil
	}
	var l []string
	if v.Kind != yaml.SequenceNode || v.Decode(&l) != nil {
		return nil, errors.New("want a list of strings")
	}
	return l, nil
}

var jobFileKeys = []jobFileKey{
	scalarKey("wasm", "a file name", func(f *jobFlags) *string { return &f.Wasm }),
	scalarKey("image", "an image name", func(f *jobFlags) *string { return &f.Image }),
	scalarKey("entrypoint", "a program", func(f *jobFlags) *string { return &f.Entrypoint }),
	scalarKey("command", "a program", func(f *jobFlags) *string { return &f.Command }),
	scalarKey("cpu", "cores, e.g. 0.5", func(f *jobFlags) *string { return &f.CPU }),
	scalarKey("memory", "a size, e.g. 256MiB", func(f *jobFlags) *string { return &f.Memory }),
	scalarKey("disk", "a size, e.g. 1GiB", func(f *jobFlags) *string { return &f.Disk }),
	scalarKey("duration", "a duration, e.g. 1m", func(f *jobFlags) *string { return &f.Duration }),
	{name: "gpu", want: "a number of GPUs", set: func(f *jobFlags, v *yaml.Node) error {
		if v.Kind != yaml.ScalarNode || v.Decode(&f.GPU) != nil {
			return errors.New("want a whole number of GPUs")
		}
		return nil
	}},
	scalarKey("gpu-model", "a GPU model", func(f *jobFlags) *string { return &f.GPUModel }),
	scalarKey("max-price", "a price, e.g. 0.5", func(f *jobFlags) *string { return &f.MaxPrice }),
	{name: "env", want: "a map (NAME: value) or a list of NAME=VALUE", set: func(f *jobFlags, v *yaml.Node) error {
		f.Env = map[string]string{}
		switch v.Kind {
		case yaml.MappingNode:
			if v.Decode(&f.Env) != nil {
				return errors.New("want a map of NAME: value, or a list of NAME=VALUE")
			}
		case yaml.SequenceNode:
			var l []string
			if v.Decode(&l) != nil {
				return errors.New("want a list of NAME=VALUE, or a map of NAME: value")
			}
			for _, kv := range l {
				k, val, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("%q is not NAME=VALUE", kv)
				}
				f.Env[k] = val
			}
		default:
			return errors.New("want a map of NAME: value, or a list of NAME=VALUE")
		}
		return nil
	}},
	{name: "input", alias: "inputs", want: "a list of LOCAL[:GUEST]", set: func(f *jobFlags, v *yaml.Node) (err error) {
		f.Inputs, err = stringList(v)
		return err
	}},
	scalarKey("output-dir", "a directory", func(f *jobFlags) *string { return &f.OutputDir }),
	scalarKey("stdin", "a file name", func(f *jobFlags) *string { return &f.Stdin }),
	{name: "constraint", alias: "constraints", want: "a constraint or a list of them, e.g. region=eu-west", set: func(f *jobFlags, v *yaml.Node) (err error) {
		f.Constraints, err = stringList(v)
		return err
	}},
	{name: "prefer", want: "a constraint or a list of them, e.g. tier=gold", set: func(f *jobFlags, v *yaml.Node) (err error) {
		f.Prefer, err = stringList(v)
		return err
	}},
	scalarKey("queue-timeout", "a duration, e.g. 30m (0: do not wait)", func(f *jobFlags) *string { return &f.QueueTimeout }),
	{name: "retry-on-failure", want: "a number of runs", set: func(f *jobFlags, v *yaml.Node) error {
		if v.Kind != yaml.ScalarNode || v.Decode(&f.RetryOnFailure) != nil {
			return errors.New("want a whole number of runs")
		}
		return nil
	}},
	{name: "replicas", want: fmt.Sprintf("a number of providers, 1 to %d", orchestrator.MaxReplicas), set: func(f *jobFlags, v *yaml.Node) error {
		if v.Kind != yaml.ScalarNode || v.Decode(&f.Replicas) != nil {
			return fmt.Errorf("want a whole number of providers, 1 to %d", orchestrator.MaxReplicas)
		}
		return nil
	}},
	scalarKey("agree", "all or majority", func(f *jobFlags) *string { return &f.Agree }),
	scalarKey("replica-networks", "distinct or any", func(f *jobFlags) *string { return &f.ReplicaNetworks }),
	{name: "args", want: "a list of the job's arguments", set: func(f *jobFlags, v *yaml.Node) (err error) {
		f.Args, err = stringList(v)
		return err
	}},
}

// jobFileKeyList is the keys a job file takes, for the help and messages.
func jobFileKeyList() string {
	var names []string
	for _, k := range jobFileKeys {
		n := k.name
		if k.alias != "" {
			n += " (or " + k.alias + ")"
		}
		names = append(names, n)
	}
	return strings.Join(names, ", ")
}

// wrapWords breaks s into lines of at most width characters, at spaces.
func wrapWords(s string, width int) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		switch {
		case i == 0:
		case n+1+len(w) > width:
			b.WriteString("\n")
			n = 0
		default:
			b.WriteString(" ")
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// lookupJobFileKey finds a file's key: a flag's name, with _ for - if
// the writer likes.
func lookupJobFileKey(key string) (jobFileKey, bool) {
	norm := strings.ReplaceAll(key, "_", "-")
	for _, k := range jobFileKeys {
		if norm == k.name || (k.alias != "" && norm == k.alias) {
			return k, true
		}
	}
	return jobFileKey{}, false
}

// maxJobFile bounds a job file; it is a few lines.
const maxJobFile = 1 << 20

func readJobFile(p string) (jobFlags, error) {
	data, err := readLimited("file", p, maxJobFile)
	if err != nil {
		return jobFlags{}, err
	}
	name := filepath.Base(p)
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return jobFlags{}, usagef("job file %s: %v", p, err)
	}
	f := jobFlags{from: map[string]string{}}
	if len(doc.Content) == 0 {
		return jobFlags{}, usagef("job file %s is empty: want keys such as image, cpu, memory, duration (all keys: %s)", p, jobFileKeyList())
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return jobFlags{}, usagef("job file %s: want a map of keys to values, e.g. cpu: 0.5 (keys: %s)", p, jobFileKeyList())
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, val := m.Content[i].Value, m.Content[i+1]
		k, ok := lookupJobFileKey(key)
		if !ok {
			return jobFlags{}, usagef("job file %s, line %d: unknown key %q (keys: %s; _ may stand for -)", p, m.Content[i].Line, key, jobFileKeyList())
		}
		if prev, dup := f.from[k.name]; dup {
			return jobFlags{}, usagef("job file %s, line %d: %q says again what %s said", p, m.Content[i].Line, key, prev)
		}
		if err := k.set(&f, val); err != nil {
			return jobFlags{}, usagef("job file %s, line %d: %s: %v", p, val.Line, key, err)
		}
		f.from[k.name] = key + " in " + name
	}
	base := filepath.Dir(p)
	rel := func(s string) string {
		if s == "" || s == "-" || filepath.IsAbs(s) {
			return s
		}
		return filepath.Join(base, s)
	}
	f.Wasm, f.Stdin, f.OutputDir = rel(f.Wasm), rel(f.Stdin), rel(f.OutputDir)
	for i, in := range f.Inputs {
		local, guest, _ := strings.Cut(in, ":")
		f.Inputs[i] = rel(local)
		if guest != "" {
			f.Inputs[i] += ":" + guest
		}
	}
	return f, nil
}

// override puts the flags given over what the file said.
func (f *jobFlags) override(c *cli.Context) {
	if f.from == nil {
		f.from = map[string]string{}
	}
	str := map[string]*string{"wasm": &f.Wasm, "image": &f.Image, "entrypoint": &f.Entrypoint, "command": &f.Command,
		"cpu": &f.CPU, "memory": &f.Memory, "disk": &f.Disk, "duration": &f.Duration, "gpu-model": &f.GPUModel,
		"max-price": &f.MaxPrice, "output-dir": &f.OutputDir, "stdin": &f.Stdin, "queue-timeout": &f.QueueTimeout,
		"agree": &f.Agree, "replica-networks": &f.ReplicaNetworks}
	// The names of the flags given, read once: c.IsSet of a flag not given
	// passes every name of every flag of the command through a regexp
	// (urfave/cli v2's FlagNames), about a millisecond for these lookups
	// at every submission.
	set := map[string]bool{}
	for _, name := range c.LocalFlagNames() {
		set[name] = true
	}
	for name, dst := range str {
		if set[name] {
			*dst, f.from[name] = c.String(name), "--"+name
		}
	}
	if set["gpu"] {
		f.GPU, f.from["gpu"] = c.Int("gpu"), "--gpu"
	}
	if set["retry-on-failure"] {
		f.RetryOnFailure, f.from["retry-on-failure"] = c.Int("retry-on-failure"), "--retry-on-failure"
	}
	if set["replicas"] {
		f.Replicas, f.from["replicas"] = c.Int("replicas"), "--replicas"
	}
	if env := c.Generic("env").(*envList); len(env.vals) > 0 {
		if f.Env == nil {
			f.Env = map[string]string{}
		}
		for _, kv := range env.vals {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				k, v = kv, "\x00" // refused below, naming the flag
			}
			f.Env[k] = v
		}
		f.from["env"] = "--env"
	}
	if in := c.Generic("input").(*envList); len(in.vals) > 0 {
		f.Inputs, f.from["input"] = in.vals, "--input"
	}
	if c.Args().Present() {
		f.Args = c.Args().Slice()
	}
	if cs := c.Generic("constraint").(*envList); len(cs.vals) > 0 {
		f.Constraints, f.from["constraint"] = cs.vals, "--constraint"
	}
	if ps := c.Generic("prefer").(*envList); len(ps.vals) > 0 {
		f.Prefer, f.from["prefer"] = ps.vals, "--prefer"
	}
}

// where names a field's source for a message.
func (f *jobFlags) where(name string) string {
	if w, ok := f.from[name]; ok {
		return w
	}
	return "--" + name
}

func (f *jobFlags) bad(name, value string, err error) error {
	return &usageError{msg: fmt.Sprintf("invalid value %q for %s: %s", value, f.where(name), accepts(err, value)), err: err}
}

// request turns the fields into a submission.
func (f *jobFlags) request() (api.SubmitJobRequest, error) {
	var req api.SubmitJobRequest
	kinds := 0
	for _, v := range []string{f.Wasm, f.Image, f.Command} {
		if strings.TrimSpace(v) != "" {
			kinds++
		}
	}
	var missing []string
	if kinds == 0 {
		missing = append(missing, "--wasm, --image or --command")
	}
	for _, n := range []struct{ name, v string }{{"cpu", f.CPU}, {"memory", f.Memory}, {"duration", f.Duration}} {
		if strings.TrimSpace(n.v) == "" {
			missing = append(missing, "--"+n.name)
		}
	}
	if len(missing) > 0 {
		return req, usagef("missing %s: a job needs something to run (--wasm, --image or --command) and what it needs of a provider (--cpu, --memory, --duration), e.g. dms job submit --cpu 0.5 --memory 256MiB --duration 1m --wasm job.wasm", strings.Join(missing, ", "))
	}
	if kinds > 1 {
		return req, usagef("--wasm, --image and --command each name what the job runs: give one of them")
	}
	job := orchestrator.JobSpec{ID: orchestrator.NewJobID(), Args: f.Args}
	var err error
	switch {
	case f.Wasm != "":
		job.Executor = orchestrator.ExecutorWasm
		if job.Module, err = f.readModule(); err != nil {
			return req, err
		}
	case f.Image != "":
		job.Executor, job.Image = orchestrator.ExecutorDocker, f.Image
		if err := orchestrator.CheckImage(f.Image); err != nil {
			return req, f.bad("image", f.Image, errors.New("want an image reference such as name:tag"))
		}
		if f.Entrypoint != "" {
			job.Entrypoint = []string{f.Entrypoint}
		}
	default:
		job.Executor, job.Command, job.Args = orchestrator.ExecutorNative, append([]string{f.Command}, f.Args...), nil
	}
	if f.Entrypoint != "" && f.Image == "" {
		return req, usagef("%s is for a container job: give --image as well", f.where("entrypoint"))
	}
	if job.Requirements.CPU.MilliCores, err = f.positive("cpu", f.CPU, capability.ParseCPU); err != nil {
		return req, err
	}
	if job.Requirements.Memory, err = f.positive("memory", f.Memory, capability.ParseBytes); err != nil {
		return req, err
	}
	if f.Disk != "" {
		if job.Requirements.Disk, err = capability.ParseBytes(f.Disk); err != nil {
			return req, f.bad("disk", f.Disk, err)
		}
	}
	d, err := capability.ParseDuration(f.Duration)
	if err != nil {
		return req, f.bad("duration", f.Duration, err)
	}
	job.Duration = seconds.Duration(d)
	if f.GPU < 0 || f.GPU > 64 {
		return req, f.bad("gpu", strconv.Itoa(f.GPU), errors.New("want 0 to 64 GPUs"))
	}
	if f.GPUModel != "" && f.GPU == 0 {
		f.GPU = 1
	}
	if f.GPU > 0 && job.Executor != orchestrator.ExecutorDocker {
		return req, usagef("%s needs a container job (--image): a %s job cannot use a GPU", f.where("gpu"), job.Executor)
	}
	for range f.GPU {
		job.Requirements.GPUs = append(job.Requirements.GPUs, capability.GPU{Model: f.GPUModel})
	}
	if f.MaxPrice != "" {
		p, err := strconv.ParseFloat(strings.TrimSpace(f.MaxPrice), 64)
		if err != nil || !(p >= 0) || p > 1e15 {
			return req, f.bad("max-price", f.MaxPrice, errors.New("want a number >= 0, e.g. 0.5"))
		}
		req.MaxPrice = &p
	}
	for k, v := range f.Env {
		if job.Env == nil {
			job.Env = map[string]string{}
		}
		if k == "" || strings.ContainsAny(k, "\x00 =") || strings.Contains(v, "\x00") {
			return req, f.bad("env", k, errors.New("want NAME=VALUE, e.g. --env GREETING=hi"))
		}
		job.Env[k] = v
	}
	n, size := len(job.Args)+len(job.Command)+len(job.Env), 0
	for _, a := range append(append([]string{}, job.Args...), job.Command...) {
		size += len(a)
	}
	for k, v := range job.Env {
		size += len(k) + len(v)
	}
	if n > orchestrator.MaxArgs || size > orchestrator.MaxArgBytes {
		return req, usagef("the job's arguments and --env are %d values of %s: a job takes at most %d values of %s", n,
			capability.FormatBytes(uint64(size)), orchestrator.MaxArgs, capability.FormatBytes(orchestrator.MaxArgBytes))
	}
	if f.Stdin != "" {
		if job.Stdin, err = readLimited(strings.TrimPrefix(f.where("stdin"), "--"), f.Stdin, orchestrator.MaxStdin); err != nil {
			return req, err
		}
	}
	if job.Constraints, err = f.constraints("constraint", f.Constraints); err != nil {
		return req, err
	}
	if job.Prefer, err = f.constraints("prefer", f.Prefer); err != nil {
		return req, err
	}
	if req.Inputs, err = f.packInputs(); err != nil {
		return req, err
	}
	if err := f.queueing(&req); err != nil {
		return req, err
	}
	req.Job = job
	return req, nil
}

// queueing reads how long the job waits for a provider and how often it
// is run again after failing.
func (f *jobFlags) queueing(req *api.SubmitJobRequest) error {
	req.QueueTimeout = seconds.Duration(orchestrator.DefaultQueueTimeout)
	if v := strings.TrimSpace(f.QueueTimeout); v == "0" {
		req.QueueTimeout = 0
	} else if v != "" {
		d, err := capability.ParseDuration(v)
		if err != nil {
			return f.bad("queue-timeout", f.QueueTimeout, err)
		}
		if d > orchestrator.MaxQueueTimeout {
			return f.bad("queue-timeout", f.QueueTimeout, fmt.Errorf("want at most %s (0: do not wait)", capability.FormatDuration(orchestrator.MaxQueueTimeout)))
		}
		req.QueueTimeout = seconds.Duration(d)
	}
	if f.RetryOnFailure < 0 || f.RetryOnFailure > orchestrator.MaxRetryOnFailure {
		return f.bad("retry-on-failure", strconv.Itoa(f.RetryOnFailure), fmt.Errorf("want 0 to %d", orchestrator.MaxRetryOnFailure))
	}
	req.RetryOnFailure = f.RetryOnFailure
	return f.replication(req)
}

// replication reads how many providers run the job and how they must
// agree.
func (f *jobFlags) replication(req *api.SubmitJobRequest) error {
	r := orchestrator.Replication{Replicas: f.Replicas, Agree: orchestrator.Agreement(strings.TrimSpace(f.Agree)), Networks: strings.TrimSpace(f.ReplicaNetworks)}
	if r.Replicas < 0 || r.Replicas > orchestrator.MaxReplicas {
		return f.bad("replicas", strconv.Itoa(f.Replicas), fmt.Errorf("want 1 to %d providers", orchestrator.MaxReplicas))
	}
	switch r.Agree {
	case "", orchestrator.AgreeAll, orchestrator.AgreeMajority:
	default:
		return f.bad("agree", f.Agree, fmt.Errorf("want %s or %s", orchestrator.AgreeAll, orchestrator.AgreeMajority))
	}
	switch r.Networks {
	case "", orchestrator.ReplicaNetworksDistinct, orchestrator.ReplicaNetworksAny:
	default:
		return f.bad("replica-networks", f.ReplicaNetworks, fmt.Errorf("want %s or %s", orchestrator.ReplicaNetworksDistinct, orchestrator.ReplicaNetworksAny))
	}
	if r.Replicas <= 1 {
		switch {
		case f.Agree != "":
			return f.bad("agree", f.Agree, errors.New("applies to a job with --replicas 2 or more"))
		case f.ReplicaNetworks != "":
			return f.bad("replica-networks", f.ReplicaNetworks, errors.New("applies to a job with --replicas 2 or more"))
		}
		return nil
	}
	if f.RetryOnFailure > 0 {
		return f.bad("retry-on-failure", strconv.Itoa(f.RetryOnFailure), fmt.Errorf("does not go with --replicas: a replicated job is compared, not run again"))
	}
	req.Replication = r
	return nil
}

func (f *jobFlags) positive(name, v string, parse func(string) (uint64, error)) (uint64, error) {
	n, err := parse(v)
	if err != nil {
		return 0, f.bad(name, v, err)
	}
	if n == 0 {
		return 0, f.bad(name, v, errors.New("want more than zero"))
	}
	return n, nil
}

// constraints parses --constraint or --prefer values.
func (f *jobFlags) constraints(name string, vals []string) ([]orchestrator.Constraint, error) {
	if len(vals) > orchestrator.MaxConstraints {
		return nil, usagef("%s: %d constraints, a job takes at most %d", f.where(name), len(vals), orchestrator.MaxConstraints)
	}
	var out []orchestrator.Constraint
	n := 0
	for _, v := range vals {
		c, err := orchestrator.ParseConstraint(v)
		if err != nil {
			return nil, f.bad(name, v, err)
		}
		out = append(out, c)
		n += len(c.String())
	}
	if n > orchestrator.MaxConstraintsText {
		return nil, usagef("%s: constraints of %d characters, at most %d in all", f.where(name), n, orchestrator.MaxConstraintsText)
	}
	return out, nil
}

// packInputs packs the --input files into one archive, each at its guest
// path: /inputs/<base name> unless LOCAL:GUEST says otherwise.
func (f *jobFlags) packInputs() ([]byte, error) {
	if len(f.Inputs) == 0 {
		return nil, nil
	}
	var entries []archive.Entry
	for _, in := range f.Inputs {
		local, guest, hasGuest := strings.Cut(in, ":")
		st, err := os.Stat(local)
		if err != nil {
			return nil, f.bad("input", in, openError(err))
		}
		if !hasGuest {
			guest = path.Join("/inputs", filepath.Base(filepath.Clean(local)))
		}
		clean, err := archive.CleanPath(guest)
		switch {
		case err != nil || !path.IsAbs(guest):
			return nil, f.bad("input", in, errors.New("want LOCAL or LOCAL:GUEST with GUEST an absolute path such as /inputs/data"))
		case !strings.Contains(clean, "/") && !st.IsDir():
			return nil, f.bad("input", in, fmt.Errorf("a file goes inside a directory: try %s:/inputs/%s", local, path.Base(clean)))
		case clean == "outputs" || strings.HasPrefix(clean, "outputs/"):
			return nil, f.bad("input", in, errors.New("/outputs holds what the job writes; put inputs elsewhere, e.g. /inputs"))
		}
		entries = append(entries, archive.Entry{Local: local, Path: clean})
	}
	data, _, err := archive.Pack(entries, orchestrator.MaxInputSize)
	if errors.Is(err, archive.ErrTooLarge) {
		return nil, usagef("%s: the inputs are more than the limit of %s (%v)", f.where("input"), capability.FormatBytes(orchestrator.MaxInputSize), err)
	}
	if err != nil {
		return nil, usagef("%s: %v", f.where("input"), err)
	}
	if len(data) > orchestrator.MaxInputSize {
		return nil, usagef("%s: the inputs' archive is %s, more than the limit of %s", f.where("input"), capability.FormatBytes(uint64(len(data))), capability.FormatBytes(orchestrator.MaxInputSize))
	}
	return data, nil
}

// wasmMagic starts every WebAssembly binary; wasmVersion1 follows it in a
// core module, the only kind the sandbox runs.
var (
	wasmMagic    = []byte("\x00asm")
	wasmVersion1 = []byte{1, 0, 0, 0}
)

// readModule reads the module and checks that it is a core WebAssembly
// module within the protocol's size limit, so a wrong file is refused here
// rather than by a provider after bidding.
func (f *jobFlags) readModule() ([]byte, error) {
	data, err := readLimited(strings.TrimPrefix(f.where("wasm"), "--"), f.Wasm, orchestrator.MaxModuleSize)
	if err != nil {
		return nil, err
	}
	switch {
	case len(data) < 8 || !bytes.Equal(data[:4], wasmMagic):
		return nil, f.bad("wasm", f.Wasm, errors.New(`not a WebAssembly module: it does not start with \0asm (build one with GOOS=wasip1 GOARCH=wasm go build -o job.wasm)`))
	case !bytes.Equal(data[4:8], wasmVersion1):
		return nil, f.bad("wasm", f.Wasm, fmt.Errorf("WebAssembly binary version %x: want a core module (version 1); components are not supported", data[4:8]))
	}
	return data, nil
}
