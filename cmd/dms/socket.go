package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/resources"
)

// Control API paths of the controller calls; the running node serves them
// with the same localController logic the CLI uses when no node runs.
const (
	pathOnboard    = "/v1/onboard"
	pathOffboard   = "/v1/offboard"
	pathCapability = "/v1/capability"
	pathBenchmark  = "/v1/benchmark"
)

// socketController sends the controller calls to the node running on the
// home, through its control socket: the node owns the datastore then, so
// only it can change the ledger, and it starts bidding with a new offer at
// once.
type socketController struct {
	c *controlClient
}

var _ controller = (*socketController)(nil)

// pickController talks to the node running on home if one answers on its
// socket, else opens the home itself. If a node is starting (it holds the
// datastore but does not answer yet), the local controller's calls fail
// with resources.ErrHomeInUse, which names it.
func pickController(home node.Home, settings node.Settings, log *slog.Logger) (controller, error) {
	c, err := dialControl(context.Background(), home.Dir)
	if err == nil {
		log.Debug("using the running node's control socket", "home", home.Dir)
		return &socketController{c: c}, nil
	}
	if !errors.Is(err, errNoNode) {
		return nil, err
	}
	return newLocalController(home, settings, log), nil
}

func (s *socketController) Onboard(ctx context.Context, req OnboardRequest, progress func(resources.Progress)) (OnboardResponse, error) {
	var resp OnboardResponse
	err := s.c.stream(ctx, pathOnboard, req, progressEvents(progress), &resp)
	return resp, err
}

func (s *socketController) Offboard(ctx context.Context, req OffboardRequest) (OffboardResponse, error) {
	var resp OffboardResponse
	err := s.c.call(ctx, pathOffboard, req, &resp)
	return resp, err
}

func (s *socketController) Capability(ctx context.Context, req CapabilityRequest) (CapabilityResponse, error) {
	var resp CapabilityResponse
	err := s.c.call(ctx, pathCapability, req, &resp)
	return resp, err
}

func (s *socketController) Benchmark(ctx context.Context, req BenchmarkRequest, progress func(resources.Progress)) (BenchmarkResponse, error) {
	var resp BenchmarkResponse
	err := s.c.stream(ctx, pathBenchmark, req, progressEvents(progress), &resp)
	return resp, err
}

func (s *socketController) Close() error { return s.c.Close() }

// progressEvents decodes streamed benchmark progress for progress (nil:
// dropped).
func progressEvents(progress func(resources.Progress)) func(json.RawMessage) {
	return func(raw json.RawMessage) {
		var p resources.Progress
		if progress != nil && json.Unmarshal(raw, &p) == nil {
			progress(p)
		}
	}
}

// registerControllerAPI serves ctl's calls on s, for the CLI's
// socketController.
func registerControllerAPI(s *controlServer, ctl controller) {
	handleStream(s, "POST "+pathOnboard, func(ctx context.Context, req OnboardRequest, send func(resources.Progress)) (OnboardResponse, error) {
		return ctl.Onboard(ctx, req, send)
	})
	handle(s, "POST "+pathOffboard, ctl.Offboard)
	handle(s, "POST "+pathCapability, ctl.Capability)
	handleStream(s, "POST "+pathBenchmark, func(ctx context.Context, req BenchmarkRequest, send func(resources.Progress)) (BenchmarkResponse, error) {
		return ctl.Benchmark(ctx, req, send)
	})
}
