package examples

import (
	"context"
	"testing"
	"time"

	"github.com/dms-project/dms/executor"
)

func TestTinyWasmRuns(t *testing.T) {
	w, err := executor.NewWasm()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	res, err := w.Run(context.Background(), executor.Spec{Kind: executor.KindWasm, Module: TinyWasm, MemoryBytes: 16 << 20, Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "tiny job ok\n" || res.ExitCode != 0 {
		t.Fatalf("stdout %q exit %d", res.Stdout, res.ExitCode)
	}
}
