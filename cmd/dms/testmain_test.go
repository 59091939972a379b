package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestMain runs the tests with no DMS_* variable from the environment the
// tests run in, so that no test needs t.Setenv to get a clean one (and so
// tests may run in parallel), and removes the binary built for them.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "DMS_") {
			os.Unsetenv(k)
		}
	}
	// urfave/cli's --help and --version flags are package globals that
	// record their default on every parse: harmless in the binary, which
	// parses once, but a data race for tests that run the command line
	// in parallel. Each parse gets its own copy instead; help looks the same.
	cli.HelpFlag = parseCopy{cli.HelpFlag.(*cli.BoolFlag)}
	cli.VersionFlag = parseCopy{cli.VersionFlag.(*cli.BoolFlag)}
	// The tests here mostly wait: on node processes, containers, bidding
	// windows. More of them at once than the machine has cores (the
	// default) costs little CPU and saves minutes; -test.parallel, when
	// given, wins.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", strconv.Itoa(max(4, runtime.GOMAXPROCS(0))))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// parseCopy is a bool flag that applies a copy of itself to each flag set.
type parseCopy struct{ *cli.BoolFlag }

func (f parseCopy) Apply(set *flag.FlagSet) error {
	c := *f.BoolFlag
	return c.Apply(set)
}

// buildFlags are those of every build of dms (README.md, Dockerfile,
// docs/operations.md): TestBuildsLeaveOutCLIDocs holds them to it.
var buildFlags = []string{"-tags", cliNoDocsTag}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	binErr    error
)

// buildDMS returns the dms binary, built once for all the tests of the
// package. It is static (no cgo), as a FROM scratch container image needs
// it, so that the process and the container tests share it.
func buildDMS(t testing.TB) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	buildOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "dms-test-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "dms")
		cmd := exec.Command(gobin, append([]string{"build"}, append(buildFlags, "-o", binPath, ".")...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
