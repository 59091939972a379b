package main

// The control API: a running node (`dms run`) serves HTTP on a unix socket
// in its home, mode 0600 inside a 0700 directory, so only the home's owner
// can reach it. The CLI's other commands talk to it. Plain requests and
// replies are JSON; long operations (a job submission) stream one JSON
// object per line.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/resources"
)

// SocketFile is the control socket's name in the home.
const SocketFile = "dms.sock"

// maxControlBody bounds a request to the control API: a job with its module
// is the largest thing sent, and modules are capped at 16 MiB.
const maxControlBody = 32 << 20

// errNoNode says that no node runs on the home; commands that need one turn
// it into a hint to start one.
var errNoNode = errors.New("no dms node is running")

// maxSocketPath is the longest socket path every unix accepts (sun_path is
// 104 bytes on the BSDs and macOS, 108 on Linux, both with the NUL).
const maxSocketPath = 103

// apiError is the body of a failed control call. Usage marks a mistake of
// the caller (bad flag value, unknown job), which the CLI exits 2 for. Code
// names the sentinel error behind it (see errorCodes), so that errors.Is
// works on the client as it would have in-process. Result is the reply the
// call returned alongside its error, when it has one worth reading (an
// offboarding refused lists the allocations in the way).
type apiError struct {
	Error  string          `json:"error"`
	Usage  bool            `json:"usage,omitempty"`
	Code   string          `json:"code,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// errorCodes are the sentinel errors that survive the socket. Add one where
// a command branches on errors.Is for an error a running node returns.
var errorCodes = []struct {
	code string
	err  error
}{
	{"active_allocations", onboarding.ErrActiveAllocations},
	{"below_locked", onboarding.ErrBelowLocked},
	{"invalid_offer", onboarding.ErrInvalidOffer},
	{"home_in_use", resources.ErrHomeInUse},
	{"not_initialized", node.ErrNotInitialized},
	{"not_found", node.ErrNotFound},
	{"node_stopping", errNodeStopping},
}

func errorCode(err error) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ""
}

func codeError(code string) error {
	for _, c := range errorCodes {
		if c.code == code {
			return c.err
		}
	}
	return nil
}

// streamLine is one line of a streamed reply: an event, or the end with a
// result or an error.
type streamLine struct {
	Event  json.RawMessage `json:"event,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *apiError       `json:"error,omitempty"`
}

// controlServer serves the control API for one node.
type controlServer struct {
	mux  *http.ServeMux
	srv  *http.Server
	ln   net.Listener
	log  *slog.Logger
	path string
	// base is every call's context; close cancels it, so that a streamed
	// call (a job being followed) ends instead of holding the node open.
	base   context.Context
	cancel context.CancelFunc
	served sync.WaitGroup
}

func newControlServer(log *slog.Logger) *controlServer {
	mux := http.NewServeMux()
	base, cancel := context.WithCancel(context.Background())
	s := &controlServer{mux: mux, log: log.With("subsystem", "control"), base: base, cancel: cancel}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return s.base }}
	return s
}

// socketPath is the control socket of the home in dir.
func socketPath(dir string) string { return filepath.Join(dir, SocketFile) }

// listen opens the socket in home. A socket left by a crashed node is
// removed first: the caller holds the home's datastore, so no live node
// can be serving it.
func (s *controlServer) listen(home string) error {
	path := socketPath(home)
	if len(path) > maxSocketPath {
		return fmt.Errorf("control socket: path %s is %d bytes, longer than the %d a unix socket allows: use a home with a shorter path", path, len(path), maxSocketPath)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control socket: remove stale %s: %w", path, err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	s.ln, s.path = ln, path
	s.served.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("control API stopped", "err", err)
		}
	})
	return nil
}

// close stops accepting calls, cancels those under way and waits (up to
// ctx) for their handlers to return, so that nothing uses the node after
// it. Closing the listener removes the socket file, so the CLI then finds
// no node. Calls are cancelled rather than awaited because a streamed one
// may follow a job for hours; a short call's own writes (the ledger's) do
// not depend on its context.
func (s *controlServer) close(ctx context.Context) error {
	s.cancel()
	if s.ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	s.served.Wait()
	// The listener unlinks its socket on close; this makes sure of it,
	// since a socket left behind would send the CLI to a dead node first.
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// errNodeStopping: a call was cut short because the node is shutting down.
var errNodeStopping = errors.New("the node is stopping")

// stopping says why a call failed when close cancelled it, rather than a
// bare "context canceled".
func (s *controlServer) stopping(err error) error {
	if s.base.Err() != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w (the call was cancelled: %w)", errNodeStopping, err)
	}
	return err
}

// handle registers a JSON call: the request body decodes into Req, fn's
// reply encodes as the response.
func handle[Req, Resp any](s *controlServer, pattern string, fn func(ctx context.Context, req Req) (Resp, error)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decodeBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		resp, err := fn(r.Context(), req)
		if err != nil {
			e := toAPIError(s.stopping(err))
			if b, merr := json.Marshal(resp); merr == nil {
				e.Result = b
			}
			writeAPIError(w, e)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
}

// handleStream registers a streamed call: fn sends events as they happen
// and returns the final result.
func handleStream[Req, Ev, Resp any](s *controlServer, pattern string, fn func(ctx context.Context, req Req, send func(Ev)) (Resp, error)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decodeBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		flusher, _ := w.(http.Flusher)
		enc := json.NewEncoder(w)
		events := make(chan Ev, 256)
		done := make(chan struct{})
		go func() { // one writer: events and the final line never interleave
			defer close(done)
			for ev := range events {
				b, err := json.Marshal(ev)
				if err == nil && enc.Encode(streamLine{Event: b}) == nil && flusher != nil {
					flusher.Flush()
				}
			}
		}()
		resp, err := fn(r.Context(), req, func(ev Ev) {
			select {
			case events <- ev:
			default: // a reader that cannot keep up loses progress lines, never the result
			}
		})
		close(events)
		<-done
		line := streamLine{}
		if err != nil {
			line.Error = toAPIError(s.stopping(err))
		}
		if b, merr := json.Marshal(resp); merr == nil {
			line.Result = b
		}
		_ = enc.Encode(line)
	})
}

func decodeBody(r *http.Request, v any) error {
	if r.Body == nil || r.ContentLength == 0 {
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxControlBody))
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return usagef("control request: %v", err)
	}
	return nil
}

func toAPIError(err error) *apiError {
	err = classify(err)
	var ue *usageError
	return &apiError{Error: err.Error(), Usage: errors.As(err, &ue), Code: errorCode(err)}
}

func writeError(w http.ResponseWriter, err error) { writeAPIError(w, toAPIError(err)) }

func writeAPIError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	if e.Usage {
		w.WriteHeader(http.StatusBadRequest)
	} else {
		w.WriteHeader(http.StatusInternalServerError)
	}
	_ = json.NewEncoder(w).Encode(e)
}

// controlClient calls a running node's control API.
type controlClient struct {
	home string
	http *http.Client
}

// dialControl connects to the node running on home, or returns errNoNode
// (wrapped with a hint) when none answers.
func dialControl(ctx context.Context, home string) (*controlClient, error) {
	if abs, err := filepath.Abs(home); err == nil {
		home = abs
	}
	path := socketPath(home)
	var d net.Dialer
	c := &controlClient{home: home, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
	}}}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "unix", path)
	if err != nil {
		// No socket, or one a crashed node left that nobody answers on.
		return nil, fmt.Errorf("%w on %s (start one with: dms --home %s run)", errNoNode, home, shellQuote(home))
	}
	conn.Close()
	return c, nil
}

func (c *controlClient) post(ctx context.Context, path string, req any) (*http.Response, error) {
	var body io.Reader
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://dms"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("control API on %s: %w", c.home, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		e := &apiError{}
		if json.NewDecoder(io.LimitReader(resp.Body, maxControlBody)).Decode(e) != nil || e.Error == "" {
			return nil, fmt.Errorf("control API on %s: %s", c.home, resp.Status)
		}
		return nil, &callError{api: e}
	}
	return resp, nil
}

// callError carries a failed call's body from post to call, which may
// decode its result.
type callError struct{ api *apiError }

func (e *callError) Error() string { return e.api.Error }

// remoteError rebuilds a node's error on this side: a usage error stays
// one, and a known sentinel stays matchable with errors.Is.
func remoteError(e *apiError) error {
	sentinel := codeError(e.Code)
	if e.Usage {
		return &usageError{msg: e.Error, err: sentinel}
	}
	if sentinel != nil {
		return &wrappedError{msg: e.Error, err: sentinel}
	}
	return errors.New(e.Error)
}

// wrappedError is a message with a sentinel under it.
type wrappedError struct {
	msg string
	err error
}

func (e *wrappedError) Error() string { return e.msg }
func (e *wrappedError) Unwrap() error { return e.err }

// call makes a JSON call; every control call is a POST so that requests
// carry a body the same way.
// A failed call that returned a reply as well fills resp with it.
func (c *controlClient) call(ctx context.Context, path string, req, resp any) error {
	r, err := c.post(ctx, path, req)
	var ce *callError
	if errors.As(err, &ce) {
		if len(ce.api.Result) > 0 && resp != nil && string(ce.api.Result) != "null" {
			_ = json.Unmarshal(ce.api.Result, resp)
		}
		return remoteError(ce.api)
	}
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if resp == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxControlBody)).Decode(resp); err != nil {
		return fmt.Errorf("control API reply: %w", err)
	}
	return nil
}

// stream makes a streamed call: onEvent sees each event line, the final
// line decodes into resp (also when the call failed, if it carries one).
func (c *controlClient) stream(ctx context.Context, path string, req any, onEvent func(json.RawMessage), resp any) error {
	r, err := c.post(ctx, path, req)
	var ce *callError
	if errors.As(err, &ce) {
		return remoteError(ce.api) // refused before streaming began (a bad request)
	}
	if err != nil {
		return err
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 64<<10), maxControlBody)
	for sc.Scan() {
		var line streamLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("control API stream: %w", err)
		}
		if line.Event != nil {
			onEvent(line.Event)
			continue
		}
		if line.Result != nil && resp != nil && string(line.Result) != "null" {
			if err := json.Unmarshal(line.Result, resp); err != nil {
				return fmt.Errorf("control API result: %w", err)
			}
		}
		if line.Error != nil {
			return remoteError(line.Error)
		}
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("control API stream: %w", err)
	}
	return fmt.Errorf("control API stream from %s ended without a result (did the node stop?)", c.home)
}

func (c *controlClient) Close() error {
	c.http.CloseIdleConnections()
	return nil
}
