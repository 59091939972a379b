package node_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/orchestrator"
)

// The second run of the same module (2.2 MiB, so fetched, not inlined) and
// the same inputs on the same provider moves none of their bytes: the
// provider takes them from its cache, and says so in its bid.
func TestSecondRunOnTheSameProviderMovesNoModuleOrInputBytes(t *testing.T) {
	t.Parallel()
	if len(examples.HelloWasm) <= orchestrator.MaxInlineModule {
		t.Fatalf("hello.wasm is %d bytes, no more than the inline limit: this test needs a fetched module", len(examples.HelloWasm))
	}
	nodes := newNetwork(t, 2, 1000, nil) // node 0 provides, node 1 requests
	provider, requester := nodes[0], nodes[1]
	value := func(name, kind string) float64 {
		return metricValue(t, provider.Metrics(), name, map[string]string{"kind": kind})
	}
	run := func(sub orchestrator.Submission, want string) node.JobRecord {
		t.Helper()
		rec, err := requester.SubmitJob(context.Background(), sub, nil)
		if err != nil || rec.State != node.JobCompleted || !strings.Contains(string(rec.Result.Stdout), want) {
			t.Fatalf("job %+v: %v", rec, err)
		}
		if rec.Provider != provider.ID() {
			t.Fatalf("job ran on %s, want the one provider %s", rec.Provider, provider.ID())
		}
		return rec
	}

	first := run(helloJob("cache"), "primes below 100000: 9592")
	fetched := value("dms_blob_fetched_bytes_total", "module")
	if fetched != float64(len(examples.HelloWasm)) || value("dms_blob_cache_hits_total", "module") != 0 {
		t.Fatalf("after the first run: %v module bytes fetched, %v cache hits; want %d and 0",
			fetched, value("dms_blob_cache_hits_total", "module"), len(examples.HelloWasm))
	}
	if len(first.Bids) == 0 || first.Bids[0].HasModule {
		t.Fatalf("first bids %+v: want one, not claiming the module", first.Bids)
	}
	second := run(helloJob("cache"), "primes below 100000: 9592")
	if got := value("dms_blob_fetched_bytes_total", "module"); got != fetched {
		t.Fatalf("the second run fetched %v module bytes, want none", got-fetched)
	}
	if hits, bytes := value("dms_blob_cache_hits_total", "module"), value("dms_blob_cache_hit_bytes_total", "module"); hits != 1 || bytes != fetched {
		t.Fatalf("cache hits %v (%v bytes), want 1 (%v bytes)", hits, bytes, fetched)
	}
	if len(second.Bids) == 0 || !second.Bids[0].HasModule {
		t.Fatalf("second bids %+v: want the provider to say it holds the module", second.Bids)
	}

	// The inputs too.
	in := inputs(t, map[string]string{"inputs/a.txt": "alpha\n"})
	run(filesJob(orchestrator.ExecutorWasm, in), "1 files, 6 bytes")
	inFetched := value("dms_blob_fetched_bytes_total", "inputs")
	if inFetched != float64(len(in)) {
		t.Fatalf("inputs fetched %v bytes, want %d", inFetched, len(in))
	}
	rec := run(filesJob(orchestrator.ExecutorWasm, in), "1 files, 6 bytes")
	if got := value("dms_blob_fetched_bytes_total", "inputs"); got != inFetched || value("dms_blob_cache_hits_total", "inputs") != 1 {
		t.Fatalf("the second run fetched %v input bytes (want none), %v cache hits (want 1)", got-inFetched, value("dms_blob_cache_hits_total", "inputs"))
	}
	if !rec.Bids[0].HasInputs {
		t.Fatalf("bid %+v: want the provider to say it holds the inputs", rec.Bids[0])
	}
}

// A cache bound that could not hold the largest module is refused, naming
// what is accepted; 0 takes the default.
func TestCacheBoundIsValidated(t *testing.T) {
	t.Parallel()
	c := node.LocalConfig(t.TempDir())
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Datastore, c.Key = node.MemoryDatastore(), key
	c.CacheBytes = 1 << 20
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "cache bytes 1048576: want 0 (the default") {
		t.Fatalf("1 MiB bound: %v", err)
	}
	c.CacheBytes = 0
	if err := c.Validate(); err != nil || c.CacheBytes != node.DefaultCacheBytes || !strings.HasSuffix(c.CacheDir, filepath.Join("cache", "blobs")) {
		t.Fatalf("default bound: %v, %d bytes in %s", err, c.CacheBytes, c.CacheDir)
	}
}
