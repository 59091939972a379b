package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dms-project/dms/api"
)

// dms run --control-listen serves the control API on TCP: with the token
// file's token the commands work from "another machine" (no --home of that
// node), without it or with a token file others can read they are refused,
// and the node refuses a token file others can read.
func TestRemoteControl(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	loose := filepath.Join(t.TempDir(), "loose.token")
	if err := os.WriteFile(loose, []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dms(t, "--home", h, "run", "--local", "--control-listen", "127.0.0.1:0", "--control-token-file", loose).
		want(t, exitUsage, "mode 0644", "chmod 600")

	n := startNode(t, h, "--dashboard", "off", "--control-listen", "127.0.0.1:0")
	addr := strings.TrimPrefix(n.runLine(t, "remote control"), "http://")
	addr, _, _ = strings.Cut(addr, " ")
	tokenFile := filepath.Join(h, api.TokenFile)
	st, err := os.Stat(tokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want one created with mode 0600", st, err)
	}

	// A managing machine: its own copy of the token, no home of the node.
	elsewhere := t.TempDir()
	mine := filepath.Join(elsewhere, "node.token")
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mine, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	status := jsonOut[api.StatusResponse](t, dms(t, "--home", elsewhere, "--remote", addr, "--token-file", mine, "status", "--json"))
	if status.Home != h {
		t.Fatalf("status through --remote: home %q, want %q", status.Home, h)
	}
	dms(t, "--remote", addr, "--token-file", mine, "capability").want(t, 0, "onboarded")

	wrong := filepath.Join(elsewhere, "wrong.token")
	if err := os.WriteFile(wrong, []byte("not-the-token-of-this-node\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dms(t, "--remote", addr, "--token-file", wrong, "status").want(t, exitFailure, "unauthorized")
	if err := os.Chmod(mine, 0o640); err != nil {
		t.Fatal(err)
	}
	dms(t, "--remote", addr, "--token-file", mine, "status").want(t, exitUsage, "mode 0640")
}
