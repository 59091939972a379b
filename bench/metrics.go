package bench

import (
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
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
