package orchestrator

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Placement: a provider describes itself with labels (region=eu-west,
// tier=gold), a job names constraints on them. Hard constraints travel in
// the bid request and a provider whose labels do not meet them declines;
// soft ones (preferences) stay with the requester and rank the bids. Both
// arrive from the network, so everything here is bounded and checked.

// Limits on labels and constraints. They keep a bid and a bid request
// well within MaxBidSize and MaxBidRequestSize.
const (
	MaxLabels           = 32
	MaxLabelKey         = 63
	MaxLabelValue       = 63
	MaxConstraints      = 16 // hard ones, and soft ones, per job
	MaxConstraintValues = 16 // in one in (...) or notin (...)
	// MaxConstraintsText bounds a job's constraints as text, all together.
	MaxConstraintsText = 4 << 10
)

// Labels are what a provider says of itself, key to value.
type Labels map[string]string

// ConstraintOp is how a constraint compares a label.
type ConstraintOp string

// The operators. A label that is absent meets != and notin, as it does in
// Kubernetes' selectors: "not in eu-west" holds for a provider that names
// no region.
const (
	OpEqual     ConstraintOp = "="
	OpNotEqual  ConstraintOp = "!="
	OpIn        ConstraintOp = "in"
	OpNotIn     ConstraintOp = "notin"
	OpExists    ConstraintOp = "exists"
	OpNotExists ConstraintOp = "!exists"
)

// Constraint is one condition on a provider's labels. It travels as its
// text (see String), so what a user wrote is what a provider reads.
type Constraint struct {
	Key    string
	Op     ConstraintOp
	Values []string // one for = and !=, one or more for in and notin
}

// constraintForms is what a constraint may look like, for error messages.
const constraintForms = "KEY=VALUE, KEY!=VALUE, KEY in (A,B), KEY notin (A,B), KEY exists (or just KEY), !KEY (or KEY !exists)"

// labelCharset says what a key or value may hold, for error messages.
const labelCharset = "letters, digits, '.', '-' and '_' (a key also '/'), starting and ending with a letter or digit"

// ParseConstraint reads a constraint in one of constraintForms.
func ParseConstraint(s string) (Constraint, error) {
	c, err := parseConstraint(strings.TrimSpace(s))
	if err != nil {
		return Constraint{}, fmt.Errorf("constraint %q: %w", clip(s), err)
	}
	return c, nil
}

func parseConstraint(s string) (Constraint, error) {
	if len(s) > MaxConstraintsText {
		return Constraint{}, fmt.Errorf("%d characters, at most %d", len(s), MaxConstraintsText)
	}
	if s == "" {
		return Constraint{}, errors.New("empty: want " + constraintForms)
	}
	var c Constraint
	if i := strings.IndexByte(s, '='); i >= 0 {
		key, value := s[:i], s[i+1:]
		c.Op = OpEqual
		switch {
		case strings.HasSuffix(key, "!"):
			key, c.Op = key[:len(key)-1], OpNotEqual
		case strings.HasPrefix(value, "="):
			value = value[1:]
		}
		c.Key, c.Values = strings.TrimSpace(key), []string{strings.TrimSpace(value)}
	} else if rest, ok := strings.CutPrefix(s, "!"); ok {
		c.Key, c.Op = strings.TrimSpace(rest), OpNotExists
	} else {
		key, rest, _ := strings.Cut(s, " ")
		c.Key = key
		rest = strings.TrimSpace(rest)
		word, list, _ := strings.Cut(rest, " ")
		if i := strings.IndexByte(word, '('); i >= 0 {
			word, list = word[:i], rest[i:] // "in(a,b)"
		}
		switch ConstraintOp(word) {
		case "", OpExists:
			c.Op = OpExists
		case OpNotExists:
			c.Op = OpNotExists
		case OpIn, OpNotIn:
			c.Op = ConstraintOp(word)
			values, err := parseSet(strings.TrimSpace(list))
			if err != nil {
				return Constraint{}, err
			}
			c.Values = values
			list = ""
		default:
			return Constraint{}, fmt.Errorf("operator %q: want %s", clip(word), constraintForms)
		}
		if strings.TrimSpace(list) != "" {
			return Constraint{}, fmt.Errorf("unexpected %q after %s: want %s", clip(list), word, constraintForms)
		}
	}
	return c, c.check()
}

// parseSet reads "(a, b, c)".
func parseSet(s string) ([]string, error) {
	inner, ok := strings.CutPrefix(s, "(")
	if inner, ok = strings.CutSuffix(inner, ")"); !ok {
		return nil, fmt.Errorf("values %q: want a list in parentheses, e.g. (eu-west,eu-north)", clip(s))
	}
	var out []string
	for _, v := range strings.Split(inner, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// check says what is wrong with a constraint built by hand or decoded.
func (c Constraint) check() error {
	if err := CheckLabelKey(c.Key); err != nil {
		return err
	}
	switch c.Op {
	case OpEqual, OpNotEqual:
		if len(c.Values) != 1 {
			return fmt.Errorf("%s takes one value, got %d", c.Op, len(c.Values))
		}
	case OpIn, OpNotIn:
		if len(c.Values) == 0 || len(c.Values) > MaxConstraintValues {
			return fmt.Errorf("%s takes 1 to %d values, got %d", c.Op, MaxConstraintValues, len(c.Values))
		}
	case OpExists, OpNotExists:
		if len(c.Values) != 0 {
			return fmt.Errorf("%s takes no value", c.Op)
		}
	default:
		return fmt.Errorf("operator %q: want %s", clip(string(c.Op)), constraintForms)
	}
	for _, v := range c.Values {
		if err := CheckLabelValue(v); err != nil {
			return err
		}
	}
	return nil
}

// String is the constraint in its canonical form, which ParseConstraint
// reads back to the same constraint.
func (c Constraint) String() string {
	switch c.Op {
	case OpEqual, OpNotEqual:
		if len(c.Values) == 1 {
			return c.Key + string(c.Op) + c.Values[0]
		}
	case OpExists:
		return c.Key + " exists"
	case OpNotExists:
		return "!" + c.Key
	}
	return c.Key + " " + string(c.Op) + " (" + strings.Join(c.Values, ",") + ")"
}

// MarshalText makes a constraint travel as its text.
func (c Constraint) MarshalText() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("constraint %s: %w", clip(c.String()), err)
	}
	return []byte(c.String()), nil
}

// UnmarshalText parses and checks a constraint that arrived as text.
func (c *Constraint) UnmarshalText(b []byte) error {
	v, err := ParseConstraint(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Matches reports whether labels meet the constraint.
func (c Constraint) Matches(labels Labels) bool {
	v, ok := labels[c.Key]
	switch c.Op {
	case OpEqual:
		return ok && len(c.Values) == 1 && v == c.Values[0]
	case OpNotEqual:
		return !ok || len(c.Values) != 1 || v != c.Values[0]
	case OpIn:
		return ok && slices.Contains(c.Values, v)
	case OpNotIn:
		return !ok || !slices.Contains(c.Values, v)
	case OpExists:
		return ok
	case OpNotExists:
		return !ok
	}
	return false
}

// Unmet says which of cs labels do not meet, and what the label is
// instead, as a provider's decline: "constraint region=eu-west not met
// (region=us-east)". "" when all are met. The "constraint " prefix is
// stable, for summaries that sort declines by cause.
func Unmet(cs []Constraint, labels Labels) string {
	c, ok := firstUnmet(cs, labels)
	if !ok {
		return ""
	}
	have := "no " + c.Key + " label"
	if v, ok := labels[c.Key]; ok {
		have = c.Key + "=" + v
	}
	return fmt.Sprintf("constraint %s not met (%s)", c, have)
}

// firstUnmet is the first constraint of cs that labels do not meet.
func firstUnmet(cs []Constraint, labels Labels) (Constraint, bool) {
	for _, c := range cs {
		if !c.Matches(labels) {
			return c, true
		}
	}
	return Constraint{}, false
}

// unmetShort is a decline's short text for the requester's summary, read
// after a count of providers: "does not meet region=eu-west".
func unmetShort(cs []Constraint, labels Labels) string {
	if c, ok := firstUnmet(cs, labels); ok {
		return "does not meet " + c.String()
	}
	return ""
}

// Satisfied counts the constraints of cs that labels meet.
func Satisfied(cs []Constraint, labels Labels) int {
	n := 0
	for _, c := range cs {
		if c.Matches(labels) {
			n++
		}
	}
	return n
}

// describeConstraints is ", constraints a, b" for a message about a job
// that names some, "" otherwise.
func describeConstraints(cs []Constraint) string {
	if len(cs) == 0 {
		return ""
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return ", constraints " + strings.Join(parts, ", ")
}

// checkConstraints bounds a job's hard or soft constraints as a whole;
// each was checked as it was decoded or parsed.
func checkConstraints(what string, cs []Constraint) error {
	if len(cs) > MaxConstraints {
		return invalid("%d %s: at most %d", len(cs), what, MaxConstraints)
	}
	n := 0
	for _, c := range cs {
		if err := c.check(); err != nil {
			return invalid("%s %s: %v", what, clip(c.String()), err)
		}
		n += len(c.String())
	}
	if n > MaxConstraintsText {
		return invalid("%s of %d characters: at most %d", what, n, MaxConstraintsText)
	}
	return nil
}

// preferring ranks bids by how many of prefer their labels meet, most
// first, and then by c: a preference comes before price.
func preferring(prefer []Constraint, c CapabilityComparator) CapabilityComparator {
	if len(prefer) == 0 {
		return c
	}
	return func(req *BidRequest, a, b *Bid) int {
		if d := cmp.Compare(Satisfied(prefer, b.Labels), Satisfied(prefer, a.Labels)); d != 0 {
			return d
		}
		return c(req, a, b)
	}
}

// CheckLabelKey checks a label's key.
func CheckLabelKey(k string) error {
	if err := checkLabelText(k, MaxLabelKey, true); err != nil {
		return fmt.Errorf("label key %q: %w", clip(k), err)
	}
	return nil
}

// CheckLabelValue checks a label's value.
func CheckLabelValue(v string) error {
	if err := checkLabelText(v, MaxLabelValue, false); err != nil {
		return fmt.Errorf("label value %q: %w", clip(v), err)
	}
	return nil
}

func checkLabelText(s string, limit int, key bool) error {
	if s == "" || len(s) > limit {
		return fmt.Errorf("want 1 to %d characters: %s", limit, labelCharset)
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !alnum(c) && c != '.' && c != '-' && c != '_' && !(key && c == '/') {
			return fmt.Errorf("character %q not allowed: want %s", c, labelCharset)
		}
	}
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return fmt.Errorf("must start and end with a letter or digit (%s)", labelCharset)
	}
	return nil
}

// ParseLabel reads KEY=VALUE.
func ParseLabel(s string) (key, value string, err error) {
	key, value, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("label %q: want KEY=VALUE, e.g. region=eu-west", clip(s))
	}
	if err := CheckLabelKey(key); err != nil {
		return "", "", err
	}
	if err := CheckLabelValue(value); err != nil {
		return "", "", err
	}
	return key, value, nil
}

// Validate checks every label and their number.
func (l Labels) Validate() error {
	if len(l) > MaxLabels {
		return fmt.Errorf("%d labels: at most %d", len(l), MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(l)) {
		if err := CheckLabelKey(k); err != nil {
			return err
		}
		if err := CheckLabelValue(l[k]); err != nil {
			return fmt.Errorf("label %s: %w", k, err)
		}
	}
	return nil
}

// String lists the labels as k=v, sorted by key, comma-separated.
func (l Labels) String() string {
	parts := make([]string, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}
