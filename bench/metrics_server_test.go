package bench

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsServer: 503 until the network is up, then the mesh's page on
// /metrics; Close stops serving and may be called again.
func TestMetricsServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := ServeMetrics(ln)
	t.Cleanup(func() { _ = m.Close() })
	url := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}

	if code, body := get("/metrics"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Fatalf("before the network is up: %d %q, want 503 saying it is starting", code, body)
	}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "dms_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	m.setGatherer(reg)
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "dms_test_total 3") {
		t.Fatalf("once up: %d %q, want 200 with the counter", code, body)
	}
	if code, _ := get("/other"); code != http.StatusServiceUnavailable {
		t.Fatalf("another path: %d, want 503", code)
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if resp, err := http.Get(url + "/metrics"); err == nil {
		resp.Body.Close()
		t.Fatal("still serving after Close")
	}
}
