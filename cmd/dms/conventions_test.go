package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The command line's conventions: --version, help commands, completion
// scripts, a usage line of its own on every command.
func TestCLIConventions(t *testing.T) {
	t.Parallel()
	dms(t, "--version").want(t, 0, "dms version")
	dms(t, "help").want(t, 0, "COMMANDS:", "completion", "dashboard")
	dms(t, "job", "help").want(t, 0, "submit", "logs")
	dms(t, "completion", "bash").want(t, 0, "complete -o bashdefault", "--generate-bash-completion")
	dms(t, "completion", "zsh").want(t, 0, "#compdef dms")
	dms(t, "completion", "fish").want(t, 0, "complete -c dms", "--generate-bash-completion")
	dms(t, "completion", "tcsh").want(t, 2, `unknown shell "tcsh"`)

	var walk func(prefix []string, names []string)
	walk = func(prefix []string, names []string) {
		for _, n := range names {
			args := append(append([]string(nil), prefix...), n)
			r := dms(t, append(args, "--help")...)
			usage := r.stdout[strings.Index(r.stdout, "USAGE:")+len("USAGE:"):]
			usage = strings.TrimSpace(strings.SplitN(strings.TrimSpace(usage), "\n", 2)[0])
			if !strings.HasPrefix(usage, "dms "+strings.Join(args, " ")) || strings.Contains(usage, "command [command options]") {
				t.Errorf("dms %s --help: usage line %q", strings.Join(args, " "), usage)
			}
			if strings.Contains(r.stdout, "`") {
				t.Errorf("dms %s --help shows a backtick:\n%s", strings.Join(args, " "), r.stdout)
			}
		}
	}
	walk(nil, []string{"init", "onboard", "offboard", "capability", "benchmark", "version", "run", "id", "peers", "status", "dashboard", "demo", "bench", "completion"})
	walk([]string{"job"}, []string{"submit", "list", "status", "logs", "cancel", "bids"})
	walk([]string{"testnet"}, []string{"up", "add", "status", "down"})

	// Every dms run flag the operator's guide names is in its help.
	readme, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	help := dms(t, "run", "--help").stdout
	for _, f := range []string{"--metrics", "--metrics-allow-remote", "--dashboard", "--relay-service", "--reachability", "--bootstrap", "--swarm-key", "--network", "--local", "--dht-mode"} {
		if !strings.Contains(string(readme), f) || !strings.Contains(help, f) {
			t.Errorf("flag %s: in docs/operations.md %v, in dms run --help %v", f, strings.Contains(string(readme), f), strings.Contains(help, f))
		}
	}
}

// --metrics refuses an address other hosts can reach unless told.
func TestRunRefusesRemoteMetrics(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	dms(t, "--home", h, "run", "--local", "--metrics", "0.0.0.0:9464").want(t, 2, "not a loopback address", "--metrics-allow-remote")
	dms(t, "--home", h, "run", "--local", "--metrics", "nonsense").want(t, 2, "want HOST:PORT")
	dms(t, "--home", h, "run", "--local", "--reachability", "sideways").want(t, 2, "want auto, public or private")
	dms(t, "--home", h, "--log-format", "xml", "status").want(t, 2, "want text or json")
}
