//go:build !unix

package executor

import (
	"context"
	"fmt"
	"log/slog"
)

type jobLimit interface{}

func newMemLimiter(string, *slog.Logger) memLimiter { return noLimiter{} }

type noLimiter struct{}

func (noLimiter) mode() string                     { return "none" }
func (noLimiter) prepare(uint64) (jobLimit, error) { return nil, nil }

// run refuses: process groups and the kill semantics native jobs rely on
// are unix-only.
func (n *Native) run(context.Context, *Spec, Output) (Result, error) {
	return Result{ExitCode: -1}, fmt.Errorf("%w: %w", ErrNotAllowed, errNativeUnsupported)
}
