package api

// The remote control listener (dms run --control-listen): the same API as
// the unix socket, over TCP, for managing a node from another machine. The
// socket is guarded by file permissions; TCP has none, so every call must
// carry the token of a file only the node's owner can read. It is plain
// HTTP: the token and the calls cross the network in the clear, so it
// belongs on a trusted network, or behind an SSH tunnel or a TLS proxy.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// ErrUnauthorized: a remote call without the node's token, or with another.
var ErrUnauthorized = errors.New("unauthorized")

// TokenFile is the default token file of the remote control listener,
// relative to the home.
const TokenFile = "control.token"

// minToken is the shortest token accepted: 16 characters of a random token
// are 64 bits or more, out of reach of guessing over a network.
const minToken = 16

// maxTokenFile bounds what LoadToken reads.
const maxTokenFile = 4 << 10

// LoadToken reads the token in path. The file must be a regular file that
// no one but its owner can read or write (mode 0600 or narrower): a token
// others can read guards nothing.
func LoadToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("control token: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("control token %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("control token %s has mode %04o: readable or writable by others, so it guards nothing; chmod 600 %s", path, perm, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("control token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("control token: %w", err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("control token %s: larger than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minToken || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("control token %s: want one line of at least %d characters without spaces", path, minToken)
	}
	return tok, nil
}

// EnsureToken returns the token in path, first writing a new random one
// (mode 0600) when the file does not exist. created says it did.
func EnsureToken(path string) (tok string, created bool, err error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", false, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", false, fmt.Errorf("control token: %w", err)
		}
		_, err = f.WriteString(hex.EncodeToString(b) + "\n")
		if err = errors.Join(err, f.Close()); err != nil {
			return "", false, fmt.Errorf("control token: %w", err)
		}
		created = true
	}
	tok, err = LoadToken(path)
	return tok, created, err
}

// RequireToken lets through only requests that carry "Authorization:
// Bearer TOKEN". The comparison takes the same time whatever the guess:
// both sides are hashed to one length, then compared in constant time.
func RequireToken(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(given))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dms"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(wireError{Code: "unauthorized",
				Error: "unauthorized: this node's remote control listener needs its token (Authorization: Bearer TOKEN; dms --remote ADDR --token-file FILE)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServeRemote serves the whole control API on ln, each call guarded by
// token, until ctx ends; calls under way are cancelled with the server's
// (Close), as on the socket. It returns once the listener has stopped.
func (s *Server) ServeRemote(ctx context.Context, ln net.Listener, token string, log *slog.Logger) error {
	if len(token) < minToken {
		return fmt.Errorf("remote control: a token of at least %d characters is required", minToken)
	}
	srv := &http.Server{Handler: RequireToken(token, s.mux), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return s.base }}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("remote control listener: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if e := <-done; e != nil && !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	return err
}

// DialRemote connects to a node's remote control listener at addr
// (HOST:PORT) with its token, and checks the token with one call.
func DialRemote(ctx context.Context, addr, token string) (*Client, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("remote address %q: want HOST:PORT", addr)
	}
	var d net.Dialer
	c := &Client{home: "tcp://" + addr, http: &http.Client{Transport: bearer{token: token, next: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		},
	}}}}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.ID(cctx); err != nil {
		c.Close()
		if errors.Is(err, ErrUnauthorized) {
			return nil, err
		}
		return nil, fmt.Errorf("%w at %s: %v", ErrNoNode, addr, err)
	}
	return c, nil
}

// bearer adds the token to every request.
type bearer struct {
	token string
	next  *http.Transport
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// CloseIdleConnections lets Client.Close drop the pooled connections.
func (b bearer) CloseIdleConnections() { b.next.CloseIdleConnections() }
