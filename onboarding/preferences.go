package onboarding

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/internal/seconds"
	"github.com/dms-project/dms/orchestrator"
	"github.com/dms-project/dms/resources"
)

// MaxJobDurationLimit is the most a provider may set as its longest job.
const MaxJobDurationLimit = 365 * 24 * time.Hour

// StoredPreferences are the node's preferences as l keeps them (the
// defaults when none are stored). Stored preferences that do not decode
// are an error: bidding on defaults the owner never chose would be worse.
func StoredPreferences(l *resources.Ledger) (orchestrator.Preferences, error) {
	p := orchestrator.DefaultPreferences()
	b := l.Preferences()
	if len(b) == 0 {
		return p, nil
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("stored preferences %s do not decode: %w", clip(b), err)
	}
	return p, nil
}

// clip quotes at most 64 bytes of a stored value for an error message.
func clip(b []byte) string {
	if len(b) > 64 {
		return strconv.Quote(string(b[:64])) + "..."
	}
	return strconv.Quote(string(b))
}

// SetsPreferences says whether req changes preferences, not only the
// offer: a running node then takes up the stored preferences again.
func (req Request) SetsPreferences() bool {
	return req.Executors != nil || req.MaxJobDuration != nil || req.Labels != nil
}

// preferencesFor returns the stored preferences with those req sets,
// checked. A docker executor needs an engine that answers, asked through d
// (nil: a client made for this call).
func (o *Onboarder) preferencesFor(ctx context.Context, req Request) (orchestrator.Preferences, error) {
	// The stored preferences hold more than a request sets (prices,
	// requesters, ranking): one that does not decode cannot be merged.
	prefs, err := StoredPreferences(o.ledger)
	if err != nil {
		return prefs, err
	}
	if req.Executors != nil {
		d := o.docker
		if d == nil {
			if d, err = executor.NewDocker(executor.WithLogger(o.log.With("subsystem", "docker"))); err != nil {
				return prefs, err
			}
			defer d.Close(ctx)
		}
		if prefs, err = withExecutors(ctx, prefs, *req.Executors, d); err != nil {
			return prefs, err
		}
	}
	if v := req.MaxJobDuration; v != nil {
		if *v < time.Second || *v > MaxJobDurationLimit {
			return prefs, &OfferError{Field: "max-job-duration", Value: v.String(), Reason: "want 1s to 8760h (a year)"}
		}
		prefs.MaxDuration = seconds.Duration(*v)
	}
	if req.Labels != nil {
		if err := req.Labels.Validate(); err != nil {
			return prefs, &OfferError{Field: "label", Value: req.Labels.String(), Reason: err.Error()}
		}
		prefs.Labels = *req.Labels
		if len(prefs.Labels) == 0 {
			prefs.Labels = nil
		}
	}
	return prefs, prefs.Validate()
}

// withExecutors returns prefs allowing exactly the executor kinds listed,
// after checking that each can run here: docker needs an engine that
// answers (through d).
func withExecutors(ctx context.Context, prefs orchestrator.Preferences, kinds []string, d *executor.Docker) (orchestrator.Preferences, error) {
	if len(kinds) == 0 {
		return prefs, &OfferError{Field: "executors", Value: `""`, Reason: "name at least one of wasm, docker, native"}
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range kinds {
		switch k {
		case orchestrator.ExecutorWasm, orchestrator.ExecutorNative:
		case orchestrator.ExecutorDocker:
			if _, err := d.Engine(ctx); err != nil {
				return prefs, &OfferError{Field: "executors", Value: k, Reason: "no Docker engine answers here: " + err.Error()}
			}
		default:
			return prefs, &OfferError{Field: "executors", Value: strconv.Quote(k), Reason: "want wasm, docker or native"}
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	prefs.AllowedExecutors = out
	return prefs, nil
}

// storePreferences records p in the ledger.
func (o *Onboarder) storePreferences(p orchestrator.Preferences) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("preferences: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return o.ledger.SetPreferences(b)
}
