package orchestrator

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func mustConstraints(t testing.TB, ss ...string) []Constraint {
	t.Helper()
	var out []Constraint
	for _, s := range ss {
		c, err := ParseConstraint(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// manyValues lists n distinct label values.
func manyValues(n int) string {
	var vs []string
	for i := range n {
		vs = append(vs, fmt.Sprintf("v%d", i))
	}
	return strings.Join(vs, ",")
}

func TestParseConstraint(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"region=eu-west", "region=eu-west"},
		{" region = eu-west ", "region=eu-west"},
		{"region==eu-west", "region=eu-west"},
		{"region!=eu-west", "region!=eu-west"},
		{"region in (eu-west, eu-north)", "region in (eu-west,eu-north)"},
		{"region in(eu-west,eu-west)", "region in (eu-west)"},
		{"region notin (us-east)", "region notin (us-east)"},
		{"gpu", "gpu exists"},
		{"gpu exists", "gpu exists"},
		{"!gpu", "!gpu"},
		{"gpu !exists", "!gpu"},
		{"dms.io/zone=a_1", "dms.io/zone=a_1"},
	} {
		c, err := ParseConstraint(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if c.String() != tc.want {
			t.Errorf("%q parsed as %q, want %q", tc.in, c, tc.want)
		}
		again, err := ParseConstraint(c.String())
		if err != nil || again.String() != c.String() {
			t.Errorf("%q does not read back: %v, %v", c, again, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"region=", "label value \"\""},
		{"=eu", "label key \"\""},
		{"reg ion=eu", "character ' ' not allowed"},
		{"region=eu west", "character ' ' not allowed"},
		{"region in eu-west", "want a list in parentheses"},
		{"region in ()", "label value \"\""},
		{"region near (a)", "operator \"near\""},
		{"gpu exists now", "unexpected \"now\""},
		{"-gpu", "must start and end with a letter or digit"},
		{"region=" + strings.Repeat("a", MaxLabelValue+1), "want 1 to 63 characters"},
		{"region in (" + manyValues(MaxConstraintValues+1) + ")", "1 to 16 values"},
	} {
		_, err := ParseConstraint(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %q", tc.in, err, tc.want)
		}
	}
}

func TestConstraintMatches(t *testing.T) {
	labels := Labels{"region": "eu-west", "tier": "gold"}
	for _, tc := range []struct {
		c    string
		want bool
	}{
		{"region=eu-west", true},
		{"region=us-east", false},
		{"zone=a", false},
		{"region!=us-east", true},
		{"region!=eu-west", false},
		{"zone!=a", true}, // an absent label is not a
		{"region in (us-east,eu-west)", true},
		{"region in (us-east)", false},
		{"zone in (a)", false},
		{"region notin (us-east)", true},
		{"region notin (eu-west)", false},
		{"zone notin (a)", true},
		{"tier", true},
		{"gpu", false},
		{"!gpu", true},
		{"!tier", false},
	} {
		if got := mustConstraints(t, tc.c)[0].Matches(labels); got != tc.want {
			t.Errorf("%s on %s: %v, want %v", tc.c, labels, got, tc.want)
		}
	}
	if got := Unmet(mustConstraints(t, "tier=gold", "region=eu-north"), labels); got != "constraint region=eu-north not met (region=eu-west)" {
		t.Errorf("unmet: %q", got)
	}
	if got := Unmet(mustConstraints(t, "tier=gold", "zone in (a,b)"), labels); got != "constraint zone in (a,b) not met (no zone label)" {
		t.Errorf("unmet, absent: %q", got)
	}
	if got := Unmet(mustConstraints(t, "tier=gold", "region"), labels); got != "" {
		t.Errorf("all met, yet %q", got)
	}
}

// Constraints travel as text, and one that does not parse fails the
// message it came in.
func TestConstraintsOnTheWire(t *testing.T) {
	_, id := testPeer(t)
	req := validRequest(id, time.Now())
	req.Constraints = mustConstraints(t, "region in (eu-west,eu-north)", "!gpu")
	data, err := Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"constraints":["region in (eu-west,eu-north)","!gpu"]`) {
		t.Errorf("encoded as %s", data)
	}
	got, err := DecodeBidRequest(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Constraints) != 2 || got.Constraints[0].String() != "region in (eu-west,eu-north)" || got.Constraints[1].Op != OpNotExists {
		t.Errorf("decoded %v", got.Constraints)
	}

	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for name, cs := range map[string]any{
		"bad text":  []string{"region near (a)"},
		"too many":  strings.Split(strings.Repeat("a=b,", MaxConstraints+1)[:4*(MaxConstraints+1)-1], ","),
		"not texts": []int{1},
	} {
		raw["constraints"] = cs
		bad, _ := json.Marshal(raw)
		if _, err := DecodeBidRequest(bad); err == nil {
			t.Errorf("%s: accepted %s", name, bad)
		}
	}

	b := &Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: id, Labels: Labels{"region": "eu west"}}
	data, _ = Encode(b)
	if _, err := DecodeBid(data); err == nil || !strings.Contains(err.Error(), "label value") {
		t.Errorf("a bid with a bad label: %v", err)
	}
	tooMany := Labels{}
	for i := range MaxLabels + 1 {
		tooMany[string(rune('a'+i%26))+strings.Repeat("x", i/26)] = "v"
	}
	b.Labels = tooMany
	data, _ = Encode(b)
	if _, err := DecodeBid(data); err == nil || !strings.Contains(err.Error(), "at most 32") {
		t.Errorf("a bid with %d labels: %v", len(tooMany), err)
	}
}

func TestParseLabel(t *testing.T) {
	if k, v, err := ParseLabel("region=eu-west"); err != nil || k != "region" || v != "eu-west" {
		t.Errorf("region=eu-west: %q %q %v", k, v, err)
	}
	for in, want := range map[string]string{
		"region":          "want KEY=VALUE",
		"region=":         "label value \"\"",
		"=eu":             "label key \"\"",
		"re gion=eu":      "character ' ' not allowed",
		"region=eu/west":  "character '/' not allowed",
		"region=eu-west-": "must start and end",
	} {
		if _, _, err := ParseLabel(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %q", in, err, want)
		}
	}
}

// Preferences rank a bid that meets more of them first, ahead of price;
// among equals, the node's ranking decides.
func TestPreferencesRankBids(t *testing.T) {
	req := &BidRequest{}
	bid := func(name string, price float64, labels Labels) *SignedBid {
		return &SignedBid{Bid: Bid{Provider: peer.ID(name), Price: price, Labels: labels}}
	}
	bids := []*SignedBid{
		bid("cheap", 1, nil),
		bid("gold-us", 3, Labels{"tier": "gold", "region": "us-east"}),
		bid("gold-eu", 4, Labels{"tier": "gold", "region": "eu-west"}),
		bid("silver-eu", 2, Labels{"tier": "silver", "region": "eu-west"}),
		bid("gold-eu-cheaper", 3.5, Labels{"tier": "gold", "region": "eu-west"}),
	}
	rankSigned(req, bids, preferring(mustConstraints(t, "tier=gold", "region in (eu-west,eu-north)"), DefaultPreferences().Comparator()))
	var got []string
	for _, b := range bids {
		got = append(got, string(b.Bid.Provider))
	}
	want := "gold-eu-cheaper gold-eu silver-eu gold-us cheap"
	if strings.Join(got, " ") != want {
		t.Errorf("ranked %v, want %s", got, want)
	}
}

// The largest labels and constraints allowed still fit the messages that
// carry them, so a valid job is never refused for its size.
func TestPlacementFitsTheMessageLimits(t *testing.T) {
	k, id := testPeer(t)
	labels := Labels{}
	for i := range MaxLabels {
		key := fmt.Sprintf("k%02d", i) + strings.Repeat("x", MaxLabelKey-3)
		labels[key] = strings.Repeat("v", MaxLabelValue)
	}
	b := &Bid{JobID: NewJobID(), Nonce: "abcdefgh", Provider: id, Requester: id, HoldExpires: time.Now(), Labels: labels}
	sb, err := SealBid(b, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBid(sb.Envelope); err != nil {
		t.Fatalf("a bid with %d labels of the longest: %v", MaxLabels, err)
	}
	t.Logf("a bid with the most labels: %d bytes sealed, limit %d", len(sb.Envelope), MaxBidSize+envelopeOverhead)

	req := validRequest(id, time.Now())
	values := strings.Split(manyValues(MaxConstraintValues), ",")
	for i := range values {
		values[i] += strings.Repeat("v", MaxLabelValue-len(values[i]))
	}
	n := 0
	for i := 0; i < MaxConstraints; i++ {
		c := Constraint{Key: fmt.Sprintf("k%02d", i) + strings.Repeat("x", MaxLabelKey-3), Op: OpNotIn, Values: values}
		if n+len(c.String()) > MaxConstraintsText {
			c.Values = c.Values[:1]
		}
		if n+len(c.String()) > MaxConstraintsText {
			break
		}
		n += len(c.String())
		req.Constraints = append(req.Constraints, c)
	}
	sealed, err := SealBidRequest(req, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBidRequest(sealed); err != nil {
		t.Fatalf("a request with %d characters of constraints: %v", n, err)
	}
	t.Logf("a request with %d characters of constraints: %d bytes sealed, limit %d", n, len(sealed), MaxBidRequestSize+envelopeOverhead)
}
