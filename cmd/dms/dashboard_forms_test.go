package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestDashboardFormsMatchTheCLI runs the dashboard's formatting functions
// (api/dashboard/format.js) under node and compares what they print with
// what the command line prints for the same job IDs, times and durations.
func TestDashboardFormsMatchTheCLI(t *testing.T) {
	t.Parallel()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node binary to run the dashboard's script with")
	}
	src, err := os.ReadFile(filepath.Join("..", "..", "api", "dashboard", "format.js"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ids := []string{"0123456789abcdef0123", "short"}
	times := []time.Time{now.Add(-time.Minute).Truncate(time.Second), now.AddDate(0, -2, 0).Truncate(time.Second)}
	durations := []time.Duration{250 * time.Millisecond, 1500 * time.Millisecond, 59 * time.Second, 90 * time.Second, time.Hour, 3*time.Hour + 4*time.Minute + 5*time.Second}
	in, _ := json.Marshal(map[string]any{"ids": ids, "times": times, "ms": durationsMS(durations)})
	script := string(src) + `
const input = JSON.parse(process.argv[1]);
console.log(JSON.stringify({ids: input.ids.map(jobID), times: input.times.map(clock), elapsed: input.ms.map(elapsed),
  running: took({state: "running", submitted: "2026-01-01T10:00:00Z"}, Date.parse("2026-01-01T10:00:05Z")),
  done: took({state: "completed", submitted: "2026-01-01T10:00:00Z", ended: "2026-01-01T10:01:30Z"}),
  runs: [runs({executor: "docker", image: "pyjob:1"}), runs({executor: "wasm"})]}));`
	out, err := exec.Command(nodeBin, "-e", script, string(in)).Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var got struct {
		IDs, Times, Elapsed []string
		Running, Done       string
		Runs                []string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for i, id := range ids {
		if got.IDs[i] != shortJobID(id) {
			t.Errorf("job %s: dashboard %q, CLI %q", id, got.IDs[i], shortJobID(id))
		}
	}
	for i, tm := range times {
		if got.Times[i] != formatWhen(tm) {
			t.Errorf("time %v: dashboard %q, CLI %q", tm, got.Times[i], formatWhen(tm))
		}
	}
	for i, d := range durations {
		if got.Elapsed[i] != formatElapsed(d) {
			t.Errorf("elapsed %v: dashboard %q, CLI %q", d, got.Elapsed[i], formatElapsed(d))
		}
	}
	if want := formatElapsed(5*time.Second) + " so far"; got.Running != want {
		t.Errorf("a running job's elapsed time: %q, want %q as dms job list says", got.Running, want)
	}
	if got.Done != formatElapsed(90*time.Second) || got.Runs[0] != "docker pyjob:1" || got.Runs[1] != "wasm" {
		t.Errorf("ended job took %q, runs %q", got.Done, got.Runs)
	}
}

func durationsMS(ds []time.Duration) []float64 {
	var out []float64
	for _, d := range ds {
		out = append(out, float64(d.Milliseconds()))
	}
	return out
}
