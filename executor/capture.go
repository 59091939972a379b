package executor

import "sync"

// capture is a bounded output sink: it keeps the first max bytes of a
// stream, notes whether more was written, and forwards what it keeps to a
// live Output. Writes never fail, so a chatty job is not killed by EPIPE; it
// just stops being recorded.
type capture struct {
	mu        sync.Mutex
	buf       []byte
	max       int
	truncated bool
	forward   func([]byte)
}

func newCapture(max int, forward func([]byte)) *capture {
	return &capture{max: max, forward: forward}
}

// Write implements io.Writer.
func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := p
	if room := c.max - len(c.buf); len(keep) > room {
		keep = keep[:room]
		c.truncated = true
	}
	if len(keep) > 0 {
		c.buf = append(c.buf, keep...)
		if c.forward != nil {
			// p may alias guest memory or a pipe buffer: hand over a copy.
			c.forward(append([]byte(nil), keep...))
		}
	}
	return len(p), nil
}

// result returns what was kept and whether anything was dropped.
func (c *capture) result() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf, c.truncated
}

// captures builds the stdout and stderr sinks for one run.
func captures(max int, out Output) (stdout, stderr *capture) {
	if out == nil {
		return newCapture(max, nil), newCapture(max, nil)
	}
	return newCapture(max, out.Stdout), newCapture(max, out.Stderr)
}
