//go:build linux

package procmem

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func rssFile(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("skipping: no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Skip("skipping: no RssFile in /proc/self/status")
	return 0
}

func TestReleaseExecutableDropsResidentPages(t *testing.T) {
	before := rssFile(t)
	n, err := ReleaseExecutable()
	if errors.Is(err, unix.EINVAL) {
		t.Skip("skipping: the kernel has no MADV_PAGEOUT (Linux 5.4 and later)")
	}
	if err != nil || n == 0 {
		t.Fatalf("advised %d bytes: %v", n, err)
	}
	if after := rssFile(t); after >= before {
		t.Fatalf("resident file pages %d kB before, %d kB after", before, after)
	}
}
