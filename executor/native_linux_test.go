package executor

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestNativeRlimitApplied(t *testing.T) {
	n := newNative(t, true, WithCgroupParent(""))
	if m := n.MemoryLimitMode(); m != "rlimit-as" {
		t.Fatalf("mode %q, want rlimit-as with cgroups off", m)
	}
	// The job waits until it sees its own cap, so the test does not depend
	// on how soon after start prlimit lands.
	spec := nativeSpec("sh", "-c",
		`until grep -q "^Max address space *33554432 *33554432" /proc/$$/limits; do sleep 0.01; done; echo capped`)
	spec.MemoryBytes = 32 << 20
	spec.Timeout = 5 * time.Second
	res, err := n.Run(context.Background(), spec, nil)
	if err != nil || string(res.Stdout) != "capped\n" {
		t.Fatalf("stdout %q err %v, want the job to see RLIMIT_AS of 32 MiB", res.Stdout, err)
	}
}

// TestNativeCgroup runs where a cgroup v2 parent with the memory controller
// is provided (DMS_TEST_CGROUP_PARENT), as root on a cgroup v2 host:
//
//	mkdir /sys/fs/cgroup/dmstest && echo +memory > /sys/fs/cgroup/dmstest/cgroup.subtree_control
func TestNativeCgroup(t *testing.T) {
	parent := os.Getenv("DMS_TEST_CGROUP_PARENT")
	if parent == "" {
		t.Skip("DMS_TEST_CGROUP_PARENT not set")
	}
	n := newNative(t, true, WithCgroupParent(parent))
	if m := n.MemoryLimitMode(); m != "cgroup2 "+parent {
		t.Fatalf("mode %q, want cgroup2 %s", m, parent)
	}
	res, err := n.Run(context.Background(), nativeSpec("cat", "/proc/self/cgroup"), nil)
	if err != nil || !strings.Contains(string(res.Stdout), "/dms-job-") {
		t.Fatalf("job cgroup %q err %v, want a dms-job- group", res.Stdout, err)
	}

	spec := nativeSpec("sh", "-c", `a=$(head -c 200000000 /dev/zero | tr '\0' x); echo ${#a}`)
	spec.MemoryBytes = 32 << 20
	res, err = n.Run(context.Background(), spec, nil)
	if !errors.Is(err, ErrMemoryLimit) || res.Reason != "memory limit" {
		t.Fatalf("err %v result %+v, want ErrMemoryLimit", err, res)
	}
	t.Logf("peak %d bytes, stderr %q", res.PeakMemoryBytes, res.Stderr)

	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "dms-job-") {
			t.Errorf("job cgroup %s left behind", e.Name())
		}
	}
}
