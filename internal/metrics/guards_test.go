package metrics_test

import (
	"github.com/flowgate/flowgate/internal/metrics"
	"github.com/flowgate/flowgate/internal/server"
	"github.com/flowgate/flowgate/internal/session"
	"github.com/flowgate/flowgate/internal/task"
)

// The consumers declare the interfaces; these guards live in a test so that the metrics
// package itself does not import the server it instruments.
var (
	_ task.Metrics    = metrics.Tasks{}
	_ session.Metrics = metrics.Sessions{}
	_ server.Metrics  = metrics.HTTP{}
)
