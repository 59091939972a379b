package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

// Server serves the control API of one node. The node does the work; the
// handlers only decode requests, shape replies and say which failures are
// the caller's.
type Server struct {
	n    *node.Node
	home string
	log  *slog.Logger
	mux  *http.ServeMux
	srv  *http.Server
	ln   net.Listener
	path string
	// base is every call's context; Close cancels it, so that a streamed
	// call (a job being followed) ends instead of holding the node open.
	base   context.Context
	cancel context.CancelFunc
	served sync.WaitGroup
}

// NewServer routes the control API over n, whose home is homeDir.
func NewServer(n *node.Node, homeDir string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	base, cancel := context.WithCancel(context.Background())
	s := &Server{n: n, home: homeDir, log: log.With("subsystem", "control"), mux: http.NewServeMux(), base: base, cancel: cancel}
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return s.base }}
	s.routes()
	return s
}

func (s *Server) routes() {
	n := s.n
	get(s, PathID, func(*http.Request) (IDResponse, error) {
		r := IDResponse{PeerID: n.ID().String(), Network: n.Network(), Home: s.home, PID: os.Getpid()}
		for _, a := range n.Addrs() {
			r.Addrs = append(r.Addrs, a.String())
		}
		return r, nil
	})
	get(s, PathPeers, func(*http.Request) (PeersResponse, error) {
		return PeersResponse{Topic: n.Diagnostics().Topic(), Peers: n.Peers()}, nil
	})
	get(s, PathProviders, func(*http.Request) (ProvidersResponse, error) {
		return ProvidersResponse{Providers: n.Providers()}, nil
	})
	get(s, PathStatus, func(*http.Request) (StatusResponse, error) {
		return StatusResponse{Status: n.Status(), Home: s.home, PID: os.Getpid()}, nil
	})
	get(s, PathCapability, func(r *http.Request) (CapabilityResponse, error) {
		var reserve *resources.Reserve
		if v := r.URL.Query().Get("reserve"); v != "" {
			res, err := resources.ParseReserve(v)
			if err != nil {
				return CapabilityResponse{}, badRequest(fmt.Errorf("reserve: %w", err))
			}
			reserve = &res
		}
		return n.Accounts(r.Context(), reserve)
	})
	stream(s, "POST "+PathOnboard, func(ctx context.Context, req OnboardRequest, send func(resources.Progress)) (OnboardResponse, error) {
		return n.Onboard(ctx, req, send)
	})
	post(s, PathOffboard, func(ctx context.Context, req OffboardRequest) (OffboardResponse, error) {
		rep, err := n.Offboard(ctx, req.Force)
		return OffboardResponse{Home: s.home, Report: rep}, err
	})
	stream(s, "POST "+PathBenchmark, func(ctx context.Context, req BenchmarkRequest, send func(resources.Progress)) (BenchmarkResponse, error) {
		b, err := n.BenchmarkCapability(ctx, req.Duration.Std(), send)
		return BenchmarkResponse{Home: s.home, Benchmark: b, Registered: n.RegisteredCapability()}, err
	})

	stream(s, "POST "+PathJobs, s.submit)
	get(s, PathJobs, func(r *http.Request) (any, error) {
		if r.URL.Query().Get("view") == ViewSummary {
			jobs := n.Jobs()
			resp := JobSummaryListResponse{Jobs: make([]JobSummary, len(jobs))}
			for i, j := range jobs {
				resp.Jobs[i] = Summarise(j)
			}
			return resp, nil
		}
		return JobListResponse{Jobs: n.Jobs()}, nil
	})
	get(s, PathJobs+"/{id}", func(r *http.Request) (node.JobRecord, error) {
		return s.findJob(r.PathValue("id"))
	})
	s.mux.HandleFunc("GET "+PathJobs+"/{id}/logs", s.jobLogs)
	s.mux.HandleFunc("GET "+PathJobs+"/{id}/outputs", s.jobOutputs)
	get(s, PathJobs+"/{id}/bids", func(r *http.Request) (JobBidsResponse, error) {
		return s.jobBids(r.PathValue("id"))
	})
	s.mux.HandleFunc("POST "+PathJobs+"/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		rec, err := s.findJob(r.PathValue("id"))
		if err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), CancelWait)
			rec, err = n.CancelJob(ctx, rec.ID)
			cancel()
		}
		s.reply(w, rec, err)
	})
	post(s, PathProbe, func(ctx context.Context, req ProbeRequest) (ProbeResponse, error) {
		id := req.JobID
		if id == "" {
			id = orchestrator.NewJobID()
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return ProbeResponse{JobID: id}, n.Diagnostics().Probe(ctx, id)
	})
	get(s, PathAllocations, func(*http.Request) (AllocationsResponse, error) {
		return AllocationsResponse{Allocations: n.Allocations()}, nil
	})
	s.mux.Handle("GET "+PathMetrics, MetricsHandler(n))
	s.mux.Handle("GET "+PathHealth, HealthHandler(n))
}

// MetricsHandler serves the node's metrics in Prometheus's text format.
func MetricsHandler(n *node.Node) http.Handler {
	return promhttp.HandlerFor(n.Metrics(), promhttp.HandlerOpts{})
}

// Health is what GET /healthz says.
type Health struct {
	Status     string           `json:"status"` // "ok" or "stopping"
	PeerID     string           `json:"peer_id"`
	Peers      int              `json:"peers"`
	TopicPeers int              `json:"topic_peers"`
	Uptime     seconds.Duration `json:"uptime"`
}

// HealthHandler answers supervisors: 200 and "ok" while the node runs, 503
// once it is stopping. A node with no peers is healthy: it may be the
// first of its network; peers and topic_peers say how connected it is.
func HealthHandler(n *node.Node) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := n.Status()
		h := Health{Status: "ok", PeerID: st.ID.String(), Peers: st.Peers, TopicPeers: st.TopicPeers, Uptime: st.Uptime}
		code := http.StatusOK
		if n.Stopping() {
			h.Status, code = "stopping", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(h)
	})
}

// ServeOperators serves /metrics and /healthz on ln (dms run --metrics)
// until ctx ends; it returns once the server has stopped.
func ServeOperators(ctx context.Context, ln net.Listener, n *node.Node, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", MetricsHandler(n))
	mux.Handle("GET "+PathHealth, HealthHandler(n))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("metrics listener: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-done; e != nil && !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	return err
}

// Handler is the API's HTTP handler, for tests that serve it elsewhere.
func (s *Server) Handler() http.Handler { return s.mux }

// Listen opens the control socket in the home and serves on it. A socket
// left by a crashed node is removed first: the caller holds the home's
// datastore, so no live node can be serving it.
func (s *Server) Listen() error {
	path := home.SocketPath(s.home)
	if err := home.CheckSocketPath(path); err != nil {
		return err
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

// Close stops accepting calls, cancels those under way and waits (up to
// ctx) for their handlers to return, so that nothing uses the node after
// it. Calls are cancelled rather than awaited because a streamed one may
// follow a job for hours; a short call's own writes (the ledger's) do not
// depend on its context. Closing removes the socket, so that the command
// line then finds no node rather than a dead one.
func (s *Server) Close(ctx context.Context) error {
	s.cancel()
	if s.ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	s.served.Wait()
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// stopping says why a call failed when Close cancelled it, rather than a
// bare "context canceled".
func (s *Server) stopping(err error) error {
	if err != nil && s.base.Err() != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w (the call was cancelled: %w)", node.ErrStopping, err)
	}
	return err
}

// reply writes resp, or err with resp beside it.
func (s *Server) reply(w http.ResponseWriter, resp any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		we, status := toWire(s.stopping(err))
		if b, merr := json.Marshal(resp); merr == nil {
			we.Result = b
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(we)
		return
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// get registers a read.
func get[Resp any](s *Server, path string, fn func(*http.Request) (Resp, error)) {
	s.mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		resp, err := fn(r)
		s.reply(w, resp, err)
	})
}

// post registers a JSON call: the body decodes into Req.
func post[Req, Resp any](s *Server, path string, fn func(context.Context, Req) (Resp, error)) {
	s.mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decodeBody(r, &req); err != nil {
			s.reply(w, nil, err)
			return
		}
		resp, err := fn(r.Context(), req)
		s.reply(w, resp, err)
	})
}

// stream registers a streamed call: fn sends events as they happen and
// returns the final result.
func stream[Req, Ev, Resp any](s *Server, pattern string, fn func(context.Context, Req, func(Ev)) (Resp, error)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decodeBody(r, &req); err != nil {
			s.reply(w, nil, err)
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
			line.Error, _ = toWire(s.stopping(err))
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
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return badRequest(fmt.Errorf("control request: %w", err))
	}
	return nil
}

func (s *Server) findJob(id string) (node.JobRecord, error) {
	if strings.TrimSpace(id) == "" {
		return node.JobRecord{}, badRequest(errors.New("a job ID is required (dms job list shows them)"))
	}
	return s.n.FindJob(id)
}

// submit runs a submission. Attached, the job is tied to the call: a caller
// that goes away (Ctrl-C on dms job submit) cancels it on its provider
// instead of leaving it to run unwatched. Output events are not forwarded:
// the output arrives whole, bounded, in the final record, and a progress
// line that a slow reader misses must never cost a piece of it.
func (s *Server) submit(ctx context.Context, req SubmitJobRequest, send func(orchestrator.Progress)) (*node.JobRecord, error) {
	n := s.n
	sub := orchestrator.Submission{Job: req.Job, MaxPrice: req.MaxPrice, Inputs: req.Inputs,
		QueueTimeout: req.QueueTimeout.Std(), RetryOnFailure: req.RetryOnFailure, Replication: req.Replication}
	if err := sub.Validate(); err != nil {
		return nil, badRequest(err)
	}
	if sub.Job.ID == "" {
		sub.Job.ID = orchestrator.NewJobID()
	}
	if req.Detach {
		id, err := n.StartJob(sub)
		if err != nil {
			return nil, err
		}
		rec, err := n.Job(id)
		if err != nil {
			return nil, err
		}
		return &rec, nil
	}
	jobCtx, stopJob := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJob()
	stop := context.AfterFunc(ctx, func() {
		cctx, cancel := context.WithTimeout(context.Background(), CancelWait)
		defer cancel()
		if _, err := n.CancelJob(cctx, sub.Job.ID); err != nil {
			stopJob() // not recorded yet, or the provider is unreachable
		}
	})
	defer stop()
	// Output events go to the caller as they come, each with its offset:
	// one a slow caller misses (stream's buffer full) it notices, and
	// prints the rest from the final record, which has all of it.
	rec, err := n.SubmitJob(jobCtx, sub, send)
	if rec.ID == "" { // refused before it was recorded (a duplicate ID)
		return nil, err
	}
	if err == nil && rec.State == node.JobCancelled && s.base.Err() != nil {
		err = fmt.Errorf("%w: job %s was cancelled with the call", node.ErrStopping, rec.ID)
	}
	return &rec, err
}

// jobBids gathers both sides' bids for a job. The job book resolves
// prefixes; a job this node only bid for must be named in full.
func (s *Server) jobBids(id string) (JobBidsResponse, error) {
	id = strings.TrimSpace(id)
	resp := JobBidsResponse{JobID: id}
	rec, err := s.findJob(id)
	switch {
	case err == nil:
		resp.JobID, resp.Requester, resp.Received, resp.Winner = rec.ID, true, rec.Bids, rec.Provider
	case !errors.Is(err, node.ErrNotFound):
		return resp, err
	}
	resp.Placed = s.n.RegisteredBids(resp.JobID)
	resp.Declined = s.n.DeclinedBid(resp.JobID)
	if !resp.Requester && len(resp.Placed) == 0 && resp.Declined == "" {
		return resp, err // the unknown-job error
	}
	return resp, nil
}

func logsOf(rec node.JobRecord) JobLogsResponse {
	resp := JobLogsResponse{ID: rec.ID, State: rec.State, Error: rec.Error}
	if res := rec.Result; res != nil {
		resp.HasResult = true
		resp.Stdout, resp.Stderr = res.Stdout, res.Stderr
		resp.StdoutTruncated, resp.StderrTruncated = res.StdoutTruncated, res.StderrTruncated
	}
	return resp
}

// jobLogs answers a job's output. With ?follow=true it streams the output
// of a running job as it arrives, then the final record's logs.
func (s *Server) jobLogs(w http.ResponseWriter, r *http.Request) {
	rec, err := s.findJob(r.PathValue("id"))
	if err != nil || r.URL.Query().Get("follow") != "true" {
		s.reply(w, logsOf(rec), err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	for ev := range s.n.FollowJob(r.Context(), rec.ID) {
		b, err := json.Marshal(ev)
		if err != nil || enc.Encode(streamLine{Event: b}) != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
	line := streamLine{}
	if r.Context().Err() == nil {
		rec, err = s.n.WaitJob(r.Context(), rec.ID)
	}
	if err == nil {
		err = r.Context().Err()
	}
	if err != nil {
		line.Error, _ = toWire(s.stopping(err))
	}
	if b, merr := json.Marshal(logsOf(rec)); merr == nil {
		line.Result = b
	}
	_ = enc.Encode(line)
}

// jobOutputs answers the files a job left in /outputs, as a tar archive.
func (s *Server) jobOutputs(w http.ResponseWriter, r *http.Request) {
	rec, err := s.findJob(r.PathValue("id"))
	if err == nil {
		switch o := rec.Outputs; {
		case o == nil && !rec.Final():
			err = badRequest(fmt.Errorf("job %s is still %s: its outputs come when it ends", rec.ID, rec.State))
		case o == nil:
			err = fmt.Errorf("job %s left no files in /outputs", rec.ID)
		case o.Error != "":
			err = fmt.Errorf("job %s's outputs could not be fetched from its provider: %s", rec.ID, o.Error)
		}
	}
	var data []byte
	if err == nil {
		data, _, err = archive.PackDir(rec.Outputs.Dir, orchestrator.MaxOutputSize)
	}
	if err != nil {
		s.reply(w, nil, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	_, _ = w.Write(data)
}
