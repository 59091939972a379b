package p2p

import (
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A flood from one author fills its own queue and is dropped there; the
// few messages of another author still all come out, and early.
func TestFairQueueKeepsQuietAuthorsUnderAFlood(t *testing.T) {
	q := newFairQueue(8, 20)
	flood, quiet := peer.ID("flood"), peer.ID("quiet")
	accepted := 0
	for i := range 500 {
		if q.push(Message{From: flood, Data: []byte(fmt.Sprint(i))}) {
			accepted++
		}
		if i%100 == 50 {
			if !q.push(Message{From: quiet, Data: []byte("honest")}) {
				t.Fatalf("a quiet author's message was dropped during the flood (after %d of the flood)", i)
			}
		}
	}
	if accepted != 8 {
		t.Fatalf("the flooding author got %d messages queued, want its limit of 8", accepted)
	}
	q.close()
	var order []peer.ID
	for {
		m, ok := q.pop()
		if !ok {
			break
		}
		order = append(order, m.From)
	}
	honest := 0
	for i, a := range order {
		if a == quiet {
			honest++
			if i > 2*honest {
				t.Fatalf("quiet author's message %d came out at position %d: not round-robin (%v)", honest, i, order)
			}
		}
	}
	if honest != 5 || len(order) != 13 {
		t.Fatalf("popped %d messages, %d of the quiet author; want 13 and 5", len(order), honest)
	}
}

// The total bound evicts from the longest queue, never from an author
// with less waiting.
func TestFairQueueTotalEvictsTheLongest(t *testing.T) {
	q := newFairQueue(10, 12)
	for i := range 10 {
		q.push(Message{From: "a", Data: []byte{byte(i)}})
	}
	for i := range 5 {
		if !q.push(Message{From: peer.ID(fmt.Sprint("b", i))}) {
			t.Fatalf("newcomer %d refused while another author holds 10", i)
		}
	}
	if q.n != 12 || len(q.queues["a"]) != 7 {
		t.Fatalf("queued %d in all, %d of the long queue; want 12 and 7", q.n, len(q.queues["a"]))
	}
}
