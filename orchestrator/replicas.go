package orchestrator

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/dms-project/dms/archive"
)

// A replicated job runs on several providers at once and its result is
// delivered only when their results agree: one provider on an open mesh is
// a stranger that may return anything with exit code 0, several that do
// not know each other are harder to fool with. The requester compares what
// it received itself from each (stdout, exit code, and the files of
// /outputs, which it fetches from each provider and hashes), never what a
// provider says about itself. A disagreement fails the job, naming each
// provider's hashes: it is never resolved silently.

// MaxReplicas bounds how many providers one job runs on at once.
const MaxReplicas = 7

// Agreement is how many replicas must agree for a result to be delivered.
type Agreement string

// Agreements a replicated job may ask for.
const (
	// AgreeAll: every replica returned the same result.
	AgreeAll Agreement = "all"
	// AgreeMajority: more than half of the replicas asked for returned the
	// same result; the others are named as disagreeing.
	AgreeMajority Agreement = "majority"
)

// Replica networks: whether two replicas may run in one IP network.
const (
	// ReplicaNetworksDistinct keeps replicas on distinct IP networks (a
	// /24 for IPv4, a /48 for IPv6) where the providers' addresses show
	// them; loopback addresses show nothing.
	ReplicaNetworksDistinct = "distinct"
	// ReplicaNetworksAny asks only for distinct providers.
	ReplicaNetworksAny = "any"
)

// Replication asks for a job to run on several providers at once.
type Replication struct {
	// Replicas is how many providers run the job; 0 or 1: one, as usual.
	Replicas int       `json:"replicas,omitempty"`
	Agree    Agreement `json:"agree,omitempty"` // "": AgreeAll
	// Networks is ReplicaNetworksDistinct ("" too) or ReplicaNetworksAny.
	Networks string `json:"networks,omitempty"`
}

// Validate names what is wrong with a replication and what is accepted.
func (r Replication) Validate() error {
	var errs []error
	if r.Replicas < 0 || r.Replicas > MaxReplicas {
		errs = append(errs, invalid("replicas %d: want 1 to %d", r.Replicas, MaxReplicas))
	}
	switch r.Agree {
	case "", AgreeAll, AgreeMajority:
	default:
		errs = append(errs, invalid("agree %q: want %q or %q", r.Agree, AgreeAll, AgreeMajority))
	}
	switch r.Networks {
	case "", ReplicaNetworksDistinct, ReplicaNetworksAny:
	default:
		errs = append(errs, invalid("replica networks %q: want %q or %q", r.Networks, ReplicaNetworksDistinct, ReplicaNetworksAny))
	}
	if r.Replicas <= 1 && (r.Agree != "" || r.Networks != "") {
		errs = append(errs, invalid("agree and replica networks apply to a job with 2 or more replicas, not %d", max(r.Replicas, 1)))
	}
	return errors.Join(errs...)
}

// agreement is Agree with its default.
func (r Replication) agreement() Agreement { return cmp.Or(r.Agree, AgreeAll) }

// quorum is how many replicas must return one result.
func (r Replication) quorum() int {
	if r.agreement() == AgreeMajority {
		return r.Replicas/2 + 1
	}
	return r.Replicas
}

// Replica is one provider's run of a replicated job, as the requester
// received it.
type Replica struct {
	Provider     peer.ID `json:"provider"`
	AllocationID string  `json:"allocation_id,omitempty"`
	State        State   `json:"state,omitempty"`
	ExitCode     int     `json:"exit_code"`
	// StdoutSHA256 and StderrSHA256 hash the output received (stderr is
	// shown, not compared: it carries timings and warnings).
	StdoutSHA256    string `json:"stdout_sha256,omitempty"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrSHA256    string `json:"stderr_sha256,omitempty"`
	// OutputsSHA256 hashes the list of /outputs files (path, size and
	// sha256 of each, sorted) as unpacked from the archive fetched from
	// this provider; "" when it left none. An archive's own hash is not
	// compared: it holds file times, which differ between honest runs.
	OutputsSHA256 string `json:"outputs_sha256,omitempty"`
	OutputFiles   int    `json:"output_files,omitempty"`
	// Error says why the replica has no result to compare (its provider
	// was lost, or its outputs could not be fetched); it does not vote.
	Error string `json:"error,omitempty"`
	// Agrees is set on the replicas whose result was delivered.
	Agrees bool `json:"agrees,omitempty"`
	// Receipt is the receipt its provider signed for this result, as it
	// came (verified; see receipt.go): with a disagreement, each side's
	// signed account of what it ran, for dms receipt verify.
	Receipt []byte `json:"receipt,omitempty"`
}

// voting reports whether the replica has a result to compare.
func (r Replica) voting() bool { return r.Error == "" && r.State != "" }

// fingerprint is what two agreeing replicas have in common.
func (r Replica) fingerprint() string {
	return fmt.Sprintf("%s|%d|%s|%v|%s|%d", r.State, r.ExitCode, r.StdoutSHA256, r.StdoutTruncated, r.OutputsSHA256, r.OutputFiles)
}

// Describe is the replica in one line, for a disagreement and job status.
func (r Replica) Describe() string {
	if r.Error != "" {
		return fmt.Sprintf("%s: no result (%s)", r.Provider, r.Error)
	}
	s := fmt.Sprintf("%s: %s, exit %d, stdout sha256 %s", r.Provider, r.State, r.ExitCode, short(r.StdoutSHA256))
	if r.StdoutTruncated {
		s += " (truncated)"
	}
	if r.OutputFiles > 0 {
		s += fmt.Sprintf(", %d output files sha256 %s", r.OutputFiles, short(r.OutputsSHA256))
	}
	return s
}

// verdict is what a comparison of replicas came to.
type verdict struct {
	agreed bool
	// winner is a replica of the largest group of equal results (-1:
	// none voted); on agreement, the one delivered.
	winner int
	// agreeing is the size of that group, voting how many had a result.
	agreeing, voting int
	// short: no two results differ, but too few replicas returned one.
	short  bool
	reason string
}

// compareReplicas decides whether the replicas agree as rep asks, and
// marks those whose result is delivered. It is the whole of the decision:
// nothing else delivers a replicated job's result.
func compareReplicas(reps []Replica, rep Replication) verdict {
	v := verdict{winner: -1}
	groups := map[string][]int{}
	var order []string
	for i, r := range reps {
		if !r.voting() {
			continue
		}
		v.voting++
		fp := r.fingerprint()
		if _, ok := groups[fp]; !ok {
			order = append(order, fp)
		}
		groups[fp] = append(groups[fp], i)
	}
	tie := false
	for _, fp := range order {
		switch n := len(groups[fp]); {
		case n > v.agreeing:
			v.agreeing, v.winner, tie = n, groups[fp][0], false
		case n == v.agreeing:
			tie = true
		}
	}
	need, k := rep.quorum(), rep.Replicas
	switch {
	case v.voting == 0:
		v.reason = fmt.Sprintf("none of %d replicas returned a result", k)
	case v.agreeing >= need && !tie:
		v.agreed = true
	case rep.agreement() == AgreeAll && v.voting < k && len(groups) == 1:
		v.reason = fmt.Sprintf("all replicas must agree, but only %d of %d returned a result", v.voting, k)
	case rep.agreement() == AgreeAll:
		v.reason = fmt.Sprintf("all %d replicas must agree; they returned %d different results", k, len(groups))
	default:
		v.reason = fmt.Sprintf("a majority (%d of %d) must agree; the most that returned one result is %d (%d returned one)", need, k, v.agreeing, v.voting)
	}
	v.short = !v.agreed && len(groups) <= 1
	if v.agreed {
		fp := reps[v.winner].fingerprint()
		for i := range reps {
			reps[i].Agrees = reps[i].voting() && reps[i].fingerprint() == fp
		}
	}
	return v
}

// Why a replicated job delivers no result.
var (
	// ErrDisagreed: replicas returned different results.
	ErrDisagreed = errors.New("replicas disagree")
	// ErrTooFewReplicas: the results that came back agree, but fewer
	// providers returned one than the agreement asks for.
	ErrTooFewReplicas = errors.New("too few replicas returned a result")
)

// DisagreementError is a replicated job that failed because its replicas
// did not agree as it asked; it names each replica's hashes.
type DisagreementError struct {
	Agree  Agreement
	Reason string
	// Short: no two results differ; too few came back.
	Short    bool
	Replicas []Replica
}

func (e *DisagreementError) Error() string {
	lines := make([]string, len(e.Replicas))
	for i, r := range e.Replicas {
		lines[i] = r.Describe()
	}
	return fmt.Sprintf("%v (--agree %s): %s; no result is delivered. Replicas: %s", e.Unwrap(), e.Agree, e.Reason, strings.Join(lines, "; "))
}

func (e *DisagreementError) Unwrap() error {
	if e.Short {
		return ErrTooFewReplicas
	}
	return ErrDisagreed
}

// SameResult reports whether two replicas returned the same result, as
// compared: state, exit code, stdout and /outputs files.
func (r Replica) SameResult(o Replica) bool {
	return r.voting() && o.voting() && r.fingerprint() == o.fingerprint()
}

// ProgressReplicas reports a replicated job's replicas: one that was lost
// (and is replaced), and at the end the comparison, whose Provider is the
// replica whose result and outputs are delivered.
const ProgressReplicas ProgressKind = "replicas"

// replicaRun is a replica with the result it compared by.
type replicaRun struct {
	Replica
	res *Result
}

// replicated runs sub on sub.Replication.Replicas distinct providers and
// delivers their result if they agree. A replica whose provider refuses or
// is lost is replaced, from the next round of bids, never by a provider
// that already ran or refused this job, up to Retries rounds.
func (r *Requester) replicated(ctx context.Context, sub Submission, st *staged, w *waiting) (*Result, error) {
	rep := sub.Replication
	if sub.RetryOnFailure > 0 {
		return nil, invalid("retry on failure with %d replicas: a replicated job is compared, not run again; drop one of them", rep.Replicas)
	}
	if st.job.Executor == ExecutorWasm && st.job.Deterministic == nil {
		st.job.Deterministic = &Determinism{Seed: rand.Uint64(), Clock: r.now().UTC().Truncate(time.Second)}
	}
	jobID := st.job.ID
	// report is called from each replica's goroutine: one at a time, and
	// without stdout and stderr, which would interleave K runs' output and
	// show output before it is agreed on.
	var mu sync.Mutex
	report := func(p Progress) {
		if p.Kind == ProgressEvent && p.Event != nil && (p.Event.Kind == EventStdout || p.Event.Kind == EventStderr) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		w.report(p)
	}
	var runs []replicaRun
	used := map[peer.ID]bool{}
	retries, noBidRounds := 0, 0
	for attempt := sub.FirstAttempt; ; attempt++ {
		var voted []Replica
		for _, rr := range runs {
			if rr.voting() {
				voted = append(voted, rr.Replica)
			}
		}
		missing := rep.Replicas - len(voted)
		if missing == 0 {
			break
		}
		if err := w.turn(ctx); err != nil {
			return nil, fmt.Errorf("job %s: %w", jobID, err)
		}
		taken := map[string]bool{}
		for _, v := range voted {
			for _, n := range r.networksOf(v.Provider, rep) {
				taken[n] = true
			}
		}
		round, err := r.replicaRound(ctx, st, sub.MaxPrice, min(attempt, maxAttempt), missing, used, taken, rep, w, report)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("job %s: %w", jobID, ctx.Err())
		}
		runs = append(runs, round...)
		lost := len(round) == 0
		for _, rr := range round {
			if !rr.voting() {
				lost = true
				all := make([]Replica, len(runs))
				for i := range runs {
					all[i] = runs[i].Replica
				}
				report(Progress{Kind: ProgressReplicas, JobID: jobID, Attempt: attempt, Time: r.now(), Message: "replica lost: " + rr.Describe(), Replicas: all})
			}
		}
		switch {
		case err == nil && !lost && len(round) == missing:
			continue
		case errors.Is(err, ErrNoBids) && len(runs) == 0:
			// Nobody took the job yet: it waits for a provider as a job
			// of one replica does, or fails at once without a queue.
			if sub.QueueTimeout == 0 {
				return nil, fmt.Errorf("job %s: %w", jobID, err)
			}
			if !r.now().Before(w.deadline) {
				return nil, fmt.Errorf("job %s: %w", jobID, queuedFor(sub.QueueTimeout, err))
			}
			w.queued(err.Error(), true)
			if err := w.sleep(ctx, backoff(noBidRounds, r.cfg.QueueBackoff, r.cfg.QueueBackoffMax, r.rnd()), true); err != nil {
				return nil, fmt.Errorf("job %s: %w", jobID, err)
			}
			noBidRounds++
			continue
		case retries < r.cfg.Retries:
			why := fmt.Sprintf("%d of %d replicas have a result; asking for providers to run the rest", len(voted)+countVoting(round), rep.Replicas)
			if err != nil {
				why += ": " + err.Error()
			}
			w.retry(attempt+1, why)
			if err := w.sleep(ctx, backoff(retries, r.cfg.QueueBackoff, r.cfg.QueueBackoffMax, r.rnd()), false); err != nil {
				return nil, fmt.Errorf("job %s: %w", jobID, err)
			}
			retries++
			continue
		case err != nil && len(runs) == 0:
			return nil, fmt.Errorf("job %s: %w", jobID, err)
		}
		break // out of rounds: compare what came back
	}
	all := make([]Replica, len(runs))
	for i := range runs {
		all[i] = runs[i].Replica
	}
	v := compareReplicas(all, rep)
	done := Progress{Kind: ProgressReplicas, JobID: jobID, Time: r.now(), Replicas: all}
	if !v.agreed {
		derr := &DisagreementError{Agree: rep.agreement(), Reason: v.reason, Short: v.short, Replicas: all}
		done.Message = derr.Error()
		report(done)
		r.log.Warn("replicated job delivers no result", "job", jobID, "err", derr.Unwrap(), "reason", v.reason)
		return nil, fmt.Errorf("job %s: %w", jobID, derr)
	}
	done.Message = fmt.Sprintf("%d replicas agreed", v.agreeing)
	// The agreeing providers completed the job; one that returned another
	// result was outvoted, and is avoided as a cheat would be. Where no
	// result was delivered nobody knows who was wrong, and nobody is blamed.
	for _, rp := range all {
		switch {
		case rp.Agrees:
			r.rep.Record(rp.Provider, OutcomeCompleted, jobID)
		case rp.voting():
			r.rep.Record(rp.Provider, OutcomeDisagreed, jobID)
		}
	}
	if v.agreeing < rep.Replicas {
		var dissent []string
		for _, r := range all {
			if !r.Agrees {
				dissent = append(dissent, r.Describe())
			}
		}
		if never := rep.Replicas - len(all); never > 0 {
			dissent = append(dissent, fmt.Sprintf("%d never ran: no other provider took the job", never))
		}
		done.Message = fmt.Sprintf("%d of %d replicas agreed (a majority); disagreeing or without a result: %s", v.agreeing, rep.Replicas, strings.Join(dissent, "; "))
	}
	done.Provider, done.AllocationID = all[v.winner].Provider, all[v.winner].AllocationID
	report(done)
	return runs[v.winner].res, nil
}

func countVoting(runs []replicaRun) int {
	n := 0
	for _, rr := range runs {
		if rr.voting() {
			n++
		}
	}
	return n
}

// replicaRound collects bids and runs up to missing replicas on providers
// not used yet, each on a network no replica with a result is on, and
// follows them all to their ends. It fails only when none could start.
func (r *Requester) replicaRound(ctx context.Context, st *staged, maxPrice *float64, attempt, missing int, used map[peer.ID]bool, taken map[string]bool, rep Replication, w *waiting, report func(Progress)) ([]replicaRun, error) {
	job := st.job
	bids, req, err := r.collect(ctx, job, st.inputs, maxPrice, attempt, missing, report)
	if err != nil {
		return nil, err
	}
	w.placed()
	r.rank(req, bids, job.Prefer)
	type started struct {
		provider peer.ID
		alloc    string
		bid      *SignedBid
	}
	var (
		running       []started
		unused        []*SignedBid
		refused       []string
		before, coloc int
	)
	for _, b := range bids {
		p := b.Bid.Provider
		if len(running) == missing {
			unused = append(unused, b)
			continue
		}
		if used[p] {
			before++
			unused = append(unused, b)
			continue
		}
		nets := r.networksOf(p, rep)
		if slices.ContainsFunc(nets, func(n string) bool { return taken[n] }) {
			coloc++
			unused = append(unused, b)
			continue
		}
		used[p] = true
		alloc, err := r.invokeOne(ctx, st, b, attempt, report)
		if err != nil {
			if ctx.Err() != nil {
				r.release(unused)
				return nil, ctx.Err()
			}
			refused = append(refused, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		for _, n := range nets {
			taken[n] = true
		}
		running = append(running, started{p, alloc, b})
	}
	r.release(unused)
	if len(running) == 0 {
		why := fmt.Sprintf("%d bids for %d replicas: %d from providers that already ran or refused this job, %d from a network another replica runs on (--replica-networks %s lifts that)",
			len(bids), missing, before, coloc, ReplicaNetworksAny)
		if len(refused) > 0 {
			return nil, fmt.Errorf("%w: %s; refused: %s", ErrAllRefused, why, strings.Join(refused, "; "))
		}
		return nil, fmt.Errorf("%w: %s", ErrNoBids, why)
	}
	out := make([]replicaRun, len(running))
	var wg sync.WaitGroup
	for i, s := range running {
		wg.Go(func() {
			lim := watchLimits{accepted: r.now(), stall: r.cfg.StallTimeout, run: runLimit(job.Duration.Std(), r.cfg.DeadlineMargin)}
			res, err := r.follow(ctx, job.ID, s.provider, s.alloc, attempt, report, lim)
			// A replica that lost, stalled or overran is remembered as a
			// single run's provider is; its result's worth is judged below.
			if o := outcomeOf(res, err); o != "" && o != OutcomeCompleted && ctx.Err() == nil {
				r.rep.Record(s.provider, o, job.ID)
			}
			// A replica whose receipt does not match what it sent has no vote.
			if err == nil {
				if err = r.checkReceipt(st, []*SignedBid{s.bid}, s.provider, res); err != nil {
					r.rep.Record(s.provider, OutcomeBadReceipt, job.ID)
				}
			}
			out[i] = r.judgeReplica(ctx, s.provider, s.alloc, res, err)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		// The submission was cancelled: stop every replica still running.
		for _, s := range running {
			r.chase(s.provider, s.alloc)
		}
	}
	return out, nil
}

// judgeReplica hashes what one replica returned: its output as received,
// and its /outputs files as fetched from its provider.
func (r *Requester) judgeReplica(ctx context.Context, provider peer.ID, alloc string, res *Result, err error) replicaRun {
	rr := replicaRun{Replica: Replica{Provider: provider, AllocationID: alloc}, res: res}
	if err != nil {
		rr.Error = err.Error()
		return rr
	}
	rr.State, rr.ExitCode, rr.StdoutTruncated, rr.Receipt = res.State, res.ExitCode, res.StdoutTruncated, res.Receipt
	rr.StdoutSHA256, rr.StderrSHA256 = hashOf(res.Stdout), hashOf(res.Stderr)
	if res.Outputs != nil {
		data, err := fetchBlob(ctx, r.host, provider, res.Outputs.Archive, MaxOutputSize)
		var files []archive.File
		if err == nil {
			files, err = archive.List(data)
		}
		if err != nil {
			rr.Error = "its outputs could not be fetched to compare: " + err.Error()
			return rr
		}
		rr.OutputsSHA256, rr.OutputFiles = manifestHash(files), len(files)
	}
	return rr
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// manifestHash hashes a list of files by path, size and content, in path
// order.
func manifestHash(files []archive.File) string {
	sorted := slices.SortedFunc(slices.Values(files), func(a, b archive.File) int { return strings.Compare(a.Path, b.Path) })
	h := sha256.New()
	for _, f := range sorted {
		fmt.Fprintf(h, "%s\x00%d\x00%s\n", f.Path, f.Size, f.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// connInfo is what a p2p host tells of its connections to a peer.
type connInfo interface {
	ConnInfo(p peer.ID) (addrs []string, direction string, latency time.Duration)
}

// networksOf are the IP networks a provider's connections come from, for
// keeping replicas apart; none when rep allows any network or the host
// does not tell.
func (r *Requester) networksOf(p peer.ID, rep Replication) []string {
	ci, ok := r.host.(connInfo)
	if !ok || rep.Networks == ReplicaNetworksAny {
		return nil
	}
	addrs, _, _ := ci.ConnInfo(p)
	return networkKeys(addrs)
}

// networkKeys maps multiaddrs to the networks they show: a /24 for IPv4,
// a /48 for IPv6. A loopback, unspecified or link-local address shows
// nothing (every node of a test network on one machine is on 127.0.0.1),
// nor does a relayed one (its address is the relay's).
func networkKeys(addrs []string) []string {
	var out []string
	for _, s := range addrs {
		if strings.Contains(s, "/p2p-circuit") {
			continue
		}
		m, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			continue
		}
		var ip string
		if ip, err = m.ValueForProtocol(multiaddr.P_IP4); err != nil {
			if ip, err = m.ValueForProtocol(multiaddr.P_IP6); err != nil {
				continue
			}
		}
		a, err := netip.ParseAddr(ip)
		if err != nil || a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() {
			continue
		}
		a = a.Unmap()
		bits := 48
		if a.Is4() {
			bits = 24
		}
		pfx, err := a.Prefix(bits)
		if err != nil {
			continue
		}
		out = append(out, pfx.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}
