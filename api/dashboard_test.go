package api_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/testnet"
)

func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary found (Debian: apt-get install chromium; .ci/run installs it)")
	return ""
}

// chromiumDeadline bounds everything the test asks of chromium: starting a
// browser on a machine that other jobs keep busy takes tens of seconds.
const chromiumDeadline = 5 * time.Minute

// headless runs chromium on url with args and returns its stdout, or an
// error (with chromium's stderr) when it failed or ran past ctx. The
// virtual time budget lets the page's script fetch and render before the
// DOM is dumped or the screenshot taken; virtual time stands still while a
// fetch is in flight, so a slow machine only makes it take longer.
func headless(ctx context.Context, t *testing.T, bin, url string, args ...string) (string, error) {
	t.Helper()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000", "--window-size=1280,1400"}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), url)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("chromium %v: %w\n%s", args, err, errb.String())
	}
	return out.String(), nil
}

// renderedDOM loads url until the rendered page holds every one of want
// (the page's script fills it in after its first fetches), and returns it.
func renderedDOM(t *testing.T, bin, url string, want ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chromiumDeadline)
	defer cancel()
	var dom string
	var err error
	for ctx.Err() == nil {
		dom, err = headless(ctx, t, bin, url, "--dump-dom")
		if err != nil && ctx.Err() == nil {
			t.Fatal(err) // chromium failed, not slow
		}
		if err == nil && containsAll(dom, want) {
			return dom
		}
	}
	t.Fatalf("after %v: still waiting for the rendered page to show %q (last: %v):\n%s", chromiumDeadline, want, err, dom)
	return ""
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestDashboardInChromium runs a job on a lone node, serves its dashboard,
// and loads it in headless Chromium: the rendered page names the job,
// "completed" and the job's output, and a screenshot of it is a real page.
func TestDashboardInChromium(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{Nodes: 1,
		Offer: capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB, Disk: capability.GiB}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := ln.Nodes[0]
	rec, err := n.SubmitJob(ctx, orchestrator.Submission{Job: orchestrator.JobSpec{
		Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 100}, Memory: 16 * capability.MiB},
		Duration:     seconds.Duration(10 * time.Second), Executor: orchestrator.ExecutorWasm, Module: examples.TinyWasm,
	}}, nil)
	if err != nil || rec.State != node.JobCompleted {
		t.Fatalf("job: %+v, %v", rec, err)
	}

	srv := api.NewServer(n, t.TempDir(), slog.New(slog.DiscardHandler))
	d, err := api.StartDashboard("127.0.0.1:0", srv.Handler())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	url := d.URL()

	// Without the token, and with anything but GET, the dashboard refuses.
	bare, _, _ := strings.Cut(url, "?")
	if resp, err := http.Get(bare + "api/v1/status"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %v %v, want 401", resp.Status, err)
	}
	if resp, err := http.Post(url, "text/plain", strings.NewReader("x")); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v, want 405", resp.Status, err)
	}

	// The job as the command line names it (its first 12 characters), what
	// it ran, and its submission on a 24-hour clock.
	renderedDOM(t, bin, url, ">"+rec.ID[:12]+"<", ">completed<", ">wasm<", ">"+rec.Submitted.Local().Format("15:04:05")+"<", "tiny job ok", n.ID().String())

	shot := filepath.Join(os.Getenv("DMS_SCREENSHOT_DIR"), "dashboard.png")
	if os.Getenv("DMS_SCREENSHOT_DIR") == "" {
		shot = filepath.Join(t.TempDir(), "dashboard.png")
	}
	shotCtx, cancelShot := context.WithTimeout(context.Background(), chromiumDeadline)
	defer cancelShot()
	if _, err := headless(shotCtx, t, bin, url, "--screenshot="+shot, "--hide-scrollbars"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, _ := io.ReadAll(f)
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// A blank or error page compresses to almost nothing; the dashboard's
	// tables and text do not, and its pixels are not all one colour.
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 || len(data) < 20<<10 {
		t.Fatalf("screenshot %dx%d, %d bytes: not a rendered page", b.Dx(), b.Dy(), len(data))
	}
	colours := map[uint32]bool{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 7 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 7 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|b>>8] = true
		}
	}
	if len(colours) < 8 {
		t.Fatalf("screenshot has %d colours: a blank page", len(colours))
	}
}
