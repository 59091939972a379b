// Package poll is how tests wait for something that happens on the network:
// they poll a condition until a deadline, never sleep a fixed time.
package poll

import (
	"testing"
	"time"
)

// Interval is how often Until looks again.
const Interval = 10 * time.Millisecond

// Until polls cond until it holds, failing t after d with what it waited
// for.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", d, what)
		}
		time.Sleep(Interval)
	}
}
