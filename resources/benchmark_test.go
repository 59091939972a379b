package resources

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestBenchmarkCapability(t *testing.T) {
	dir := t.TempDir()
	var events []Progress
	var out bytes.Buffer
	printer := ProgressPrinter(&out)
	before := time.Now().UTC()
	b, err := BenchmarkCapability(context.Background(), dir, WithBenchmarkDuration(100*time.Millisecond),
		WithProgress(func(p Progress) { events = append(events, p); printer(p) }))
	if err != nil {
		t.Fatal(err)
	}
	// Not a speed test (a busy machine makes any step slow): the result is
	// only checked to be a measurement, taken now.
	if b.SingleCore <= 0 || b.AllCore <= 0 || b.MemoryBandwidth <= 0 || b.DiskWrite <= 0 || b.Score <= 0 || b.Threads < 1 ||
		b.Duration <= 0 || b.At.Before(before) || b.At.After(time.Now()) {
		t.Fatalf("benchmark = %+v", b)
	}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(events) != 8 || events[0].Done || !events[7].Done || events[7].Step != 4 {
		t.Fatalf("progress events = %+v", events)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 4 || !strings.Contains(lines[3], "disk write") {
		t.Fatalf("printed progress:\n%s", out.String())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("benchmark left files behind: %v", entries)
	}
}

func TestBenchmarkOptionsAndCancel(t *testing.T) {
	for _, d := range []time.Duration{0, time.Millisecond, 11 * time.Second} {
		if _, err := BenchmarkCapability(context.Background(), t.TempDir(), WithBenchmarkDuration(d)); err == nil {
			t.Errorf("duration %v accepted", d)
		}
	}
	if _, err := BenchmarkCapability(context.Background(), t.TempDir(), WithThreads(0)); err == nil {
		t.Error("zero threads accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := BenchmarkCapability(ctx, t.TempDir(), WithBenchmarkDuration(time.Second)); err == nil {
		t.Error("a cancelled benchmark succeeded")
	}
	if _, err := BenchmarkCapability(context.Background(), "/nonexistent/dir", WithBenchmarkDuration(100*time.Millisecond)); err == nil {
		t.Error("benchmark of an unwritable directory succeeded")
	}
}

func TestScore(t *testing.T) {
	if got := score(RefSingleCoreMiBs, RefMemoryBytesS); got != 100 {
		t.Fatalf("reference machine scores %v, want 100", got)
	}
	if score(2*RefSingleCoreMiBs, RefMemoryBytesS) <= score(RefSingleCoreMiBs, 2*RefMemoryBytesS) {
		t.Fatal("single-core speed should weigh more than memory bandwidth")
	}
	if score(0, RefMemoryBytesS) != 0 {
		t.Fatal("no cpu figure, no score")
	}
}
