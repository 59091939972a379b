package p2p

import (
	"testing"
	"time"
)

func TestPenaltiesAddUpAndDecay(t *testing.T) {
	now := time.Now()
	ps := newPenalties()
	ps.now = func() time.Time { return now }
	if s := ps.score("a"); s != 0 {
		t.Fatalf("unpenalised peer scores %v", s)
	}
	for range 3 {
		ps.add("a")
	}
	if s := ps.score("a"); s != -3*penaltyPoints {
		t.Fatalf("three penalties: %v, want %v", s, -3*penaltyPoints)
	}
	now = now.Add(penaltyHalfLife)
	if s := ps.score("a"); s > -149 || s < -151 {
		t.Fatalf("after a half-life: %v, want -150", s)
	}
	if s := ps.score("b"); s != 0 {
		t.Fatalf("another peer: %v", s)
	}
	now = now.Add(20 * penaltyHalfLife)
	if s := ps.score("a"); s != 0 || len(ps.by) != 0 {
		t.Fatalf("long after: %v with %d remembered, want 0 and none", s, len(ps.by))
	}
}
