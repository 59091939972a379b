package resources

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/capability"
)

func TestParseNvidiaSMI(t *testing.T) {
	// The first line is what an H100 machine printed.
	out := "0, GPU-e863230b-2b21-6c94-a391-330cfda1a7d9, NVIDIA H100 80GB HBM3, 81559\n" +
		"1, GPU-11111111-2222-3333-4444-555555555555, NVIDIA A10, 23028\r\n" +
		"2, GPU-x, Tesla, Weird, Name, [N/A]\n\n"
	gpus, err := ParseNvidiaSMI([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []capability.GPU{
		{Vendor: "NVIDIA", Model: "NVIDIA H100 80GB HBM3", Memory: 81559 * capability.MiB, Index: 0, UUID: "GPU-e863230b-2b21-6c94-a391-330cfda1a7d9"},
		{Vendor: "NVIDIA", Model: "NVIDIA A10", Memory: 23028 * capability.MiB, Index: 1, UUID: "GPU-11111111-2222-3333-4444-555555555555"},
		{Vendor: "NVIDIA", Model: "Tesla,Weird,Name", Memory: 0, Index: 2, UUID: "GPU-x"},
	}
	if len(gpus) != len(want) {
		t.Fatalf("got %d gpus, want %d: %+v", len(gpus), len(want), gpus)
	}
	for i := range want {
		if gpus[i] != want[i] {
			t.Errorf("gpu %d = %+v, want %+v", i, gpus[i], want[i])
		}
	}
	for _, empty := range []string{"", "\n\n", "No devices were found\n"} {
		if g, err := ParseNvidiaSMI([]byte(empty)); err != nil || g != nil {
			t.Errorf("ParseNvidiaSMI(%q) = %v, %v; want none", empty, g, err)
		}
	}
}

func TestParseNvidiaSMIRejects(t *testing.T) {
	for name, bad := range map[string]string{
		"few fields":     "0, GPU-a, 1024\n",
		"bad index":      "x, GPU-a, A10, 1024\n",
		"negative index": "-1, GPU-a, A10, 1024\n",
		"bad memory":     "0, GPU-a, A10, lots\n",
		"empty uuid":     "0, , A10, 1024\n",
		"space in uuid":  "0, GPU a, A10, 1024\n",
		"control char":   "0, GPU-a, A\x0110, 1024\n",
		"duplicate":      "0, GPU-a, A10, 1024\n0, GPU-b, A10, 1024\n",
		"error text":     "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
		"too many":       strings.Repeat("0, GPU-a, A10, 1\n", capability.MaxGPUs+1),
		"too large":      strings.Repeat("x", maxSMIOutput+1),
		"huge memory":    "0, GPU-a, A10, 99999999999999999999\n",
	} {
		_, err := ParseNvidiaSMI([]byte(bad))
		if !errors.Is(err, ErrBadGPUList) {
			t.Errorf("%s: err = %v, want ErrBadGPUList", name, err)
		}
	}
}

func FuzzParseNvidiaSMI(f *testing.F) {
	f.Add([]byte("0, GPU-8f6d0b1e, NVIDIA H100 80GB HBM3, 81559\n1, GPU-b, NVIDIA A10, [N/A]\n"))
	f.Add([]byte("No devices were found"))
	f.Add([]byte("0,,,\n"))
	f.Add([]byte("4095, GPU-\xff, \u00e9, 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		gpus, err := ParseNvidiaSMI(b)
		if err != nil {
			if !errors.Is(err, ErrBadGPUList) {
				t.Fatalf("error %v does not wrap ErrBadGPUList", err)
			}
			return
		}
		if len(gpus) > capability.MaxGPUs {
			t.Fatalf("%d gpus accepted", len(gpus))
		}
		seen := map[int]bool{}
		for _, g := range gpus {
			if g.UUID == "" || g.Model == "" || len(g.UUID) > maxGPUField || len(g.Model) > maxGPUField || seen[g.Index] || g.Index < 0 {
				t.Fatalf("accepted a malformed gpu %+v", g)
			}
			seen[g.Index] = true
		}
		// A valid GPU list is a valid capability.
		if err := (capability.Capability{GPUs: gpus}).Validate(); err != nil {
			t.Fatalf("parsed gpus do not validate: %v", err)
		}
	})
}

// fakeTool writes an executable shell script standing in for nvidia-smi.
func fakeTool(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nvidia-smi")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDetectGPUs(t *testing.T) {
	ctx := context.Background()
	if g, err := detectGPUsWith(ctx, filepath.Join(t.TempDir(), "absent-nvidia-smi"), time.Second); err != nil || g != nil {
		t.Fatalf("absent tool: %v, %v; want no gpus, no error", g, err)
	}
	noDriver := fakeTool(t, `echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." ; exit 9`)
	if g, err := detectGPUsWith(ctx, noDriver, 5*time.Second); err != nil || g != nil {
		t.Fatalf("no driver: %v, %v; want no gpus, no error", g, err)
	}
	one := fakeTool(t, `echo "0, GPU-abc, NVIDIA A10, 23028"`)
	g, err := detectGPUsWith(ctx, one, 5*time.Second)
	if err != nil || len(g) != 1 || g[0].UUID != "GPU-abc" {
		t.Fatalf("one gpu: %+v, %v", g, err)
	}
	// A tool that hangs for an hour: only the timeout brings the answer
	// back (waited for generously, a busy machine being slow to kill it).
	hang := fakeTool(t, `exec sleep 3600`)
	hung := make(chan error, 1)
	go func() {
		_, err := detectGPUsWith(ctx, hang, 200*time.Millisecond)
		hung <- err
	}()
	select {
	case err := <-hung:
		if err == nil || !strings.Contains(err.Error(), "did not answer") {
			t.Fatalf("hanging tool: err = %v, want a timeout", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("after 1m: still waiting for detection to give up on a hanging tool")
	}
	flood := fakeTool(t, `yes "0, GPU-abc, NVIDIA A10, 23028" | head -c 200000`)
	if _, err := detectGPUsWith(ctx, flood, 5*time.Second); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("flooding tool: err = %v, want output bound", err)
	}
}

// TestDetectGPUsReal runs only where nvidia-smi is installed: a machine with
// a driver must report its GPUs with UUIDs and memory.
func TestDetectGPUsReal(t *testing.T) {
	if _, err := exec.LookPath("nvidia-smi"); err != nil {
		t.Skip("nvidia-smi not installed")
	}
	gpus, err := DetectGPUs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gpus: %+v", gpus)
	for _, g := range gpus {
		if !strings.HasPrefix(g.UUID, "GPU-") && !strings.HasPrefix(g.UUID, "MIG-") || g.Model == "" {
			t.Errorf("gpu %+v: want a UUID and a model", g)
		}
	}
}
