package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/orchestrator"
)

// TestReplicaFlagsValidated: --replicas, --agree and --replica-networks
// are checked before the job goes anywhere, each error naming its flag
// and what it accepts; the job file takes the same keys.
func TestReplicaFlagsValidated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	wasm := filepath.Join(dir, "hello.wasm")
	if err := os.WriteFile(wasm, examples.HelloWasm, 0o600); err != nil {
		t.Fatal(err)
	}
	submit := func(args ...string) result {
		return dms(t, append([]string{"--home", filepath.Join(dir, "home"), "job", "submit", "--cpu", "0.1", "--memory", "64MiB", "--duration", "1m", "--wasm", wasm}, args...)...)
	}
	submit("--replicas", "8").want(t, 2, `invalid value "8" for --replicas`, "want 1 to 7 providers")
	submit("--replicas", "-1").want(t, 2, "--replicas", "want 1 to 7")
	submit("--replicas", "3", "--agree", "most").want(t, 2, `invalid value "most" for --agree`, "want all or majority")
	submit("--replicas", "3", "--replica-networks", "some").want(t, 2, "--replica-networks", "want distinct or any")
	submit("--agree", "majority").want(t, 2, "--agree", "--replicas 2 or more")
	submit("--replicas", "2", "--retry-on-failure", "1").want(t, 2, "--retry-on-failure", "does not go with --replicas")

	file := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(file, []byte("cpu: 0.1\nmemory: 64MiB\nduration: 1m\nwasm: hello.wasm\nreplicas: 3\nagree: majority\nreplica_networks: any\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := readJobFile(file)
	if err != nil {
		t.Fatal(err)
	}
	req, err := f.request()
	if err != nil {
		t.Fatal(err)
	}
	want := orchestrator.Replication{Replicas: 3, Agree: orchestrator.AgreeMajority, Networks: orchestrator.ReplicaNetworksAny}
	if req.Replication != want {
		t.Fatalf("job file's replication %+v, want %+v", req.Replication, want)
	}
	if err := os.WriteFile(file, []byte("replicas: many\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readJobFile(file); err == nil {
		t.Fatal("a job file with replicas: many was read")
	}
}
