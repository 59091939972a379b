package p2p

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestGossipsubTagWarningsAreDemotedOthersKept(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(quietTagWarnings{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})}).With("subsystem", "p2p.gossipsub")
	log.Warn("error bumping delivery tag", "err", "no decaying tag registered for topic x")
	log.Warn("unable to create decaying delivery tag")
	out := buf.String()
	if strings.Contains(out, "bumping") {
		t.Errorf("tag-bump warning logged at info level: %q", out)
	}
	if !strings.Contains(out, "unable to create decaying delivery tag") || !strings.Contains(out, "subsystem=p2p.gossipsub") {
		t.Errorf("other warnings lost or attributes dropped: %q", out)
	}

	buf.Reset()
	debug := slog.New(quietTagWarnings{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})})
	debug.Warn("error bumping delivery tag")
	if !strings.Contains(buf.String(), "level=DEBUG") {
		t.Errorf("at debug level the demoted warning should show as debug: %q", buf.String())
	}
}
