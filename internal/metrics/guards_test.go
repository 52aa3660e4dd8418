package metrics_test

import (
	"slices"
	"testing"

	"github.com/flowgate/flowgate/internal/cluster"
	"github.com/flowgate/flowgate/internal/metrics"
	"github.com/flowgate/flowgate/internal/server"
	"github.com/flowgate/flowgate/internal/session"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/task"
)

// The consumers declare the interfaces; these guards live in a test so that the metrics
// package itself does not import the server it instruments.
var (
	_ task.Metrics          = metrics.Tasks{}
	_ session.Metrics       = metrics.Sessions{}
	_ server.Metrics        = metrics.HTTP{}
	_ server.RequestMetrics = (*metrics.HTTP)(nil)
	_ store.Observer        = (*metrics.Store)(nil)
	_ cluster.Observer      = (*metrics.Redis)(nil)
)

// Every operation the store reports has a series of its own, not "other".
func TestStoreOpsKnown(t *testing.T) {
	m := metrics.New(metrics.Options{})
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, mf := range mfs {
		if mf.GetName() != "flowgate_store_errors_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			have = append(have, s.GetLabel()[0].GetValue())
		}
	}
	for _, op := range store.Ops() {
		if !slices.Contains(have, op) {
			t.Errorf("store op %q has no flowgate_store_errors_total series (labels.go storeOps)", op)
		}
	}
}
