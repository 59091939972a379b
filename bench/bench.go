// Package bench measures the whole stack in one process, as `dms bench`
// reports it: the gossip floor, submit-to-running and submit-to-done,
// throughput, join time, memory per node and the bid traffic per job.
// Every figure is taken in the same run as the floor it is compared with.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/p2p"
	"github.com/dms-project/dms/testnet"
)

// Config says what to measure.
type Config struct {
	Nodes       int
	Jobs        int
	Concurrency int
	// FloorSamples is how many gossip messages measure the floor.
	FloorSamples int
	// TopicOnly sends every bid request on the topic, to every node, as
	// before requests went straight to the nearest providers: to compare.
	TopicOnly bool
	// JobsProfile, if set, receives a CPU profile of the jobs phase alone.
	JobsProfile io.Writer
	// OnNetwork, if set, is given the network's nodes once they are up
	// (dms bench --metrics serves their metrics; see MeshGatherer).
	OnNetwork func(nodes []*node.Node)
	// Progress, if set, is told what the bench is doing.
	Progress func(string)
	Logger   *slog.Logger
}

// Validate checks the sizes.
func (c *Config) Validate() error {
	switch {
	case c.Nodes < 3:
		return fmt.Errorf("nodes %d: want at least 3 (a requester and two providers)", c.Nodes)
	case c.Jobs < 1:
		return fmt.Errorf("jobs %d: want at least 1", c.Jobs)
	case c.Concurrency < 1:
		return fmt.Errorf("concurrency %d: want at least 1", c.Concurrency)
	case c.FloorSamples < 1:
		return fmt.Errorf("floor samples %d: want at least 1", c.FloorSamples)
	}
	return nil
}

// Percentiles of a distribution of durations.
type Percentiles struct {
	P50 seconds.Duration `json:"p50"`
	P95 seconds.Duration `json:"p95"`
	P99 seconds.Duration `json:"p99"`
	N   int              `json:"n"`
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)] }
	return Percentiles{P50: seconds.Duration(at(0.50)), P95: seconds.Duration(at(0.95)), P99: seconds.Duration(at(0.99)), N: len(s)}
}

// Report is one bench run.
type Report struct {
	Nodes       int `json:"nodes"`
	Jobs        int `json:"jobs"`
	Concurrency int `json:"concurrency"`
	Cores       int `json:"cores"`

	Startup seconds.Duration `json:"startup"` // N nodes up and meshed
	// Floor: one bid request reaching every node.
	Floor Percentiles `json:"floor"`
	// FloorIncomplete counts probes that had not reached every node after
	// 5 s; they are not in Floor.
	FloorIncomplete int `json:"floor_incomplete,omitempty"`
	// SubmitToRunning: submission to the winner's running state, at the
	// requester; SubmitToDone: to the result.
	SubmitToRunning Percentiles `json:"submit_to_running"`
	SubmitToDone    Percentiles `json:"submit_to_done"`
	RunningVsFloor  float64     `json:"running_vs_floor"` // p50 / floor p50
	DoneVsFloor     float64     `json:"done_vs_floor"`
	// Phases: the median time from submission to each step, showing where
	// submit-to-running goes.
	Phases map[string]seconds.Duration `json:"phases_p50"`
	// Throughput with Concurrency submitters on different nodes.
	JobsPerSecond float64 `json:"jobs_per_second"`
	Completed     int     `json:"completed"`
	Failed        int     `json:"failed"`
	FirstError    string  `json:"first_error,omitempty"`
	// Join: a fresh node starting until it hears its first bid request.
	Join      seconds.Duration `json:"join"`
	JoinError string           `json:"join_error,omitempty"`
	// Settle is how long start-up work took to die down after the mesh
	// formed; IdleCPU is then the whole network's CPU use, in cores.
	Settle  seconds.Duration `json:"settle"`
	IdleCPU float64          `json:"idle_cpu_cores"`
	// HeapPerNode: Go heap in use divided by the node count, after GC.
	HeapPerNode uint64 `json:"heap_per_node"`
	// CPUPerJobPerNode is the process's CPU time in the jobs phase divided
	// by jobs and nodes: what one job costs one node, which does not depend
	// on how many nodes share this machine (a real provider runs alone).
	CPUPerJobPerNode seconds.Duration `json:"cpu_per_job_per_node"`
	// CPUPerJob is the same CPU time divided by jobs alone: what one job
	// costs the whole mesh, summed over its nodes.
	CPUPerJob seconds.Duration `json:"cpu_per_job"`
	// CPUPerJobAboveIdle is CPUPerJob less what the idle mesh would have
	// used over the jobs phase anyway (IdleCoresBeforeJobs, measured over
	// the 2 s just before the jobs, times JobsWall): the work the jobs
	// themselves made. The idle part grows with the nodes in the process,
	// however few hear each job.
	CPUPerJobAboveIdle  seconds.Duration `json:"cpu_per_job_above_idle"`
	IdleCoresBeforeJobs float64          `json:"idle_cores_before_jobs"`
	// Bid traffic per job: what reached the requesters, what providers sent.
	BidsReceivedPerJob float64 `json:"bids_received_per_job"`
	BidsSentPerJob     float64 `json:"bids_sent_per_job"`
	// Reach is how many nodes other than its requester received each
	// job's bid request: the nodes that decoded, verified and looked at
	// it. Deliveries counts every request handed to a node's provider
	// side, re-sends and widened requests included; Verified, every
	// request whose signature a node's topic validator checked.
	Reach            Spread  `json:"nodes_reached"`
	DeliveriesPerJob float64 `json:"deliveries_per_job"`
	VerifiedPerJob   float64 `json:"verified_per_job"`
	// BytesPerJob: the bytes all nodes wrote to their streams during the
	// jobs phase, divided by jobs; by protocol in BytesPerJobByProtocol.
	// Stream payload, before Noise and yamux framing (see wireCounter).
	// IdleBytesPerSecond is the same mesh's traffic while idle, before the
	// jobs: the part of BytesPerJob that is background is about
	// IdleBytesPerSecond times the jobs phase's length, divided by jobs.
	BytesPerJob           float64            `json:"bytes_per_job"`
	BytesPerJobByProtocol map[string]float64 `json:"bytes_per_job_by_protocol"`
	IdleBytesPerSecond    float64            `json:"idle_bytes_per_second"`
	JobsWall              seconds.Duration   `json:"jobs_wall"`
	// Goroutines once the network has settled; PeakRSS is the process's
	// largest resident memory over the whole run (the kernel's maxrss).
	Goroutines int    `json:"goroutines"`
	PeakRSS    uint64 `json:"peak_rss"`
}

// Spread summarises a count taken once per job.
type Spread struct {
	Mean float64 `json:"mean"`
	Min  int     `json:"min"`
	Max  int     `json:"max"`
	N    int     `json:"n"`
}

func spread(counts []int) Spread {
	if len(counts) == 0 {
		return Spread{}
	}
	s := Spread{Min: slices.Min(counts), Max: slices.Max(counts), N: len(counts)}
	sum := 0
	for _, c := range counts {
		sum += c
	}
	s.Mean = float64(sum) / float64(len(counts))
	return s
}

// Run starts the network, measures and tears it down.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	say := cfg.Progress
	if say == nil {
		say = func(string) {}
	}
	rep := &Report{Nodes: cfg.Nodes, Jobs: cfg.Jobs, Concurrency: cfg.Concurrency, Cores: runtime.NumCPU()}
	obs := newObserver()
	wire := newWireCounter()
	files := openFileLimit()
	start := time.Now()
	say(fmt.Sprintf("starting %d nodes", cfg.Nodes))
	// A network that cannot form says so instead of waiting forever; a
	// large one on a shared machine takes seconds per node to form.
	startCtx, cancelStart := context.WithTimeout(ctx, time.Minute+3*time.Duration(cfg.Nodes)*time.Second)
	defer cancelStart()
	ln, err := testnet.StartLocal(startCtx, testnet.LocalConfig{
		Nodes: cfg.Nodes,
		// Each node offers a little, so a storm of small jobs spreads out.
		Offer:  capability.Capability{CPU: capability.CPU{MilliCores: 1000}, Memory: capability.GiB, Disk: capability.GiB},
		Logger: cfg.Logger,
		Configure: func(i int, c *node.Config) {
			c.Orchestrator.Observe = obs.hook(i)
			c.P2P = append(c.P2P, p2p.WithBandwidth(wire), realTimeouts, fitConnections(cfg.Nodes, files))
			// Bidding closes on the bids, not the window, so a longer window
			// costs nothing when the machine keeps up; when a large run
			// saturates it, jobs wait instead of failing for want of a bid.
			c.Orchestrator.Requester.BiddingWindow = 10 * time.Second
			c.Orchestrator.Requester.TopicOnly = cfg.TopicOnly
		},
	})
	if err != nil {
		return nil, fmt.Errorf("start network: %w", err)
	}
	if cfg.OnNetwork != nil {
		cfg.OnNetwork(ln.Nodes)
	}
	defer ln.Close()
	rep.Startup = seconds.Duration(time.Since(start))

	// Nodes that just started are busy: DHT walks, rendezvous, dials, mesh
	// grafting. A real mesh is mostly old nodes, so the figures are taken
	// once the start-up work has died down, and the idle cost is reported.
	say("waiting for start-up work to settle")
	settled, idle := settle(ctx, 3*time.Second, 45*time.Second)
	rep.Settle, rep.IdleCPU = seconds.Duration(settled), idle
	rep.Goroutines = runtime.NumGoroutine()
	// The idle mesh's own traffic (gossip heartbeats, DHT refreshes), to
	// tell it from what the jobs send.
	b0, t0, c0 := wire.Sent(), time.Now(), processCPU()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(2 * time.Second):
	}
	rep.IdleBytesPerSecond = float64(wire.Sent()-b0) / time.Since(t0).Seconds()
	idleCores := (processCPU() - c0).Seconds() / time.Since(t0).Seconds()

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.HeapPerNode = ms.HeapInuse / uint64(cfg.Nodes)

	say(fmt.Sprintf("measuring the gossip floor (%d messages)", cfg.FloorSamples))
	floor, incomplete, err := measureFloor(ctx, ln, obs, cfg.FloorSamples)
	if err != nil {
		return nil, err
	}
	rep.Floor, rep.FloorIncomplete = percentiles(floor), incomplete

	say(fmt.Sprintf("running %d jobs, %d at a time", cfg.Jobs, cfg.Concurrency))
	if cfg.JobsProfile != nil {
		if err := pprof.StartCPUProfile(cfg.JobsProfile); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
	}
	cpu0 := processCPU()
	err = runJobs(ctx, ln, obs, wire, cfg, rep)
	cpu := processCPU() - cpu0
	rep.CPUPerJobPerNode = seconds.Duration(cpu / time.Duration(cfg.Jobs*cfg.Nodes))
	rep.CPUPerJob = seconds.Duration(cpu / time.Duration(cfg.Jobs))
	rep.IdleCoresBeforeJobs = idleCores
	idleCPU := time.Duration(idleCores * float64(rep.JobsWall.Std()))
	rep.CPUPerJobAboveIdle = seconds.Duration(max(cpu-idleCPU, 0) / time.Duration(cfg.Jobs))
	if cfg.JobsProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return nil, err
	}
	if rep.Floor.P50 > 0 {
		rep.RunningVsFloor = float64(rep.SubmitToRunning.P50) / float64(rep.Floor.P50)
		rep.DoneVsFloor = float64(rep.SubmitToDone.P50) / float64(rep.Floor.P50)
	}

	say("measuring join time")
	// A join that fails is reported with the figures already taken: they
	// cost minutes and stand without it.
	join, err := measureJoin(ctx, ln, obs, cfg.Logger, realTimeouts, fitConnections(cfg.Nodes, files))
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		rep.JoinError = err.Error()
	}
	rep.Join = seconds.Duration(join)
	rep.PeakRSS = peakRSS()
	return rep, nil
}

// peakRSS is the largest resident memory this process has had, in bytes.
func peakRSS() uint64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return uint64(ru.Maxrss) * 1024 // kilobytes on Linux
}

// realTimeouts gives the bench's nodes a real node's dial, stream and
// negotiation timeouts (p2p.DefaultConfig) instead of the test network's
// short ones. Hundreds of nodes starting at once on two shared cores take
// seconds to finish a handshake, and a node whose three bootstrap dials
// all time out stays alone: at 300 nodes a third of them did, and the
// network never formed. Where nothing times out, the timeouts change
// nothing.
func realTimeouts(c *p2p.Config) error {
	d := p2p.DefaultConfig()
	c.DialTimeout, c.StreamTimeout, c.NegotiationTimeout = d.DialTimeout, d.StreamTimeout, d.NegotiationTimeout
	return nil
}

// fitConnections lowers the nodes' connection water marks so that all
// nodes' connections fit the process's open-file limit: every connection
// between two in-process nodes holds two descriptors, one per end, so n
// nodes at ConnHigh hold n x ConnHigh. At 300 nodes a real node's 64 would
// want 19,200 of the 20,000 allowed here; the network ran out while it
// formed and never did, and did again with three quarters of the limit,
// and with half once (DHT lookups dial past the mark until the manager
// trims): nodes that start at once overshoot the high-water mark. So the
// marks take a third; the rest is for that overshoot, listeners, the
// nodes' other files and dials in flight. Up to about 100 nodes at a
// limit of 20,000 nothing changes.
//
// Where it lowers them, the low-water mark is a quarter of the high one,
// not a half: each node dials until it holds ConnLow connections and is
// dialled as much again, so at a half the nodes sat at the high-water
// mark, the manager trimmed them, and the trimmed nodes dialled again. At
// 300 nodes that churn of handshakes was most of a forming network's CPU.
func fitConnections(nodes int, limit uint64) p2p.Option {
	return func(c *p2p.Config) error {
		if limit == 0 || nodes < 1 {
			return nil
		}
		high := int(limit / 3 / uint64(nodes))
		if high >= c.ConnHigh {
			return nil
		}
		c.ConnHigh = max(high, 4)
		c.ConnLow = max(1, min(c.ConnLow, c.ConnHigh/4))
		return nil
	}
}

// openFileLimit raises the process's limit on open files as far as it is
// allowed (past the hard limit only with the privilege to; Go has already
// raised the soft limit to the hard one) and returns it; 0 when unknown.
func openFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	const want = 1 << 20 // Linux's default ceiling (fs.nr_open)
	if l.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return want
		}
	}
	return l.Cur
}

// settle waits until this process's CPU use over one second is under half
// the cores and stops falling (falls less than a tenth), at least least
// and at most most, and returns
// how long it waited and the last second's use in cores.
func settle(ctx context.Context, least, most time.Duration) (time.Duration, float64) {
	start := time.Now()
	prev, last := math.Inf(1), 0.0
	t0, c0 := time.Now(), processCPU()
	for time.Since(start) < most {
		select {
		case <-ctx.Done():
			return time.Since(start), last
		case <-time.After(time.Second):
		}
		t1, c1 := time.Now(), processCPU()
		last = (c1 - c0).Seconds() / t1.Sub(t0).Seconds()
		t0, c0 = t1, c1
		// Settled: well below saturation and no longer falling. A network
		// that keeps every core busy has not settled, however flat.
		busy := last > 0.5*float64(runtime.NumCPU())
		if time.Since(start) >= least && !busy && last > 0.9*prev {
			break
		}
		prev = last
	}
	return time.Since(start), last
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The steps of a submission that Phases reports.
const (
	phasePublished = iota
	phaseFirstBid
	phaseClosed
	phaseAccepted
	numPhases
)

var phaseNames = [numPhases]string{"published", "first bid", "bidding closed", "accepted"}

// observer records when each node hears each bid request.
type observer struct {
	mu    sync.Mutex
	seen  map[string]map[int]time.Time // job ID -> node -> when
	extra map[int]chan struct{}        // node -> closed on its first request
}

func newObserver() *observer {
	return &observer{seen: map[string]map[int]time.Time{}, extra: map[int]chan struct{}{}}
}

func (o *observer) hook(i int) func(*orchestrator.BidRequest, time.Time) {
	return func(req *orchestrator.BidRequest, at time.Time) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if ch, ok := o.extra[i]; ok {
			close(ch)
			delete(o.extra, i)
		}
		if m, ok := o.seen[req.JobID]; ok {
			if _, dup := m[i]; !dup {
				m[i] = at
			}
		}
	}
}

func (o *observer) track(jobID string) {
	o.mu.Lock()
	o.seen[jobID] = map[int]time.Time{}
	o.mu.Unlock()
}

// reach is how many nodes heard each of jobIDs, and forgets them.
func (o *observer) reach(jobIDs []string) []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]int, 0, len(jobIDs))
	for _, id := range jobIDs {
		out = append(out, len(o.seen[id]))
		delete(o.seen, id)
	}
	return out
}

func (o *observer) heard(jobID string) (int, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var last time.Time
	for _, at := range o.seen[jobID] {
		if at.After(last) {
			last = at
		}
	}
	return len(o.seen[jobID]), last
}

// publishProbe sends one probe from node from and waits up to wait for
// every other node to hear it. It returns the time to the last node, or
// how many heard it when not all did.
func publishProbe(ctx context.Context, ln *testnet.Local, obs *observer, from *node.Node, wait time.Duration) (time.Duration, int, error) {
	id := orchestrator.NewJobID()
	obs.track(id)
	sent := time.Now()
	if err := from.Diagnostics().Probe(ctx, id); err != nil {
		return 0, 0, fmt.Errorf("floor: publish: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		n, last := obs.heard(id)
		if n >= len(ln.Nodes)-1 {
			return last.Sub(sent), n, nil
		}
		if time.Now().After(deadline) {
			return 0, n, nil
		}
		select {
		case <-ctx.Done():
			return 0, n, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// measureFloor times samples probes from nodes in turn (StartLocalNetwork
// has already seen one reach every node). A probe that does not reach
// every node in 5 s is counted as incomplete rather than timed.
func measureFloor(ctx context.Context, ln *testnet.Local, obs *observer, samples int) ([]time.Duration, int, error) {
	var out []time.Duration
	incomplete := 0
	for s := range samples {
		d, _, err := publishProbe(ctx, ln, obs, ln.Nodes[s%len(ln.Nodes)], 5*time.Second)
		if err != nil {
			return nil, 0, err
		}
		if d == 0 {
			incomplete++
			continue
		}
		out = append(out, d)
	}
	return out, incomplete, nil
}

// meshStats adds up the nodes' bidding counters.
func meshStats(ln *testnet.Local) (st orchestrator.Stats) {
	for _, n := range ln.Nodes {
		s := n.Diagnostics().Stats()
		st.BidsReceived += s.BidsReceived
		st.BidsSent += s.BidsSent
		st.RequestsSeen += s.RequestsSeen
		st.SignaturesVerified += s.SignaturesVerified
	}
	return st
}

func runJobs(ctx context.Context, ln *testnet.Local, obs *observer, wire *wireCounter, cfg Config, rep *Report) error {
	st0 := meshStats(ln)
	bytes0, byPro0 := wire.Sent(), wire.ByProtocol()
	var (
		mu               sync.Mutex
		running, done    []time.Duration
		phases           [numPhases][]time.Duration
		completed, fails int
		firstErr         string
		jobIDs           []string
		next             atomic.Int64
		wg               sync.WaitGroup
	)
	start := time.Now()
	for c := range cfg.Concurrency {
		requester := ln.Nodes[1+c%(len(ln.Nodes)-1)] // spread over nodes, skip the bootstrap
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(cfg.Jobs) {
				id := orchestrator.NewJobID()
				obs.track(id)
				sub := orchestrator.Submission{Job: orchestrator.JobSpec{
					ID:           id,
					Requirements: capability.Capability{CPU: capability.CPU{MilliCores: 100}, Memory: 16 * capability.MiB},
					Duration:     seconds.Duration(10 * time.Second), Executor: orchestrator.ExecutorWasm, Module: examples.TinyWasm,
				}}
				t0 := time.Now()
				var tRun time.Duration
				var steps [numPhases]time.Duration
				rec, err := requester.SubmitJob(ctx, sub, func(p orchestrator.Progress) {
					at := p.Time.Sub(t0)
					switch {
					case p.Kind == orchestrator.ProgressPublished && steps[phasePublished] == 0:
						steps[phasePublished] = at
					case p.Kind == orchestrator.ProgressBid && steps[phaseFirstBid] == 0:
						steps[phaseFirstBid] = at
					case p.Kind == orchestrator.ProgressClosed:
						steps[phaseClosed] = at
					case p.Kind == orchestrator.ProgressAccepted:
						steps[phaseAccepted] = at
					case p.Kind == orchestrator.ProgressEvent && p.Event.Kind == orchestrator.EventState && p.Event.State == orchestrator.StateRunning && tRun == 0:
						tRun = at
					}
				})
				tDone := time.Since(t0)
				mu.Lock()
				jobIDs = append(jobIDs, id)
				if err == nil && rec.State == node.JobCompleted {
					completed++
					running = append(running, tRun)
					done = append(done, tDone)
					for i := range steps {
						phases[i] = append(phases[i], steps[i])
					}
				} else {
					fails++
					if firstErr == "" {
						if err == nil {
							err = errors.New(string(rec.State) + ": " + rec.Error)
						}
						firstErr = err.Error()
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	rep.Completed, rep.Failed, rep.FirstError = completed, fails, firstErr
	rep.SubmitToRunning, rep.SubmitToDone = percentiles(running), percentiles(done)
	rep.Phases = map[string]seconds.Duration{}
	for i, name := range phaseNames {
		rep.Phases[name] = percentiles(phases[i]).P50
	}
	rep.JobsPerSecond = float64(completed) / wall.Seconds()
	rep.JobsWall = seconds.Duration(wall)
	perJob := func(n int64) float64 { return float64(n) / float64(cfg.Jobs) }
	st := meshStats(ln)
	rep.BidsReceivedPerJob = perJob(st.BidsReceived - st0.BidsReceived)
	rep.BidsSentPerJob = perJob(st.BidsSent - st0.BidsSent)
	rep.DeliveriesPerJob = perJob(st.RequestsSeen - st0.RequestsSeen)
	rep.VerifiedPerJob = perJob(st.SignaturesVerified - st0.SignaturesVerified)
	rep.Reach = spread(obs.reach(jobIDs))
	rep.BytesPerJob = perJob(wire.Sent() - bytes0)
	rep.BytesPerJobByProtocol = map[string]float64{}
	for p, n := range wire.ByProtocol() {
		if d := n - byPro0[p]; d > 0 {
			rep.BytesPerJobByProtocol[p] = perJob(d)
		}
	}
	if completed == 0 {
		return fmt.Errorf("no job completed: %s", firstErr)
	}
	return nil
}

// measureJoin starts one more node that knows three nodes of the network
// and times it from start to its first bid request, while the bootstrap node
// publishes probes every few milliseconds. It gets the network's own p2p
// options (p2pOpts): with the test network's 3 s dials instead, the join
// at 300 nodes heard nothing in a minute, most likely because its
// bootstrap dials timed out on the loaded machine (not yet confirmed).
func measureJoin(ctx context.Context, ln *testnet.Local, obs *observer, log *slog.Logger, p2pOpts ...p2p.Option) (time.Duration, error) {
	const idx = -1
	heard := make(chan struct{})
	obs.mu.Lock()
	obs.extra[idx] = heard
	obs.mu.Unlock()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(25 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = ln.Nodes[0].Diagnostics().Probe(ctx, "")
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	// Like every node of the network, it knows a few nodes to start from.
	boot := []peer.AddrInfo{ln.Nodes[0].AddrInfo(), ln.Nodes[len(ln.Nodes)/2].AddrInfo(), ln.Nodes[len(ln.Nodes)-1].AddrInfo()}
	start := time.Now()
	n, err := ln.StartNode(ctx, log, boot, func(c *node.Config) {
		c.Orchestrator.Observe = obs.hook(idx)
		c.P2P = append(c.P2P, p2pOpts...)
	})
	if err != nil {
		return 0, fmt.Errorf("join: %w", err)
	}
	defer n.Close()
	select {
	case <-heard:
		return time.Since(start), nil
	case <-time.After(time.Minute):
		return 0, errors.New("join: the new node heard no bid request in a minute")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
