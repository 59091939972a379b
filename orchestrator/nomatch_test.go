package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/internal/seconds"
)

func TestSummarizeCountsEachProviderOnceMostCommonFirst(t *testing.T) {
	a, b, c, d, e := peer.ID("a"), peer.ID("b"), peer.ID("c"), peer.ID("d"), peer.ID("e")
	got := summarize([]answer{
		{a, ReasonTooSmall, "offers at most 1 core"},
		{b, ReasonNoExecutor, "does not run docker jobs"},
		{c, ReasonTooSmall, "offers at most 1 core"},
		{a, ReasonBusy, "has 0 cores free now"}, // a second answer of a: the first stands
		{d, ReasonNoImage, "lacks image pyjob:1"},
		{e, ReasonTooSmall, "offers at most 1 core"},
	}, 7)
	want := "5 providers heard it: 3 offer at most 1 core, 1 does not run docker jobs, 1 lacks image pyjob:1"
	if got.String() != want {
		t.Fatalf("summary %q\nwant    %q", got, want)
	}
	if got.Heard != 5 || got.Peers != 7 || len(got.Reasons) != 3 || got.Reasons[0] != (ReasonCount{ReasonTooSmall, "offers at most 1 core", 3}) {
		t.Fatalf("summary %+v", got)
	}
}

func TestNoMatchStringWhenNobodyAnswered(t *testing.T) {
	for _, tc := range []struct {
		m    NoMatch
		want string
	}{
		{NoMatch{}, "none heard it: no providers on this network"},
		{NoMatch{Peers: 4}, "none answered: 4 connected peers"},
		{NoMatch{Peers: 1}, "none answered: 1 connected peer"},
		{summarize([]answer{{"x", ReasonBusy, "has 0 cores free now"}}, 0), "1 provider heard it: 1 has 0 cores free now"},
		{summarize([]answer{{"x", ReasonBusy, "has 0 cores free now"}, {"y", ReasonBusy, "has 0 cores free now"}}, 2), "2 providers heard it: 2 have 0 cores free now"},
	} {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestNoMatchListsAFewReasonsAndCountsTheRest(t *testing.T) {
	var answers []answer
	for i := range 8 {
		answers = append(answers, answer{peer.ID(fmt.Sprint(i)), ReasonCannotRun, fmt.Sprintf("reason %d", i)})
	}
	got := summarize(answers, 8).String()
	if !strings.HasPrefix(got, "8 providers heard it: 1 reason 0, ") || !strings.HasSuffix(got, ", 3 for other reasons") {
		t.Fatalf("summary %q: want five reasons listed and three counted", got)
	}
}

func TestTooSmallNamesTheShortDimension(t *testing.T) {
	offer := capability.Capability{CPU: capability.CPU{MilliCores: 2000}, Memory: capability.GiB, Disk: capability.GiB}
	free := capability.Capability{CPU: capability.CPU{MilliCores: 250}, Memory: capability.GiB, Disk: capability.GiB}
	for _, tc := range []struct {
		need       capability.Capability
		code, text string
	}{
		{capability.Capability{CPU: capability.CPU{MilliCores: 4000}}, ReasonTooSmall, "offers at most 2 cores"},
		{capability.Capability{Memory: 2 * capability.GiB}, ReasonTooSmall, "offers at most 1GiB of memory"},
		{capability.Capability{CPU: capability.CPU{MilliCores: 500}}, ReasonBusy, "has 0.25 cores free now"},
		{capability.Capability{GPUs: []capability.GPU{{}}}, ReasonGPU, "offers no GPU"},
	} {
		code, text := tooSmall(tc.need, offer, free)
		if code != tc.code || text != tc.text {
			t.Errorf("%v: %s %q, want %s %q", tc.need, code, text, tc.code, tc.text)
		}
	}
}

func TestDeclineGateOncePerRequestWithinTheRate(t *testing.T) {
	now := time.Now()
	g := newDeclineGate(DeclineLimits{Rate: 1, Burst: 3})
	req := &BidRequest{JobID: "job-00001", Requester: "r", Nonce: "nonce-001", Deadline: now.Add(time.Second)}
	if !g.allow(req, now) {
		t.Fatal("first decline refused")
	}
	resent := *req
	resent.Nonce = "nonce-002" // the same round asked again
	if g.allow(&resent, now) {
		t.Fatal("a re-send of the same request was declined twice")
	}
	retry := *req
	retry.Attempt = 1
	if !g.allow(&retry, now) {
		t.Fatal("a new attempt was not declined")
	}
	other := *req
	other.JobID = "job-00002"
	if !g.allow(&other, now) {
		t.Fatal("third decline within the burst refused")
	}
	flood := *req
	flood.JobID = "job-00003"
	if g.allow(&flood, now) {
		t.Fatal("a fourth decline in a burst of three went out")
	}
	someoneElse := flood
	someoneElse.Requester = "s"
	if !g.allow(&someoneElse, now) {
		t.Fatal("another requester's decline refused: buckets are per requester")
	}
	if !g.allow(&flood, now.Add(time.Second)) {
		t.Fatal("no decline after the bucket refilled")
	}
}

func TestDecodeDeclineBounds(t *testing.T) {
	good := Decline{JobID: "abcdefgh", Nonce: "abcdefgh", Code: ReasonTooSmall, Text: "offers at most 1 core"}
	data, _ := Encode(&good)
	if d, err := DecodeDecline(data); err != nil || *d != good {
		t.Fatalf("decode %s: %+v, %v", data, d, err)
	}
	for name, d := range map[string]Decline{
		"long text":    {JobID: "abcdefgh", Nonce: "abcdefgh", Code: "busy", Text: strings.Repeat("x", maxDeclineText+1)},
		"no code":      {JobID: "abcdefgh", Nonce: "abcdefgh"},
		"code shape":   {JobID: "abcdefgh", Nonce: "abcdefgh", Code: "Busy!"},
		"control char": {JobID: "abcdefgh", Nonce: "abcdefgh", Code: "busy", Text: "a\x1b[2Jb"},
		"short nonce":  {JobID: "abcdefgh", Nonce: "abc", Code: "busy"},
	} {
		data, _ := Encode(&d)
		if _, err := DecodeDecline(data); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
	if _, err := DecodeDecline(make([]byte, MaxDeclineSize+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized decline: err %v", err)
	}
	if got := shortText(strings.Repeat("é", maxDeclineText)); len(got) > maxDeclineText || !strings.HasSuffix(got, "...") {
		t.Errorf("shortText kept %d bytes: %q", len(got), got)
	}
}

// picky is a provider backend that declines container jobs for a missing
// image, as a node's does.
type picky struct {
	*fakeBackend
	executors []string
	image     string // the one image it has
}

func (p *picky) Preferences() Preferences {
	prefs := DefaultPreferences()
	if p.executors != nil {
		prefs.AllowedExecutors = p.executors
	}
	return prefs
}

func (p *picky) CanRun(_ context.Context, req *BidRequest) error {
	if req.Executor == ExecutorDocker && req.Image != p.image {
		return Declined(ReasonNoImage, "lacks image %s", req.Image)
	}
	return nil
}

// newPickyMesh starts n services over one in-memory network with the
// given backends.
func newPickyMesh(t *testing.T, backends []Backend) []*Service {
	t.Helper()
	fn := newFakeNet()
	t.Cleanup(fn.Close)
	var svcs []*Service
	for _, b := range backends {
		key, id := testPeer(t)
		withKey(b, key)
		svc, err := NewService(fn.host(id), key, b, LocalConfig())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		svcs = append(svcs, svc)
	}
	return svcs
}

func dockerJob(image string) Submission {
	sub := wasmJob()
	sub.Job.Executor, sub.Job.Module, sub.Job.Image = ExecutorDocker, nil, image
	return sub
}

// Each cause of "no bids" comes back as its own summary, naming the cause
// and how many providers gave it.
func TestEachNoBidCauseGetsItsOwnSummary(t *testing.T) {
	t.Parallel()
	requester := func() *fakeBackend { b := newFakeBackend(4000); b.onboarded = false; return b }
	busy := func() Backend {
		b := newFakeBackend(1000)
		if _, err := b.Reserve("someone-else", capability.Capability{CPU: capability.CPU{MilliCores: 1000}}, time.Now().Add(time.Hour), nil); err != nil {
			t.Fatal(err)
		}
		return b
	}
	tiny := newFakeBackend(65)
	for _, tc := range []struct {
		name     string
		backends []Backend
		sub      Submission
		want     string
	}{
		{"too large for any offer", []Backend{requester(), newFakeBackend(1000), newFakeBackend(1000), newFakeBackend(1000)},
			func() Submission { s := wasmJob(); s.Job.Requirements.CPU.MilliCores = 64000; return s }(),
			"3 providers heard it: 3 offer at most 1 core"},
		{"image absent", []Backend{requester(),
			&picky{fakeBackend: newFakeBackend(1000), executors: []string{ExecutorDocker}},
			&picky{fakeBackend: newFakeBackend(1000), executors: []string{ExecutorDocker}},
			&picky{fakeBackend: newFakeBackend(1000)}},
			dockerJob("pyjob:1"),
			"3 providers heard it: 2 lack image pyjob:1, 1 does not run docker jobs"},
		{"all providers busy", []Backend{requester(), busy(), busy()},
			wasmJob(), "2 providers heard it: 2 have 0 cores free now"},
		{"a lone node of tiny capacity", []Backend{tiny},
			wasmJob(), "1 provider heard it: 1 offers at most 0.065 cores"},
		{"nobody onboarded", []Backend{requester(), requester(), requester()},
			wasmJob(), "none answered: 2 connected peers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svcs := newPickyMesh(t, tc.backends)
			_, err := svcs[0].Submit(context.Background(), tc.sub, nil)
			if !errors.Is(err, ErrNoBids) {
				t.Fatalf("err = %v, want ErrNoBids", err)
			}
			nm := NoMatchOf(err)
			if nm == nil {
				t.Fatalf("err %v carries no summary", err)
			}
			if nm.String() != tc.want {
				t.Fatalf("summary %q\nwant    %q", nm, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// A provider the request was not meant for (outside its spread) says
// nothing, and a decline for a request the requester never sent is
// refused.
func TestDeclinesOnlyFromProvidersTheRequestReached(t *testing.T) {
	t.Parallel()
	svcs := newPickyMesh(t, []Backend{newFakeBackend(1000), newFakeBackend(1000)})
	requester, provider := svcs[0], svcs[1]
	req := validRequest(requester.host.ID(), time.Now())
	req.Requirements.CPU.MilliCores = 64000
	d := Distance(provider.host.ID(), req.JobID)
	req.Spread = d / 2 // the provider is beyond it
	provider.provider.HandleBidRequest(req)
	req2 := *req
	req2.Spread, req2.Explain, req2.JobID = 1, 1, NewJobID()
	provider.provider.HandleBidRequest(&req2)
	// Asked to bid but not to explain (a probe asks none; a large mesh,
	// about MaxExplainers of its providers): no decline.
	req3 := *req
	req3.Spread, req3.JobID = 1, NewJobID()
	req3.Explain = Distance(provider.host.ID(), req3.JobID) / 2
	provider.provider.HandleBidRequest(&req3)
	req4 := req3
	req4.JobID, req4.Explain = NewJobID(), 0
	provider.provider.HandleBidRequest(&req4)
	provider.provider.wg.Wait() // the declines' sends
	if !provider.provider.declines.allow(req, time.Now()) {
		t.Fatal("the provider declined a request outside its spread")
	}
	if provider.provider.declines.allow(&req2, time.Now()) {
		t.Fatal("the provider did not decline a request it was meant for")
	}
	if !provider.provider.declines.allow(&req3, time.Now()) || !provider.provider.declines.allow(&req4, time.Now()) {
		t.Fatal("the provider explained a decline it was not asked to")
	}
	// The requester has no bidding open for either: a decline is refused.
	data, _ := Encode(&Decline{JobID: req2.JobID, Nonce: req2.Nonce, Code: ReasonTooSmall, Text: "offers at most 1 core"})
	if _, err := requester.handleDecline(context.Background(), provider.host.ID(), data); err == nil {
		t.Fatal("a decline for a job with no open bidding was taken")
	}
}

// Every decline decide gives carries a code and a short text for the
// requester; a backend's refusal keeps its code, and one without a code
// tells the requester nothing of the machine.
func TestDeclinesCarryACode(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cpu := func(m uint64) capability.Capability {
		return capability.Capability{CPU: capability.CPU{MilliCores: m}, Memory: capability.GiB}
	}
	offer := Offer{Registered: cpu(4000), Available: cpu(2000), Price: capability.PriceInformation{Currency: "DMS", PerCoreHour: 2}}
	maxPrice := 0.5
	for _, tc := range []struct {
		name        string
		need        uint64
		max         *float64
		edit        func(*decisionInput)
		code, short string
	}{
		{"larger than the offer", 8000, nil, nil, ReasonTooSmall, "offers at most 4 cores"},
		{"larger than what is free", 3000, nil, nil, ReasonBusy, "has 2 cores free now"},
		{"over the max price", 1000, &maxPrice, nil, ReasonPrice, "asks 2, over the max price 0.5"},
		{"a lapsing requester", 1000, nil, func(i *decisionInput) { i.Standing = Lapsing }, ReasonLapsing, "refuses this requester: it let holds lapse there"},
		{"an image the node lacks", 1000, nil, func(i *decisionInput) {
			i.CanRun = &DeclineError{Code: ReasonNoImage, Text: "lacks image pyjob:1", Err: errors.New("image not present: pyjob:1")}
		}, ReasonNoImage, "lacks image pyjob:1"},
		{"a refusal with no code", 1000, nil, func(i *decisionInput) { i.CanRun = errors.New("dial unix /var/run/docker.sock: permission denied") }, ReasonCannotRun, "cannot run it there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &BidRequest{JobID: "job-1", Requirements: cpu(tc.need), MaxPrice: tc.max, Duration: seconds.Duration(time.Hour), Deadline: now.Add(time.Minute), Spread: 1}
			in := decisionInput{Now: now, Standing: Newcomer, Offer: offer, Checked: true, Waited: true, Config: DefaultProviderConfig()}
			if tc.edit != nil {
				tc.edit(&in)
			}
			d := decide(req, in)
			if d.Decline == "" || d.Code != tc.code || d.Short != tc.short {
				t.Fatalf("decision %+v: want a decline %s %q", d, tc.code, tc.short)
			}
		})
	}
}
