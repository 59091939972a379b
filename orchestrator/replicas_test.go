package orchestrator

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/capability"
)

func replica(p string, exit int, stdout string) Replica {
	return Replica{Provider: peer.ID(p), State: StateCompleted, ExitCode: exit, StdoutSHA256: hashOf([]byte(stdout))}
}

func TestCompareReplicas(t *testing.T) {
	withOutputs := func(r Replica, files ...archive.File) Replica {
		r.OutputsSHA256, r.OutputFiles = manifestHash(files), len(files)
		return r
	}
	lost := Replica{Provider: "lost", Error: "provider lost"}
	for _, c := range []struct {
		name   string
		agree  Agreement
		reps   []Replica
		agreed bool
		agrees []bool // per replica, when agreed
		reason string // a part of the reason, when not
	}{
		{"all agree", AgreeAll, []Replica{replica("a", 0, "x"), replica("b", 0, "x"), replica("c", 0, "x")}, true, []bool{true, true, true}, ""},
		{"all: one forger fails it", AgreeAll, []Replica{replica("a", 0, "x"), replica("b", 0, "forged")}, false, nil, "2 different results"},
		{"majority outvotes a forger", AgreeMajority, []Replica{replica("a", 0, "x"), replica("f", 0, "forged"), replica("c", 0, "x")}, true, []bool{true, false, true}, ""},
		{"majority: no majority among three", AgreeMajority, []Replica{replica("a", 0, "x"), replica("b", 0, "y"), replica("c", 0, "z")}, false, nil, "the most that returned one result is 1"},
		{"majority of two is both", AgreeMajority, []Replica{replica("a", 0, "x"), replica("b", 0, "y")}, false, nil, "2 of 2"},
		{"exit codes differ", AgreeAll, []Replica{replica("a", 0, "x"), replica("b", 1, "x")}, false, nil, "different results"},
		{"outputs differ", AgreeAll, []Replica{
			withOutputs(replica("a", 0, "x"), archive.File{Path: "out.txt", Size: 1, SHA256: hashOf([]byte("1"))}),
			withOutputs(replica("b", 0, "x"), archive.File{Path: "out.txt", Size: 1, SHA256: hashOf([]byte("2"))}),
		}, false, nil, "different results"},
		{"outputs in another order agree", AgreeAll, []Replica{
			withOutputs(replica("a", 0, "x"), archive.File{Path: "a", SHA256: "1"}, archive.File{Path: "b", SHA256: "2"}),
			withOutputs(replica("b", 0, "x"), archive.File{Path: "b", SHA256: "2"}, archive.File{Path: "a", SHA256: "1"}),
		}, true, []bool{true, true}, ""},
		{"all: a lost replica is no agreement", AgreeAll, []Replica{replica("a", 0, "x"), lost}, false, nil, "only 1 of 2 returned a result"},
		{"majority holds without a lost one", AgreeMajority, []Replica{replica("a", 0, "x"), lost, replica("c", 0, "x")}, true, []bool{true, false, true}, ""},
		{"none returned", AgreeMajority, []Replica{lost, lost, lost}, false, nil, "none of 3"},
	} {
		reps := slices.Clone(c.reps)
		v := compareReplicas(reps, Replication{Replicas: len(reps), Agree: c.agree})
		if v.agreed != c.agreed {
			t.Errorf("%s: agreed %v (%s), want %v", c.name, v.agreed, v.reason, c.agreed)
			continue
		}
		if c.agreed {
			got := make([]bool, len(reps))
			for i, r := range reps {
				got[i] = r.Agrees
			}
			if !slices.Equal(got, c.agrees) || !reps[v.winner].Agrees {
				t.Errorf("%s: agrees %v (winner %d), want %v", c.name, got, v.winner, c.agrees)
			}
		} else if !strings.Contains(v.reason, c.reason) {
			t.Errorf("%s: reason %q, want it to say %q", c.name, v.reason, c.reason)
		}
	}
}

func TestReplicationValidate(t *testing.T) {
	for _, ok := range []Replication{{}, {Replicas: 1}, {Replicas: 2}, {Replicas: 7, Agree: AgreeMajority, Networks: ReplicaNetworksAny}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, c := range []struct {
		r    Replication
		says string
	}{
		{Replication{Replicas: 8}, "want 1 to 7"},
		{Replication{Replicas: -1}, "want 1 to 7"},
		{Replication{Replicas: 3, Agree: "most"}, `want "all" or "majority"`},
		{Replication{Replicas: 3, Networks: "some"}, `want "distinct" or "any"`},
		{Replication{Replicas: 1, Agree: AgreeAll}, "2 or more replicas"},
	} {
		if err := c.r.Validate(); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%+v: %v, want an error saying %q", c.r, err, c.says)
		}
	}
}

func TestNetworkKeysKeepLoopbackAndRelaysOut(t *testing.T) {
	got := networkKeys([]string{
		"/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001", "/ip4/0.0.0.0/tcp/1",
		"/ip4/203.0.113.7/tcp/4001", "/ip4/203.0.113.200/udp/4001/quic-v1",
		"/ip4/198.51.100.1/tcp/1/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo/p2p-circuit",
		"/ip6/2001:db8:1:2::5/tcp/4001", "not an address",
	})
	want := []string{"2001:db8:1::/48", "203.0.113.0/24"}
	if !slices.Equal(got, want) {
		t.Fatalf("networks %v, want %v", got, want)
	}
}

// forgingBackend runs jobs as fakeBackend does but prints something else,
// with exit code 0: the cheat a replicated job must catch.
type forgingBackend struct{ *fakeBackend }

func (f forgingBackend) Accept(holdID string, inv *Invocation) (string, error) {
	id, err := f.fakeBackend.Accept(holdID, inv)
	if err == nil {
		// A consistent cheat: its receipt signs the output it made up, so
		// only the other replicas can tell.
		f.mu.Lock()
		evs := f.allocs[id]
		evs[1].Data = []byte("forged result")
		evs[2].Result.Receipt = fakeReceipt(f.key, inv, id, evs[:2], evs[2].Result)
		f.mu.Unlock()
	}
	return id, err
}

// replicaMesh starts a requester that offers nothing and the given
// providers over one in-memory network, and returns the providers' IDs.
func replicaMesh(t *testing.T, providers ...Backend) (*Service, []peer.ID) {
	t.Helper()
	fn := newFakeNet()
	t.Cleanup(fn.Close)
	cfg := LocalConfig()
	var requester *Service
	var ids []peer.ID
	for i, b := range append([]Backend{&fakeBackend{holds: map[string]*fakeHold{}, allocs: map[string][]Event{}}}, providers...) {
		key, id := testPeer(t)
		withKey(b, key)
		svc, err := NewService(fn.host(id), key, b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		if i == 0 {
			requester = svc
		} else {
			ids = append(ids, id)
		}
	}
	return requester, ids
}

// progressLog keeps a job's steps.
type progressLog struct {
	mu    sync.Mutex
	steps []Progress
}

func (l *progressLog) add(p Progress) { l.mu.Lock(); defer l.mu.Unlock(); l.steps = append(l.steps, p) }

func (l *progressLog) last(kind ProgressKind) (Progress, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.steps) - 1; i >= 0; i-- {
		if l.steps[i].Kind == kind {
			return l.steps[i], true
		}
	}
	return Progress{}, false
}

func replicatedJob(k int, agree Agreement) Submission {
	sub := wasmJob("honest")
	sub.Replication = Replication{Replicas: k, Agree: agree}
	return sub
}

func TestReplicasAllWithOneForgerFailShowingBothHashes(t *testing.T) {
	t.Parallel()
	svc, ids := replicaMesh(t, newFakeBackend(1000), forgingBackend{newFakeBackend(1000)})
	var log progressLog
	res, err := svc.Submit(context.Background(), replicatedJob(2, AgreeAll), log.add)
	var derr *DisagreementError
	if !errors.As(err, &derr) || !errors.Is(err, ErrDisagreed) {
		t.Fatalf("result %+v, err %v; want the replicas to disagree", res, err)
	}
	honest, forged := hashOf([]byte("ran [honest]")), hashOf([]byte("forged result"))
	for _, want := range []string{ids[0].String(), ids[1].String(), short(honest), short(forged)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s: %v", want, err)
		}
	}
	byProvider := map[peer.ID]string{}
	for _, r := range derr.Replicas {
		byProvider[r.Provider] = r.StdoutSHA256
		if r.Agrees {
			t.Errorf("replica on %s marked as agreeing in a disagreement", r.Provider)
		}
		// Each side's signed receipt comes with the disagreement, and says
		// what that side sent.
		rc, err := OpenReceipt(r.Receipt)
		if err != nil || rc.Provider != r.Provider || rc.StdoutSHA256 != r.StdoutSHA256 {
			t.Errorf("replica on %s: receipt %+v, %v; want its provider's signed receipt", r.Provider, rc, err)
		}
	}
	if byProvider[ids[0]] != honest || byProvider[ids[1]] != forged {
		t.Errorf("replica hashes %v, want %s honest and %s forged", byProvider, ids[0], ids[1])
	}
	if p, ok := log.last(ProgressReplicas); !ok || len(p.Replicas) != 2 || p.Provider != "" {
		t.Errorf("the last replicas step %+v, want both replicas and no provider delivered", p)
	}
}

func TestReplicasMajorityOutvotesAForger(t *testing.T) {
	t.Parallel()
	forger := forgingBackend{newFakeBackend(1000)}
	svc, ids := replicaMesh(t, newFakeBackend(1000), forger, newFakeBackend(1000))
	var log progressLog
	res, err := svc.Submit(context.Background(), replicatedJob(3, AgreeMajority), log.add)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "ran [honest]" || res.State != StateCompleted {
		t.Fatalf("delivered %q (%s), want the honest result", res.Stdout, res.State)
	}
	p, ok := log.last(ProgressReplicas)
	if !ok || len(p.Replicas) != 3 {
		t.Fatalf("replicas step %+v, want three replicas", p)
	}
	for _, r := range p.Replicas {
		if r.Agrees == (r.Provider == ids[1]) {
			t.Errorf("replica on %s agrees %v; the forger is %s", r.Provider, r.Agrees, ids[1])
		}
	}
	if p.Provider == ids[1] || p.Provider == "" {
		t.Errorf("the result is delivered from %q, want an honest provider", p.Provider)
	}
	if !strings.Contains(p.Message, "2 of 3 replicas agreed") || !strings.Contains(p.Message, ids[1].String()) {
		t.Errorf("replicas step says %q, want 2 of 3 agreed and the forger named", p.Message)
	}
	// Every replica ran the same deterministic job on its own provider.
	forger.mu.Lock()
	ran := len(forger.accepted)
	forger.mu.Unlock()
	if ran != 1 {
		t.Errorf("the forger ran %d replicas, want 1", ran)
	}
	// The requester remembers: the forger disagreed, the others completed.
	rep := svc.Reputation()
	if n := rep.Count(ids[1], OutcomeDisagreed); n != 1 {
		t.Errorf("the forger's record shows %d disagreements, want 1", n)
	}
	if n := rep.Count(ids[0], OutcomeDisagreed) + rep.Count(ids[2], OutcomeDisagreed); n != 0 {
		t.Errorf("honest providers' records show %d disagreements", n)
	}
	if _, _, avoided := rep.Avoided(ids[1]); !avoided {
		t.Error("the outvoted forger is not avoided for the next job")
	}
}

// A provider that refuses is not counted as a replica: the job runs on
// the ones that accept.
func TestReplicasSkipAProviderThatRefuses(t *testing.T) {
	t.Parallel()
	refuser := newFakeBackend(1000)
	refuser.refuse = true
	a, b := newFakeBackend(1000), newFakeBackend(1000)
	svc, _ := replicaMesh(t, a, refuser, b)
	res, err := svc.Submit(context.Background(), replicatedJob(2, AgreeAll), nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "ran [honest]" {
		t.Fatalf("delivered %q", res.Stdout)
	}
	for i, f := range []*fakeBackend{a, b} {
		f.mu.Lock()
		n := len(f.accepted)
		f.mu.Unlock()
		if n != 1 {
			t.Errorf("provider %d ran %d replicas, want 1", i, n)
		}
	}
}

func TestReplicasNeedAsManyProviders(t *testing.T) {
	t.Parallel()
	svc, _ := replicaMesh(t, newFakeBackend(1000), newFakeBackend(1000))
	svc.cfg.Retries = 0
	_, err := svc.Submit(context.Background(), replicatedJob(3, AgreeAll), nil)
	if !errors.Is(err, ErrTooFewReplicas) || errors.Is(err, ErrDisagreed) || !strings.Contains(err.Error(), "only 2 of 3 returned a result") {
		t.Fatalf("err %v, want too few replicas: only 2 of 3 returned a result", err)
	}
}

// A replicated job that no provider bids for fails as a job of one
// replica does: at once without a queue timeout, not after retries.
func TestReplicasWithNoBidsFailWithoutRetrying(t *testing.T) {
	t.Parallel()
	svc, _ := replicaMesh(t, &fakeBackend{holds: map[string]*fakeHold{}, allocs: map[string][]Event{}})
	var log progressLog
	_, err := svc.Submit(context.Background(), replicatedJob(2, AgreeAll), log.add)
	if !errors.Is(err, ErrNoBids) {
		t.Fatalf("err %v, want no acceptable bids", err)
	}
	if p, ok := log.last(ProgressRetry); ok {
		t.Errorf("submitted again with nobody bidding: %+v", p)
	}
}

// A replica whose provider is lost does not vote and is replaced by a
// provider that has not run the job; the job is delivered once K agree.
func TestReplicasReplaceALostProvider(t *testing.T) {
	t.Parallel()
	lossy := newSlotBackend(2000)
	lossy.lose = true
	a, b := newSlotBackend(2000), newSlotBackend(2000)
	a.auto, b.auto = true, true
	// The others cost more, so the one that loses the job is taken first.
	a.price = capability.PriceInformation{PerCoreHour: 1}
	b.price = capability.PriceInformation{PerCoreHour: 1}
	svc, ids := replicaMesh(t, lossy, a, b)
	var log progressLog
	res, err := svc.Submit(context.Background(), replicatedJob(2, AgreeAll), log.add)
	if err != nil || res.State != StateCompleted {
		t.Fatalf("result %+v, %v; want completed by the two that did not lose it", res, err)
	}
	if n := len(lossy.accepted()); n != 1 {
		t.Errorf("the provider that lost its replica was invoked %d times, want once", n)
	}
	if len(a.accepted()) != 1 || len(b.accepted()) != 1 {
		t.Errorf("the others ran %d and %d replicas, want 1 each", len(a.accepted()), len(b.accepted()))
	}
	p, _ := log.last(ProgressReplicas)
	var lost, agreed int
	for _, r := range p.Replicas {
		switch {
		case r.Provider == ids[0] && r.Error != "" && !r.Agrees:
			lost++
		case r.Provider != ids[0] && r.Agrees:
			agreed++
		}
	}
	if lost != 1 || agreed != 2 {
		t.Errorf("replicas %+v: want the lost one without a result and two agreeing", p.Replicas)
	}
}

// cancelCounter counts the cancels its provider side is asked for.
type cancelCounter struct {
	*slotBackend
	mu        sync.Mutex
	cancelled []string
}

func (c *cancelCounter) Cancel(id string, _ peer.ID) error {
	c.mu.Lock()
	c.cancelled = append(c.cancelled, id)
	c.mu.Unlock()
	c.end(id)
	return nil
}

func (c *cancelCounter) cancels() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.cancelled) }

// Cancelling a replicated submission stops every replica on its provider,
// not only the one the job record names.
func TestReplicasCancelledStopEveryReplica(t *testing.T) {
	t.Parallel()
	a, b := &cancelCounter{slotBackend: newSlotBackend(2000)}, &cancelCounter{slotBackend: newSlotBackend(2000)}
	svc, _ := replicaMesh(t, a, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := svc.Submit(ctx, replicatedJob(2, AgreeAll), nil)
		done <- err
	}()
	waitFor(t, "both replicas to start", func() bool { return len(a.accepted()) == 1 && len(b.accepted()) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want cancelled", err)
	}
	waitFor(t, "each provider to be asked to stop its replica", func() bool { return a.cancels() == 1 && b.cancels() == 1 })
}
