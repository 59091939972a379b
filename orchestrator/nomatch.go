package orchestrator

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// NoMatch sums up why bidding for a job ended with no acceptable bid: what
// the providers that heard the request said (their declines, and the bids
// that were not acceptable), and how many peers this node had.
type NoMatch struct {
	// Heard counts the providers that answered: declined, or bid
	// unacceptably.
	Heard int `json:"heard"`
	// Reasons are theirs, most common first.
	Reasons []ReasonCount `json:"reasons,omitempty"`
	// Peers is how many peers this node was connected to when bidding
	// closed.
	Peers int `json:"peers"`
}

// ReasonCount is one reason and how many providers gave it.
type ReasonCount struct {
	Code  string `json:"code"`
	Text  string `json:"text"`
	Count int    `json:"count"`
}

// answer is one provider's reason, as the requester collected it.
type answer struct {
	Provider peer.ID
	Code     string
	Text     string
}

// maxAnswers bounds the answers a requester keeps per bidding round; more
// providers than that answering only make the counts approximate.
const maxAnswers = 256

// maxShownReasons bounds the reasons String lists; the rest are counted.
const maxShownReasons = 5

// summarize folds the answers of one bidding round into a NoMatch: one
// answer per provider (the first), reasons grouped by code and text.
func summarize(answers []answer, peers int) NoMatch {
	seen := map[peer.ID]bool{}
	type key struct{ code, text string }
	counts := map[key]int{}
	for _, a := range answers {
		if seen[a.Provider] {
			continue
		}
		seen[a.Provider] = true
		counts[key{a.Code, a.Text}]++
	}
	nm := NoMatch{Heard: len(seen), Peers: peers}
	for k, n := range counts {
		nm.Reasons = append(nm.Reasons, ReasonCount{Code: k.code, Text: k.text, Count: n})
	}
	slices.SortFunc(nm.Reasons, func(a, b ReasonCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Code, b.Code), cmp.Compare(a.Text, b.Text))
	})
	return nm
}

// String reads as "5 providers heard it: 3 offer at most 1 core, 1 does
// not run docker jobs, 1 lacks image pyjob:1", or, when nobody answered,
// "none heard it: no providers on this network" or "none answered: 4
// connected peers".
func (m NoMatch) String() string {
	if m.Heard == 0 {
		if m.Peers == 0 {
			return "none heard it: no providers on this network"
		}
		return fmt.Sprintf("none answered: %d connected %s", m.Peers, plural(m.Peers, "peer", "peers"))
	}
	var parts []string
	rest := 0
	for i, r := range m.Reasons {
		if i >= maxShownReasons {
			rest += r.Count
			continue
		}
		parts = append(parts, fmt.Sprintf("%d %s", r.Count, verbFor(r.Count, r.Text)))
	}
	if rest > 0 {
		parts = append(parts, fmt.Sprintf("%d for other reasons", rest))
	}
	return fmt.Sprintf("%d %s heard it: %s", m.Heard, plural(m.Heard, "provider", "providers"), strings.Join(parts, ", "))
}

// verbFor makes a reason's text, written for one provider ("offers at
// most 1 core"), agree with a count of them ("3 offer at most 1 core").
func verbFor(n int, text string) string {
	if n == 1 || text == "" {
		return text
	}
	verb, rest, _ := strings.Cut(text, " ")
	switch verb {
	case "is":
		verb = "are"
	case "has":
		verb = "have"
	case "does":
		verb = "do"
	default:
		if strings.HasSuffix(verb, "s") && !strings.HasSuffix(verb, "ss") {
			verb = strings.TrimSuffix(verb, "s")
		}
	}
	if rest == "" {
		return verb
	}
	return verb + " " + rest
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// NoMatchError is the error of a bidding round that ended with no
// acceptable bid: it wraps ErrNoBids and carries the summary.
type NoMatchError struct {
	NoMatch NoMatch
	// Detail names the job's needs and the window, for the message.
	Detail string
}

func (e *NoMatchError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrNoBids, e.Detail, e.NoMatch)
}

func (e *NoMatchError) Unwrap() error { return ErrNoBids }

// NoMatchOf returns the summary err carries, or nil.
func NoMatchOf(err error) *NoMatch {
	var e *NoMatchError
	if errors.As(err, &e) {
		nm := e.NoMatch
		return &nm
	}
	return nil
}
