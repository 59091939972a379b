package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestJobFileKeysAreSubmitFlags: the help's promise that a job file's keys
// are the flags' names holds, because the help is made from the parser's
// table, and each key of the table is a flag of dms job submit that the
// parser takes in either spelling.
func TestJobFileKeysAreSubmitFlags(t *testing.T) {
	t.Parallel()
	e := &env{}
	cmd := e.jobSubmitCommand()
	var flags []string
	for _, f := range cmd.Flags {
		flags = append(flags, f.Names()...)
	}
	if !strings.Contains(strings.Join(strings.Fields(cmd.Description), " "), strings.Join(strings.Fields(jobFileKeyList()), " ")) {
		t.Fatalf("the help does not list the job file's keys %q:\n%s", jobFileKeyList(), cmd.Description)
	}
	for _, k := range jobFileKeys {
		if k.name != "args" && !slices.Contains(flags, k.name) {
			t.Errorf("job file key %q is no flag of dms job submit", k.name)
		}
		for _, spelling := range []string{k.name, strings.ReplaceAll(k.name, "-", "_"), k.alias} {
			if _, ok := lookupJobFileKey(spelling); spelling != "" && !ok {
				t.Errorf("the parser does not take %q", spelling)
			}
		}
	}

	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "job.yaml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f, err := readJobFile(write("image: x:1\ncpu: 0.5\nmemory: 64MiB\nduration: 1m\ngpu: 2\ngpu-model: H100\nmax_price: 0.5\n" +
		"output-dir: out\nenv: [A=1, B=x=y]\ninputs: [data:/inputs/d]\nargs: [-n, \"3\"]\nstdin: in.txt\nentrypoint: /bin/sh\ndisk: 1GiB\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Image != "x:1" || f.CPU != "0.5" || f.GPU != 2 || f.GPUModel != "H100" || f.MaxPrice != "0.5" || f.OutputDir != filepath.Join(dir, "out") ||
		f.Env["A"] != "1" || f.Env["B"] != "x=y" || f.Inputs[0] != filepath.Join(dir, "data")+":/inputs/d" || !slices.Equal(f.Args, []string{"-n", "3"}) ||
		f.Stdin != filepath.Join(dir, "in.txt") || f.Entrypoint != "/bin/sh" || f.Disk != "1GiB" || f.Memory != "64MiB" || f.Duration != "1m" {
		t.Fatalf("read %+v", f)
	}
	if f.where("max-price") != "max_price in job.yaml" {
		t.Errorf("messages name max-price as %q", f.where("max-price"))
	}
	if f, err = readJobFile(write("env: {A: \"1\"}\n")); err != nil || f.Env["A"] != "1" {
		t.Fatalf("env as a map: %+v %v", f.Env, err)
	}
	for bad, says := range map[string]string{
		"colour: blue\n":                 `unknown key "colour"`,
		"output_dir: a\noutput-dir: b\n": `"output-dir" says again what output_dir in job.yaml said`,
		"env: [NOEQUALS]\n":              `"NOEQUALS" is not NAME=VALUE`,
		"env: 3\n":                       "want a map of NAME: value, or a list of NAME=VALUE",
		"cpu: [1, 2]\n":                  "cpu: want cores",
		"gpu: many\n":                    "want a whole number",
		"- a\n- b\n":                     "want a map of keys to values",
		"":                               "is empty",
		"inputs: {a: b}\n":               "want a list of strings",
		"image: [unclosed\n":             "job.yaml",
	} {
		if _, err := readJobFile(write(bad)); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%q: %v, want %q", bad, err, says)
		}
	}
}
