package executor

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The command line carries every limit, and GPUs in the CLI's own syntax.
func TestDockerCommandLine(t *testing.T) {
	d := &Docker{bin: "docker"}
	spec := Spec{Kind: KindDocker, Image: "img:1", Entrypoint: []string{"/bin/tool"}, Args: []string{"-x"},
		MemoryBytes: 64 << 20, CPUMilli: 1500, Timeout: time.Minute, GPUs: []string{"GPU-a", "GPU-b"},
		Mounts: map[string]string{"/inputs": "/w/in/inputs"}, OutputDir: "/w/out", Env: map[string]string{"K": "v"}}
	a := d.args("dms-job-1", &spec)
	line := strings.Join(a, " ")
	for _, want := range []string{"--network none", "--read-only", "--cap-drop ALL", "--security-opt no-new-privileges",
		"--memory 67108864", "--memory-swap 67108864", "--cpus 1.500", "--pids-limit 512",
		"--mount type=bind,source=/w/in/inputs,target=/inputs,readonly", "--mount type=bind,source=/w/out,target=/outputs",
		"--env K=v", `--gpus "device=GPU-a,GPU-b"`, "--entrypoint /bin/tool", "-- img:1 -x"} {
		if !strings.Contains(line, want) {
			t.Errorf("command line lacks %q:\n%s", want, line)
		}
	}
	if i := slices.Index(a, "--user"); i < 0 || a[i+1] == "0" || strings.HasPrefix(a[i+1], "0:") {
		t.Errorf("the container may run as root: %s", line)
	}
}
