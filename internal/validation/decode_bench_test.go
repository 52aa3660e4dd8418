package validation_test

import (
	"strings"
	"testing"

	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/validation"
)

// BenchmarkDecodeValidate is a client frame's path from bytes to a validated request, as the
// session's reader runs it: strict decode (size, duplicates, depth, unknown fields) then
// validation. BenchmarkSwarm covers validation of an already decoded swarm alone.
func BenchmarkDecodeValidate(b *testing.B) {
	v := validation.New()
	lim := validation.Limits{
		MaxObjectiveChars: 1000, MaxObjectiveBytes: 4000, MaxAgents: 20, MaxTimeoutSeconds: 3600,
		DefaultAgents: 3, DefaultTimeoutSeconds: 600, DefaultStrategy: "auto", DefaultMode: "centralized",
		Strategies: []string{"auto", "parallel", "sequential"}, Modes: []string{"centralized", "distributed"},
	}
	cases := []struct{ name, frame string }{
		{"swarm/short", `{"type":"swarm","objective":"flowgate-load spawn sim:pace=0 sim:events=200","options":{"agents":3},"requestId":"r1"}`},
		{"swarm/long", `{"type":"swarm","objective":"` + strings.Repeat("Research distributed consensus algorithms and summarise. ", 15) +
			`","options":{"agents":5,"strategy":"parallel","mode":"distributed","timeout":600},"requestId":"req-42"}`},
		{"status", `{"type":"status","taskId":"11111111-2222-4333-8444-555555555555","requestId":"r2"}`},
		{"subscribe", `{"type":"subscribe","taskId":"11111111-2222-4333-8444-555555555555","afterSeq":1200}`},
		{"ping", `{"type":"ping","requestId":"r3"}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			frame := []byte(c.frame)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				msg, err := protocol.Decode(frame)
				if err != nil {
					b.Fatal(err)
				}
				switch m := msg.(type) {
				case *protocol.Swarm:
					_, err = v.Swarm(m, lim)
				case *protocol.TaskRef:
					_, err = v.TaskRef(m)
				case *protocol.Simple:
					_, err = v.Simple(m)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
