package bench

import (
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/dms-project/dms/node"
)

// MeshGatherer gathers the metrics of every node of an in-process network
// as one, each series labelled with its node's index (node="7"), so that
// `dms bench --metrics` shows the whole mesh on one page. It reads the
// nodes' registries only when scraped: the bench's figures pay nothing.
func MeshGatherer(nodes []*node.Node) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		byName := map[string]*dto.MetricFamily{}
		for i, n := range nodes {
			fams, err := n.Metrics().Gather()
			if err != nil {
				return nil, err
			}
			label := &dto.LabelPair{Name: proto.String("node"), Value: proto.String(strconv.Itoa(i))}
			for _, f := range fams {
				merged, ok := byName[f.GetName()]
				if !ok {
					merged = &dto.MetricFamily{Name: f.Name, Help: f.Help, Type: f.Type, Unit: f.Unit}
					byName[f.GetName()] = merged
				}
				for _, m := range f.Metric {
					m.Label = append(m.Label, label)
					slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
					merged.Metric = append(merged.Metric, m)
				}
			}
		}
		out := make([]*dto.MetricFamily, 0, len(byName))
		for _, f := range byName {
			out = append(out, f)
		}
		slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
		return out, nil
	})
}

// MetricsServer serves the bench's mesh metrics (MeshGatherer) on /metrics
// while the bench runs. Until the network is up, and on any other path, it
// answers 503 saying so.
type MetricsServer struct {
	mesh      atomic.Pointer[http.Handler]
	srv       *http.Server
	done      chan struct{}
	closeOnce sync.Once
	err       error
}

// ServeMetrics serves on ln until Close, which also closes ln. Pass its
// OnNetwork as Config.OnNetwork so that the page shows the network's nodes
// once they are up.
func ServeMetrics(ln net.Listener) *MetricsServer {
	m := &MetricsServer{done: make(chan struct{})}
	m.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(m.serveHTTP)}
	go func() {
		defer close(m.done)
		_ = m.srv.Serve(ln) // returns ErrServerClosed on Close
	}()
	return m
}

// OnNetwork shows nodes on the page from now on.
func (m *MetricsServer) OnNetwork(nodes []*node.Node) { m.setGatherer(MeshGatherer(nodes)) }

func (m *MetricsServer) setGatherer(g prometheus.Gatherer) {
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	m.mesh.Store(&h)
}

func (m *MetricsServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := m.mesh.Load()
	if r.URL.Path != "/metrics" || h == nil {
		http.Error(w, "the bench's network is starting; its metrics are on /metrics once it is up", http.StatusServiceUnavailable)
		return
	}
	(*h).ServeHTTP(w, r)
}

// Close stops serving and waits for the server to return; it may be
// called more than once.
func (m *MetricsServer) Close() error {
	m.closeOnce.Do(func() {
		if err := m.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.err = err
		}
		<-m.done
	})
	return m.err
}
