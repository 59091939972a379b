package orchestrator

import (
	"strings"
	"testing"
	"time"
)

func TestRequesterConfigValidate(t *testing.T) {
	for _, c := range []RequesterConfig{DefaultRequesterConfig(), LocalConfig().Requester} {
		if err := c.Validate(); err != nil {
			t.Errorf("preset %+v: %v", c, err)
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*RequesterConfig)
		want string
	}{
		{"window past what validators accept", func(c *RequesterConfig) { c.BiddingWindow = MaxBiddingWindow + time.Second }, "bidding window"},
		{"no window", func(c *RequesterConfig) { c.BiddingWindow = 0 }, "bidding window"},
		{"no keepalive", func(c *RequesterConfig) { c.Keepalive = 0 }, "keepalive"},
		{"negative retries", func(c *RequesterConfig) { c.Retries = -1 }, "retries"},
		{"no invoke timeout", func(c *RequesterConfig) { c.InvokeTimeout = 0 }, "invoke timeout"},
		{"no stall timeout", func(c *RequesterConfig) { c.StallTimeout = 0 }, "stall timeout"},
		{"negative deadline margin", func(c *RequesterConfig) { c.DeadlineMargin = -time.Second }, "deadline margin"},
	} {
		c := DefaultRequesterConfig()
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}
