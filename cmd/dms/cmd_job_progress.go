package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

// progressPrinter writes one line per step of a submission, each with the
// time since start.
type progressPrinter struct {
	w     io.Writer
	start time.Time
	// The bidding round under way: its attempt and the bids it drew.
	published bool
	attempt   int
	bids      int
	// name shows a peer; nil shows its short ID.
	name func(peer.ID) string
}

func (pp *progressPrinter) peer(p peer.ID) string {
	if pp.name != nil {
		return pp.name(p)
	}
	return shortPeer(p)
}

func (pp *progressPrinter) line(at time.Time, text string) {
	fmt.Fprintf(pp.w, "%8s  %s\n", formatElapsed(max(at.Sub(pp.start), 0)), text)
}

func (pp *progressPrinter) print(p orchestrator.Progress) {
	var text string
	switch p.Kind {
	case orchestrator.ProgressPublished:
		if pp.published && p.Attempt == pp.attempt {
			// The requester widens a request that drew too few bids.
			text = "bid request sent again"
			if p.Message != "" {
				text += ": " + p.Message
			}
			break
		}
		pp.published, pp.attempt, pp.bids = true, p.Attempt, 0
		text = "bid request sent to the mesh"
		if p.Attempt > 0 {
			text += fmt.Sprintf(" (attempt %d)", p.Attempt+1)
		}
	case orchestrator.ProgressBid:
		if p.Bid == nil {
			return
		}
		pp.bids++
		text = fmt.Sprintf("bid from %s: price %s, score %s", pp.peer(p.Bid.Provider), formatPrice(p.Bid.Price, p.Bid.Currency), formatScore(p.Bid.Score))
	case orchestrator.ProgressClosed:
		text = fmt.Sprintf("bidding closed with %d %s", pp.bids, plural(pp.bids, "bid", "bids"))
	case orchestrator.ProgressRefused:
		text = fmt.Sprintf("%s refused the job: %s", pp.peer(p.Provider), p.Message)
	case orchestrator.ProgressAccepted:
		text = fmt.Sprintf("winner %s", pp.peer(p.Provider))
		if p.Bid != nil {
			text += fmt.Sprintf(": price %s, score %s;", formatPrice(p.Bid.Price, p.Bid.Currency), formatScore(p.Bid.Score))
		}
		text += " allocation " + p.AllocationID
	case orchestrator.ProgressRetry:
		text = "submitting again: " + p.Message
	case orchestrator.ProgressQueued:
		text = "queued, asking again until the queue timeout: " + p.Message
	case node.ProgressInterrupted, node.ProgressResumed:
		text = p.Message
	case orchestrator.ProgressReplicas:
		pp.replicas(p)
		return
	case orchestrator.ProgressEvent:
		ev := p.Event
		if ev == nil || ev.Kind != orchestrator.EventState || ev.State != orchestrator.StateRunning {
			return // the end is printed from the record
		}
		text = "running on " + pp.peer(p.Provider)
		if ev.Message != "" {
			text = "running again: " + ev.Message
		}
	default:
		return
	}
	pp.line(p.Time, text)
}

// end prints how a job ended.
func (pp *progressPrinter) end(rec node.JobRecord) {
	at := rec.Ended
	if at.IsZero() {
		at = time.Now()
	}
	r := rec.Result
	switch {
	case r != nil && rec.State == node.JobCompleted:
		pp.line(at, fmt.Sprintf("completed: exit code %d, ran %s", r.ExitCode, formatElapsed(r.Duration.Std())))
	case r != nil && rec.State == node.JobCancelled:
		pp.line(at, fmt.Sprintf("cancelled after running %s", formatElapsed(r.Duration.Std())))
	case r != nil:
		text := fmt.Sprintf("%s: %sran %s", rec.State, exitText(r), formatElapsed(r.Duration.Std()))
		if r.Reason != "" {
			text += ": " + r.Reason
		}
		pp.line(at, text)
	case rec.Error != "":
		// The reason's head ("no acceptable bids"); the error says the rest.
		why, _, _ := strings.Cut(strings.TrimPrefix(rec.Error, "job "+rec.ID+": "), ": ")
		pp.line(at, string(rec.State)+": "+why)
	default:
		pp.line(at, string(rec.State))
	}
}

// exitText is "exit code N, " for a job that exited by itself, "" for one
// stopped from outside or at its duration (-1 would say nothing).
func exitText(r *orchestrator.Result) string {
	if r.State == orchestrator.StateCancelled || r.ExitCode < 0 {
		return ""
	}
	return fmt.Sprintf("exit code %d, ", r.ExitCode)
}

// replicas prints a replicated job's comparison: what was agreed and from
// whom the result comes, or that they disagree, with each replica's
// hashes; and a replica lost on the way.
func (pp *progressPrinter) replicas(p orchestrator.Progress) {
	switch {
	case p.Provider != "":
		head, _, _ := strings.Cut(p.Message, ";")
		pp.line(p.Time, fmt.Sprintf("%s; the result is %s's", head, pp.peer(p.Provider)))
	case strings.HasPrefix(p.Message, orchestrator.ErrDisagreed.Error()), strings.HasPrefix(p.Message, orchestrator.ErrTooFewReplicas.Error()):
		head, _, _ := strings.Cut(p.Message, " (")
		pp.line(p.Time, head+": no result is delivered")
	default:
		pp.line(p.Time, p.Message)
		return
	}
	for _, r := range p.Replicas {
		fmt.Fprintf(pp.w, "%8s    %-9s %s\n", "", replicaLabel(r, p.Replicas, p.Provider != ""), r.Describe())
	}
}
