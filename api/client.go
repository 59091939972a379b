package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

// Client calls the control API of the node running on a home.
type Client struct {
	home string
	http *http.Client

	// probe is the connection Dial made to see that the node answers,
	// kept for the first request: a command makes one or two calls in
	// all, and a second connection would cost it and the node one more
	// connect and accept each. Taken once; Close closes it if unused.
	mu    sync.Mutex
	probe net.Conn
	when  time.Time
}

// probeFresh is how long Dial's connection is kept for the first request.
// The node closes a connection that sends no request within its
// ReadHeaderTimeout (10 s); a command that waits longer than this before
// its first call dials afresh.
const probeFresh = 2 * time.Second

// takeProbe returns Dial's connection the first time, while it is fresh.
func (c *Client) takeProbe() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn := c.probe
	c.probe = nil
	if conn != nil && time.Since(c.when) > probeFresh {
		conn.Close()
		return nil
	}
	return conn
}

// Dial connects to the node running on the home in dir. When none answers
// it fails wrapping ErrNoNode, with the command that starts one.
func Dial(ctx context.Context, dir string) (*Client, error) {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	path := home.SocketPath(dir)
	var d net.Dialer
	c := &Client{home: dir}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if conn := c.takeProbe(); conn != nil {
				return conn, nil
			}
			return d.DialContext(ctx, "unix", path)
		},
	}}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "unix", path)
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("%w: %s: the home belongs to another user (%s); run dms as that user, or pass --home with a home of your own", ErrPermission, path, owner(dir))
	}
	if err != nil {
		// No socket, or one a crashed node left that nobody answers on.
		return nil, fmt.Errorf("%w on %s (start one with: dms --home %s run)", ErrNoNode, dir, home.ShellQuote(dir))
	}
	c.probe, c.when = conn, time.Now()
	return c, nil
}

// ErrPermission: the home or its socket belongs to someone else.
var ErrPermission = errors.New("permission denied")

// owner names the user that owns dir, for the permission message.
func owner(dir string) string {
	st, err := os.Stat(dir)
	if err != nil {
		return "unknown owner"
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if u, err := user.LookupId(strconv.Itoa(int(sys.Uid))); err == nil {
			return "owner " + u.Username
		}
		return fmt.Sprintf("owner uid %d", sys.Uid)
	}
	return "unknown owner"
}

// Home is the home of the node the client talks to.
func (c *Client) Home() string { return c.home }

// Close drops the client's idle connections.
func (c *Client) Close() error {
	if conn := c.takeProbe(); conn != nil {
		conn.Close()
	}
	c.http.CloseIdleConnections()
	return nil
}

// do sends a request; a failed call's body comes back as its error.
func (c *Client) do(ctx context.Context, method, path string, req any) (*http.Response, error) {
	var body io.Reader
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, method, "http://dms"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("control API on %s: %w", c.home, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		we := &wireError{}
		if json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(we) != nil || we.Error == "" {
			return nil, fmt.Errorf("control API on %s: %s", c.home, resp.Status)
		}
		return nil, &callError{w: we}
	}
	return resp, nil
}

// callError carries a failed call's body from do to call, which may decode
// its result.
type callError struct{ w *wireError }

func (e *callError) Error() string { return e.w.Error }

// call makes a JSON call. A failed call that returned a reply as well
// fills resp with it.
func (c *Client) call(ctx context.Context, method, path string, req, resp any) error {
	r, err := c.do(ctx, method, path, req)
	var ce *callError
	if errors.As(err, &ce) {
		if len(ce.w.Result) > 0 && resp != nil && string(ce.w.Result) != "null" {
			_ = json.Unmarshal(ce.w.Result, resp)
		}
		return fromWire(ce.w)
	}
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if resp == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(resp); err != nil {
		return fmt.Errorf("control API reply: %w", err)
	}
	return nil
}

// stream makes a streamed call: onEvent sees each event line, the final
// line decodes into resp (also when the call failed, if it carries one).
func (c *Client) stream(ctx context.Context, path string, req any, onEvent func(json.RawMessage), resp any) error {
	return c.streamMethod(ctx, http.MethodPost, path, req, onEvent, resp)
}

func (c *Client) streamMethod(ctx context.Context, method, path string, req any, onEvent func(json.RawMessage), resp any) error {
	r, err := c.do(ctx, method, path, req)
	var ce *callError
	if errors.As(err, &ce) {
		return fromWire(ce.w) // refused before streaming began (a bad request)
	}
	if err != nil {
		return err
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 64<<10), maxBody)
	for sc.Scan() {
		var line streamLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("control API stream: %w", err)
		}
		if line.Event != nil {
			if onEvent != nil {
				onEvent(line.Event)
			}
			continue
		}
		if line.Result != nil && resp != nil && string(line.Result) != "null" {
			if err := json.Unmarshal(line.Result, resp); err != nil {
				return fmt.Errorf("control API result: %w", err)
			}
		}
		if line.Error != nil {
			return fromWire(line.Error)
		}
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("control API stream: %w", err)
	}
	return fmt.Errorf("control API stream from %s ended without a result (did the node stop?)", c.home)
}

// progressEvents decodes streamed benchmark progress for progress (nil:
// dropped).
func progressEvents(progress func(resources.Progress)) func(json.RawMessage) {
	return func(raw json.RawMessage) {
		var p resources.Progress
		if progress != nil && json.Unmarshal(raw, &p) == nil {
			progress(p)
		}
	}
}

// ID asks who the node is.
func (c *Client) ID(ctx context.Context) (IDResponse, error) {
	var r IDResponse
	return r, c.call(ctx, http.MethodGet, PathID, nil, &r)
}

// Peers lists the node's connected peers.
func (c *Client) Peers(ctx context.Context) (PeersResponse, error) {
	var r PeersResponse
	return r, c.call(ctx, http.MethodGet, PathPeers, nil, &r)
}

// Providers lists what the node, as a requester, has seen each provider do.
func (c *Client) Providers(ctx context.Context) (ProvidersResponse, error) {
	var r ProvidersResponse
	return r, c.call(ctx, http.MethodGet, PathProviders, nil, &r)
}

// Status summarises the node.
func (c *Client) Status(ctx context.Context) (StatusResponse, error) {
	var r StatusResponse
	return r, c.call(ctx, http.MethodGet, PathStatus, nil, &r)
}

// Capability returns the node's accounts.
func (c *Client) Capability(ctx context.Context, req CapabilityRequest) (CapabilityResponse, error) {
	path := PathCapability
	if req.Reserve != nil {
		path += "?" + url.Values{"reserve": {req.Reserve.String()}}.Encode()
	}
	var r CapabilityResponse
	return r, c.call(ctx, http.MethodGet, path, nil, &r)
}

// Onboard changes the node's offer; progress follows a first benchmark.
func (c *Client) Onboard(ctx context.Context, req OnboardRequest, progress func(resources.Progress)) (OnboardResponse, error) {
	var r OnboardResponse
	return r, c.stream(ctx, PathOnboard, req, progressEvents(progress), &r)
}

// Offboard withdraws the node's offer.
func (c *Client) Offboard(ctx context.Context, req OffboardRequest) (OffboardResponse, error) {
	var r OffboardResponse
	return r, c.call(ctx, http.MethodPost, PathOffboard, req, &r)
}

// Probe publishes a probe from the node (see PathProbe).
func (c *Client) Probe(ctx context.Context, req ProbeRequest) (ProbeResponse, error) {
	var r ProbeResponse
	return r, c.call(ctx, http.MethodPost, PathProbe, req, &r)
}

// Benchmark runs and stores the node's benchmark.
func (c *Client) Benchmark(ctx context.Context, req BenchmarkRequest, progress func(resources.Progress)) (BenchmarkResponse, error) {
	var r BenchmarkResponse
	return r, c.stream(ctx, PathBenchmark, req, progressEvents(progress), &r)
}

// SubmitJob puts a job to the mesh; progress sees each step. Attached, the
// call returns when the job ends (and cancels it if ctx ends first);
// detached, once it is submitted. The record comes back also when the job
// failed.
func (c *Client) SubmitJob(ctx context.Context, req SubmitJobRequest, progress func(orchestrator.Progress)) (node.JobRecord, error) {
	var rec node.JobRecord
	err := c.stream(ctx, PathJobs, req, func(raw json.RawMessage) {
		var p orchestrator.Progress
		if progress != nil && json.Unmarshal(raw, &p) == nil {
			progress(p)
		}
	}, &rec)
	return rec, err
}

// Jobs lists the jobs submitted from the node.
func (c *Client) Jobs(ctx context.Context) (JobListResponse, error) {
	var r JobListResponse
	return r, c.call(ctx, http.MethodGet, PathJobs, nil, &r)
}

// JobSummaries lists the jobs submitted from the node, oldest first, as
// summaries: what a table of them shows.
func (c *Client) JobSummaries(ctx context.Context) (JobSummaryListResponse, error) {
	var r JobSummaryListResponse
	return r, c.call(ctx, http.MethodGet, PathJobs+"?view="+ViewSummary, nil, &r)
}

func jobPath(id, suffix string) string { return PathJobs + "/" + url.PathEscape(id) + suffix }

// Job returns a job by its ID or a unique prefix of it.
func (c *Client) Job(ctx context.Context, id string) (node.JobRecord, error) {
	var r node.JobRecord
	return r, c.call(ctx, http.MethodGet, jobPath(id, ""), nil, &r)
}

// JobLogs returns a job's output.
func (c *Client) JobLogs(ctx context.Context, id string) (JobLogsResponse, error) {
	var r JobLogsResponse
	return r, c.call(ctx, http.MethodGet, jobPath(id, "/logs"), nil, &r)
}

// JobBids returns the bids for a job, both sides'.
func (c *Client) JobBids(ctx context.Context, id string) (JobBidsResponse, error) {
	var r JobBidsResponse
	return r, c.call(ctx, http.MethodGet, jobPath(id, "/bids"), nil, &r)
}

// CancelJob stops a job and waits, up to CancelWait, for it to end.
func (c *Client) CancelJob(ctx context.Context, id string) (node.JobRecord, error) {
	var r node.JobRecord
	return r, c.call(ctx, http.MethodPost, jobPath(id, "/cancel"), nil, &r)
}

// Allocations lists what the node runs or ran for others.
func (c *Client) Allocations(ctx context.Context) (AllocationsResponse, error) {
	var r AllocationsResponse
	return r, c.call(ctx, http.MethodGet, PathAllocations, nil, &r)
}

// FollowLogs streams a running job's output events to onEvent until the job
// ends, then returns its logs as JobLogs would. For a job that has ended it
// returns at once.
func (c *Client) FollowLogs(ctx context.Context, id string, onEvent func(orchestrator.Event)) (JobLogsResponse, error) {
	var r JobLogsResponse
	err := c.streamMethod(ctx, http.MethodGet, jobPath(id, "/logs")+"?follow=true", nil, func(raw json.RawMessage) {
		var e orchestrator.Event
		if onEvent != nil && json.Unmarshal(raw, &e) == nil {
			onEvent(e)
		}
	}, &r)
	return r, err
}

// JobOutputs returns the tar archive of the files a job left in /outputs.
func (c *Client) JobOutputs(ctx context.Context, id string) ([]byte, error) {
	r, err := c.do(ctx, http.MethodGet, jobPath(id, "/outputs"), nil)
	var ce *callError
	if errors.As(err, &ce) {
		return nil, fromWire(ce.w)
	}
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	data, err := io.ReadAll(io.LimitReader(r.Body, orchestrator.MaxOutputSize+1<<20))
	if err != nil {
		return nil, fmt.Errorf("job outputs: %w", err)
	}
	return data, nil
}
