package api

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dms-project/dms/internal/randid"
)

// The dashboard is one page and its script, embedded in the binary (no
// build step, nothing fetched from elsewhere). It polls the control API's
// reads once a second through /api/, on a listener of its own on loopback.
//
//go:embed dashboard
var dashboardFiles embed.FS

// PathDashboard (GET) tells the dashboard's URL, with its token.
const PathDashboard = "/v1/dashboard"

// DashboardResponse is the dashboard's address.
type DashboardResponse struct {
	URL string `json:"url"`
}

// Dashboard serves the web dashboard of a node on 127.0.0.1. It is
// read-only: only GETs reach the API. A random token in the URL keeps other
// local users out (loopback is open to every user of the machine; the URL
// is handed out over the 0600 control socket only).
type Dashboard struct {
	srv   *http.Server
	ln    net.Listener
	token string
	wg    sync.WaitGroup
}

// StartDashboard listens on addr (a loopback HOST:PORT; port 0 picks one)
// and serves the dashboard over api, the control API's handler.
func StartDashboard(addr string, api http.Handler) (*Dashboard, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard address %q: want HOST:PORT", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("dashboard address %q: want a loopback address such as 127.0.0.1:0", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	static, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		ln.Close()
		return nil, err
	}
	d := &Dashboard{ln: ln, token: randid.Hex(16)}
	mux := http.NewServeMux()
	// The page and its script hold no data: only the API needs the token.
	mux.Handle("GET /", http.FileServerFS(static))
	mux.Handle("GET /api/", d.guard(http.StripPrefix("/api", api)))
	d.srv = &http.Server{Handler: readOnly(mux), ReadHeaderTimeout: 10 * time.Second}
	d.wg.Go(func() { _ = d.srv.Serve(ln) })
	return d, nil
}

// readOnly refuses everything but GET and sets the headers every reply
// carries: no caching, no framing, nothing loaded from elsewhere.
func readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		next.ServeHTTP(w, r)
	})
}

// guard lets in the calls that carry the token, as ?token= or the header
// the page's script sends.
func (d *Dashboard) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.URL.Query().Get("token")
		if tok == "" {
			tok = r.Header.Get("X-Dms-Token")
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(d.token)) != 1 {
			http.Error(w, "missing or wrong token: open the URL that dms dashboard prints", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// URL is the dashboard's address, token included.
func (d *Dashboard) URL() string {
	return "http://" + d.ln.Addr().String() + "/?token=" + d.token
}

// Close stops the dashboard and waits for its server.
func (d *Dashboard) Close(ctx context.Context) error {
	err := d.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = d.srv.Close()
	}
	d.wg.Wait()
	return err
}

// SetDashboard makes the control API tell the dashboard's URL.
func (s *Server) SetDashboard(d *Dashboard) {
	s.mux.HandleFunc("GET "+PathDashboard, func(w http.ResponseWriter, _ *http.Request) {
		s.reply(w, DashboardResponse{URL: d.URL()}, nil)
	})
}

// Dashboard asks the node for its dashboard's URL.
func (c *Client) Dashboard(ctx context.Context) (DashboardResponse, error) {
	var r DashboardResponse
	err := c.call(ctx, http.MethodGet, PathDashboard, nil, &r)
	if err != nil && strings.Contains(err.Error(), "404") {
		err = fmt.Errorf("the node runs without a dashboard (dms run --dashboard=false): %w", err)
	}
	return r, err
}
