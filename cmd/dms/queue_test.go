package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/testnet"
)

// TestQueuedJobSaysSoAndWhy: a job nobody can run now waits queued, and
// job status, job list and the queue timeout say so with the reason.
func TestQueuedJobSaysSoAndWhy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ln, err := testnet.StartLocal(ctx, testnet.LocalConfig{Nodes: 2, Requesters: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	req := serveNode(t, ln.Nodes[1])
	serveNode(t, ln.Nodes[0])
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(wasm, examples.HelloWasm, 0o600); err != nil {
		t.Fatal(err)
	}
	job := func(args ...string) result { return dms(t, append([]string{"--home", req, "job"}, args...)...) }
	huge := []string{"submit", "--cpu", "64", "--memory", "128MiB", "--duration", "1m", "--wasm", wasm}

	r := job(append(huge, "--detach")...)
	r.want(t, 0)
	id := strings.TrimSpace(r.stdout)
	var status result
	poll.Until(t, 2*time.Minute, "job "+id+" to be queued", func() bool {
		status = job("status", id)
		return strings.Contains(status.stdout, "state:      queued")
	})
	status.want(t, 0, "queued:     since ", "why:        no acceptable bids", "cpu=64")
	job("list").want(t, 0, shortJobID(id), "queued", "no acceptable bids")
	job("cancel", id).want(t, 0, "cancelled")

	// At its queue timeout it fails, saying how long it waited and why.
	job(append(huge, "--queue-timeout", "1s")...).want(t, 1, "queued for 1s", "cpu=64")
	// 0 is the old fail-fast.
	r = job(append(huge, "--queue-timeout", "0")...)
	r.want(t, 1, "no acceptable bids", "cpu=64")
	if strings.Contains(r.stdout+r.stderr, "queued") {
		t.Errorf("--queue-timeout 0 queued the job:\n%s", r.stderr)
	}
	job(append(huge, "--queue-timeout", "-1s")...).want(t, 2, "--queue-timeout")
	job(append(huge, "--queue-timeout", "2d")...).want(t, 2, "--queue-timeout", "at most")
	job(append(huge, "--retry-on-failure", "-1")...).want(t, 2, "--retry-on-failure")
	// The job file takes the same settings.
	file := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(file, []byte("cpu: 64\nmemory: 128MiB\nduration: 1m\nwasm: "+wasm+"\nqueue_timeout: 1s\nretry_on_failure: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	job("submit", "-f", file).want(t, 1, "queued for 1s", "cpu=64")
}
