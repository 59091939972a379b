package executor

import (
	"context"
	"errors"
	"testing"
	"time"
)

func newNative(t *testing.T, allowed bool, opts ...Option) *Native {
	t.Helper()
	n, err := NewNative(allowed, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return n
}

func nativeSpec(argv ...string) Spec {
	return Spec{Kind: KindNative, Command: argv, MemoryBytes: 1 << 30, Timeout: 10 * time.Second}
}

func TestNativeRefusedUnlessAllowed(t *testing.T) {
	n := newNative(t, false)
	res, err := n.Run(context.Background(), nativeSpec("echo", "hi"), nil)
	if !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("err %v, want ErrNotAllowed", err)
	}
	if len(res.Stdout) != 0 || n.Allowed() {
		t.Errorf("refused job produced %+v", res)
	}
}
