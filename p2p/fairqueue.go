package p2p

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// fairQueue holds received messages for the topic's reader, one FIFO per
// author, served round-robin. Each author may have perAuthor messages
// waiting and all together total; past that an author's newest message is
// dropped, so one author's flood costs only that author. One mutex owns
// all of it.
type fairQueue struct {
	perAuthor, total int

	mu      sync.Mutex
	queues  map[peer.ID][]Message
	ring    []peer.ID // authors with waiting messages, in serving order
	n       int
	closed  bool
	nonzero chan struct{} // one token while messages wait or once closed
}

func newFairQueue(perAuthor, total int) *fairQueue {
	return &fairQueue{perAuthor: perAuthor, total: total, queues: map[peer.ID][]Message{}, nonzero: make(chan struct{}, 1)}
}

// push queues m, or reports false when its author, or the queue, is full.
func (q *fairQueue) push(m Message) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	waiting := q.queues[m.From]
	if len(waiting) >= q.perAuthor {
		return false
	}
	if q.n >= q.total && !q.evictLongest(m.From) {
		return false
	}
	if len(waiting) == 0 {
		q.ring = append(q.ring, m.From)
	}
	q.queues[m.From] = append(waiting, m)
	q.n++
	q.signal()
	return true
}

// evictLongest drops the newest message of the author with the most
// waiting, unless that is the author asking for room.
func (q *fairQueue) evictLongest(asking peer.ID) bool {
	var longest peer.ID
	for a, ms := range q.queues {
		if len(ms) > len(q.queues[longest]) {
			longest = a
		}
	}
	if longest == asking || len(q.queues[longest]) <= len(q.queues[asking])+1 {
		return false
	}
	ms := q.queues[longest]
	q.queues[longest] = ms[:len(ms)-1]
	q.n--
	return true
}

// pop waits for a message and returns the oldest of the next author in
// turn; false once the queue is closed and empty.
func (q *fairQueue) pop() (Message, bool) {
	for {
		q.mu.Lock()
		if len(q.ring) > 0 {
			a := q.ring[0]
			ms := q.queues[a]
			m := ms[0]
			q.ring = q.ring[1:]
			if len(ms) == 1 {
				delete(q.queues, a)
			} else {
				q.queues[a] = ms[1:]
				q.ring = append(q.ring, a)
			}
			q.n--
			if q.n > 0 {
				q.signal()
			}
			q.mu.Unlock()
			return m, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return Message{}, false
		}
		<-q.nonzero
	}
}

// close wakes the reader, which drains what is left and then stops.
func (q *fairQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.signal()
}

func (q *fairQueue) signal() {
	select {
	case q.nonzero <- struct{}{}:
	default:
	}
}
