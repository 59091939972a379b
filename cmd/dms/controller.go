package main

import (
	"context"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/resources"
)

// controller is everything a state-touching command asks of a node. The
// local implementation opens the home directly; a running node will answer
// the same calls over its control socket, so inputs and outputs are plain
// JSON-able structs.
type controller interface {
	Onboard(ctx context.Context, req OnboardRequest, progress func(resources.Progress)) (OnboardResponse, error)
	Offboard(ctx context.Context, req OffboardRequest) (OffboardResponse, error)
	Capability(ctx context.Context, req CapabilityRequest) (CapabilityResponse, error)
	Benchmark(ctx context.Context, req BenchmarkRequest, progress func(resources.Progress)) (BenchmarkResponse, error)
	Close() error
}

// OnboardRequest is an offer, new or changed. A nil field keeps the current
// offer's value (for a first offer, CPU, Memory and Disk are required and
// Price defaults to the config file's).
type OnboardRequest struct {
	CPU     *uint64                      `json:"cpu,omitempty"`    // millicores
	Memory  *uint64                      `json:"memory,omitempty"` // bytes
	Disk    *uint64                      `json:"disk,omitempty"`   // bytes
	GPUs    *[]string                    `json:"gpus,omitempty"`   // index or UUID each
	Price   *capability.PriceInformation `json:"price,omitempty"`
	Reserve *resources.Reserve           `json:"reserve,omitempty"` // nil: the node's configured reserve
	// Benchmark runs a benchmark first when none is stored, so that bids
	// carry a score from the start.
	Benchmark         bool          `json:"benchmark"`
	BenchmarkDuration time.Duration `json:"benchmark_duration,omitempty"`
}

// OnboardResponse is what was recorded.
type OnboardResponse struct {
	Home      string               `json:"home"`
	Record    onboarding.Record    `json:"record"`
	Benchmark *resources.Benchmark `json:"benchmark,omitempty"` // set when one ran
}

// OffboardRequest withdraws the offer; Force goes on despite locks.
type OffboardRequest struct {
	Force bool `json:"force"`
}

// OffboardResponse says what offboarding did or what stood in its way.
type OffboardResponse struct {
	Home   string                    `json:"home"`
	Report onboarding.OffboardReport `json:"report"`
}

// CapabilityRequest asks for the node's accounts.
type CapabilityRequest struct {
	Reserve *resources.Reserve `json:"reserve,omitempty"` // nil: the node's configured reserve
}

// CapabilityResponse is the node's accounts: what the machine has, what is
// offered, locked, held and available.
type CapabilityResponse struct {
	Home       string                `json:"home"`
	Onboarded  bool                  `json:"onboarded"`
	Machine    resources.Machine     `json:"machine"`
	Reserve    capability.Capability `json:"reserve"`
	MaxOffer   capability.Capability `json:"max_offer"`
	Registered capability.Capability `json:"registered"`
	Locked     capability.Capability `json:"locked"`
	Held       capability.Capability `json:"held"`
	// Ceiling is what the owner's current use leaves the node (see
	// resources.Ceiling); Available is capped by it.
	Ceiling   capability.Capability `json:"ceiling"`
	Usage     resources.Usage       `json:"usage"`
	Available capability.Capability `json:"available"`
	Locks     []resources.Lock      `json:"locks"`
	Holds     []resources.Hold      `json:"holds"`
	Benchmark *resources.Benchmark  `json:"benchmark,omitempty"`
}

// BenchmarkRequest runs the benchmark for Duration (0: the default).
type BenchmarkRequest struct {
	Duration time.Duration `json:"duration,omitempty"`
}

// BenchmarkResponse is the stored result.
type BenchmarkResponse struct {
	Home       string                `json:"home"`
	Benchmark  resources.Benchmark   `json:"benchmark"`
	Registered capability.Capability `json:"registered"` // now carrying the score
}
