package resources

import (
	"regexp"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// idPattern is the rule validID replaced, kept here as its oracle.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$`)

func TestValidIDAgreesWithItsPattern(t *testing.T) {
	edges := []string{
		"", "a", "Z", "9", "-", ".a", "_a", ":a", "a-b.c_d:e", "a b", "a\n", "\na",
		"é", "a/b", "a\x00", strings.Repeat("a", 200), strings.Repeat("a", 201),
		"a" + strings.Repeat("-", 199), "a" + strings.Repeat("-", 200),
	}
	for _, id := range edges {
		if got, want := validID(id), idPattern.MatchString(id); got != want {
			t.Errorf("validID(%q) = %v, the pattern says %v", id, got, want)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		// Mostly the characters the rule is about, near the length bound.
		alphabet := rapid.SampledFrom([]rune("aZ09._:-/ \né\x00"))
		id := string(rapid.SliceOfN(alphabet, 0, 210).Draw(t, "id"))
		if got, want := validID(id), idPattern.MatchString(id); got != want {
			t.Fatalf("validID(%q) = %v, the pattern says %v", id, got, want)
		}
	})
}
