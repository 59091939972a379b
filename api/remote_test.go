package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dms-project/dms/api"
)

// A token file is refused unless only its owner can read it, and one is
// created, 0600, when missing.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, api.TokenFile)
	tok, created, err := api.EnsureToken(path)
	if err != nil || !created || len(tok) < 32 {
		t.Fatalf("EnsureToken on a missing file: %q %v %v", tok, created, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("created token file: %v %v, want mode 0600", st.Mode(), err)
	}
	again, created, err := api.EnsureToken(path)
	if err != nil || created || again != tok {
		t.Fatalf("EnsureToken on the existing file: %q %v %v, want the same token", again, created, err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := api.LoadToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v, want a refusal that says chmod 600", mode, err)
		}
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := api.LoadToken(short); err == nil {
		t.Error("a 3-character token was accepted")
	}
}

// Calls without the token, or with another, are refused with 401; the
// client with the token gets through, and one with a wrong token is told
// ErrUnauthorized.
func TestRemoteNeedsToken(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathID, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"peer_id":"12D3KooWtest","network":"dms"}`))
	})
	srv := httptest.NewServer(api.RequireToken(token, mux))
	defer srv.Close()

	for name, header := range map[string]string{
		"no header":       "",
		"wrong token":     "Bearer 0123456789abcdef0123456789abcdeX",
		"a prefix of it":  "Bearer 0123456789abcdef",
		"another scheme":  "Basic " + token,
		"token, no space": "Bearer" + token,
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+api.PathID, nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, resp.StatusCode)
		}
	}

	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	cl, err := api.DialRemote(ctx, addr, token)
	if err != nil {
		t.Fatalf("DialRemote with the token: %v", err)
	}
	id, err := cl.ID(ctx)
	cl.Close()
	if err != nil || id.PeerID != "12D3KooWtest" {
		t.Fatalf("ID through the remote listener: %+v %v", id, err)
	}
	if _, err := api.DialRemote(ctx, addr, "not-the-token-at-all"); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("DialRemote with a wrong token: %v, want ErrUnauthorized", err)
	}
}
