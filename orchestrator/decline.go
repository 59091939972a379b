package orchestrator

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/capability"
)

// Why nothing matched. A provider that hears a request it will not bid on
// tells the requester why in a Decline: one short message, only from a
// provider the request was meant for (eligible by its spread), at most
// once per request (job, attempt and bidding deadline: a re-send within the
// same bidding round does not count again), and within a per-requester
// token bucket on the provider, beyond which declines are dropped without
// a word. So a requester cannot make the mesh flood it: it gets at most
// one decline per provider per request it published, and the validators
// already bound how many requests it may publish. The requester sums the
// declines, and the bids it found unacceptable, into a NoMatch.

// ProtocolDecline carries declines, provider to requester. A requester
// that does not serve it (an older node) simply hears none.
const ProtocolDecline = "decline/1"

// MaxDeclineSize bounds a decline on the wire; maxDeclineText bounds its
// text, so a decline stays a line.
const (
	MaxDeclineSize = 1 << 10
	maxDeclineText = 160
	maxDeclineCode = 24
)

// Reason codes of a decline: why a provider that heard a request did not
// bid. They are stable, for scripts; the text that comes with one says the
// particulars ("offers at most 1 core").
const (
	// ReasonTooSmall: the whole offer is smaller than the job (cpu,
	// memory or disk), however idle the provider is.
	ReasonTooSmall = "too-small"
	// ReasonBusy: the offer could take the job, but what is held and
	// locked leaves too little now, or this requester's quota is used.
	ReasonBusy = "busy"
	// ReasonNoExecutor: the provider does not run this kind of job.
	ReasonNoExecutor = "no-executor"
	// ReasonNoImage: a container job's image is not on the provider.
	ReasonNoImage = "no-image"
	// ReasonGPU: the job wants GPUs the provider has not, or cannot give.
	ReasonGPU = "gpu"
	// ReasonPrice: the provider's quote is over the job's max price, or
	// the max price under the provider's minimum.
	ReasonPrice = "price"
	// ReasonLapsing: the requester let too many of this provider's holds
	// lapse, and gets no bids from it for a while.
	ReasonLapsing = "lapsing"
	// ReasonThrottled: the requester held far more of this provider's
	// offer than it ran, and gets no bids from it for a while.
	ReasonThrottled = "throttled"
	// ReasonConstraint: the provider does not meet a placement constraint
	// of the job.
	ReasonConstraint = "constraint"
	// ReasonDuration: the job may run longer than the provider allows.
	ReasonDuration = "duration"
	// ReasonRequester: the provider does not take jobs from this requester.
	ReasonRequester = "requester"
	// ReasonCannotRun: anything else the provider's backend refused.
	ReasonCannotRun = "cannot-run"
	// ReasonExpired: the requester found the bid's hold already expired.
	ReasonExpired = "expired"
)

// DeclineError is a reason not to bid with its code. A Backend's CanRun
// may return one (see Declined) so that the requester hears the code;
// other errors are sent as ReasonCannotRun.
type DeclineError struct {
	Code string
	Text string
	// Err, if set, is the whole story, for the provider's own record.
	Err error
}

func (e *DeclineError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Text
}

func (e *DeclineError) Unwrap() error { return e.Err }

// Declined returns a DeclineError with a code from the list above and a
// short text that reads after a provider count: "offers at most 1 core",
// "lacks image pyjob:1".
func Declined(code, format string, args ...any) *DeclineError {
	return &DeclineError{Code: code, Text: fmt.Sprintf(format, args...)}
}

// reasonOf is the code and text of err for a decline. An error without a
// code may name this machine's paths or sockets: the requester gets only
// that the provider cannot run the job.
func reasonOf(err error) (code, text string) {
	var d *DeclineError
	if errors.As(err, &d) {
		return d.Code, d.Text
	}
	return ReasonCannotRun, "cannot run it there"
}

// Decline is what a provider sends a requester instead of a bid. The
// provider is the stream's remote peer, authenticated by the transport:
// a decline only feeds a summary, so it is not signed.
type Decline struct {
	JobID string `json:"job_id"`
	// Nonce ties the decline to a request the requester sent.
	Nonce string `json:"nonce"`
	Code  string `json:"code"`
	Text  string `json:"text"`
}

// DecodeDecline decodes and checks a decline.
func DecodeDecline(data []byte) (*Decline, error) {
	var d Decline
	if err := decode(data, MaxDeclineSize, &d); err != nil {
		return nil, err
	}
	return &d, d.check()
}

func (d *Decline) check() error {
	if err := checkJobID(d.JobID); err != nil {
		return err
	}
	if len(d.Nonce) < 8 || len(d.Nonce) > 64 {
		return invalid("decline nonce of %d characters: want 8 to 64", len(d.Nonce))
	}
	if d.Code == "" || len(d.Code) > maxDeclineCode {
		return invalid("decline code %q: want 1 to %d characters", clip(d.Code), maxDeclineCode)
	}
	for _, c := range d.Code {
		if !(c >= 'a' && c <= 'z' || c == '-') {
			return invalid("decline code %q: want lower-case letters and '-'", clip(d.Code))
		}
	}
	if len(d.Text) > maxDeclineText {
		return invalid("decline text of %d bytes: at most %d", len(d.Text), maxDeclineText)
	}
	for _, c := range d.Text {
		if c < ' ' || c == 0x7f {
			return invalid("decline text: control character %q", c)
		}
	}
	return nil
}

// shortText cuts a reason to what a decline may carry, on a rune boundary,
// with control characters turned into spaces.
func shortText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) <= maxDeclineText {
		return s
	}
	cut := maxDeclineText - 3
	for cut > 0 && s[cut]&0xc0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}

// tooSmall says which dimension of an offer a job's requirements exceed,
// as a code and a text: the whole offer (ReasonTooSmall, ReasonGPU) or
// what is free of it now (ReasonBusy).
func tooSmall(req, registered, available capability.Capability) (code, text string) {
	short := func(have capability.Capability) string {
		switch {
		case req.CPU.MilliCores > have.CPU.MilliCores:
			return cores(have.CPU.MilliCores)
		case req.Memory > have.Memory:
			return capability.FormatBytes(have.Memory) + " of memory"
		case req.Disk > have.Disk:
			return capability.FormatBytes(have.Disk) + " of disk"
		}
		return ""
	}
	if !req.Fits(registered) {
		if s := short(registered); s != "" {
			return ReasonTooSmall, "offers at most " + s
		}
		if len(registered.GPUs) == 0 {
			return ReasonGPU, "offers no GPU"
		}
		return ReasonGPU, fmt.Sprintf("offers no GPU that fits (has %d)", len(registered.GPUs))
	}
	if s := short(available); s != "" {
		return ReasonBusy, "has " + s + " free now"
	}
	return ReasonBusy, "has its GPUs in use"
}

func cores(milli uint64) string {
	if milli == 1000 {
		return "1 core"
	}
	return capability.FormatCPU(milli) + " cores"
}

// declineKey names one request (one bidding round of one attempt) for
// once-per-request declines: re-sends within the round keep the deadline.
func declineKey(req *BidRequest) string {
	return fmt.Sprintf("%s/%s/%d/%d", req.Requester, req.JobID, req.Attempt, req.Deadline.UnixNano())
}

// DeclineLimits bound the declines a provider sends one requester: Burst
// at once, then Rate a second; beyond that they are dropped.
type DeclineLimits struct {
	Rate  float64
	Burst int
}

// DefaultDeclineLimits let a requester hear why about a batch of jobs at
// once, and a few a second after that.
func DefaultDeclineLimits() DeclineLimits { return DeclineLimits{Rate: 5, Burst: 20} }

// maxDeclineMemory bounds the requests a provider remembers having
// declined, and the requesters whose decline rate it tracks.
const maxDeclineMemory = 4096

// declineGate decides whether a decline goes out: once per request, within
// the requester's bucket. It is the provider's; the caller holds its lock.
type declineGate struct {
	limits  DeclineLimits
	sent    map[string]time.Time // declineKey -> until when it is remembered
	buckets map[peer.ID]*bucket
}

func newDeclineGate(l DeclineLimits) *declineGate {
	return &declineGate{limits: l, sent: map[string]time.Time{}, buckets: map[peer.ID]*bucket{}}
}

// allow reports whether a decline for req may be sent now, and if so
// counts it.
func (g *declineGate) allow(req *BidRequest, now time.Time) bool {
	if g.limits.Rate <= 0 || g.limits.Burst < 1 {
		return false
	}
	key := declineKey(req)
	if until, ok := g.sent[key]; ok && now.Before(until) {
		return false
	}
	if len(g.sent) >= maxDeclineMemory {
		for k, until := range g.sent {
			if !now.Before(until) {
				delete(g.sent, k)
			}
		}
		if len(g.sent) >= maxDeclineMemory {
			// Every one is still live: refuse rather than forget one and
			// decline twice.
			return false
		}
	}
	b := g.buckets[req.Requester]
	if b == nil {
		if len(g.buckets) >= maxDeclineMemory {
			lim := RequestLimits(g.limits)
			for p, o := range g.buckets {
				if o.refill(now, lim); o.tokens >= float64(g.limits.Burst) {
					delete(g.buckets, p)
				}
			}
			if len(g.buckets) >= maxDeclineMemory {
				return false
			}
		}
		b = &bucket{tokens: float64(g.limits.Burst), last: now}
		g.buckets[req.Requester] = b
	}
	b.refill(now, RequestLimits(g.limits))
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	g.sent[key] = req.Deadline.Add(ClockSkew)
	return true
}
