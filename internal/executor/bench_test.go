package executor

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/flowgate/flowgate/internal/executor/sandbox"
)

type countOutput struct{ n, bytes atomic.Int64 }

func (c *countOutput) Stdout(b []byte, _ bool) { c.n.Add(1); c.bytes.Add(int64(len(b))) }
func (c *countOutput) Stderr(b []byte, _ bool) { c.n.Add(1); c.bytes.Add(int64(len(b))) }

// BenchmarkRunLines is end to end: a real engine in the sandbox writing stream-json lines as
// fast as it can, through the pipe, the splitter and the redactor into Output.
func BenchmarkRunLines(b *testing.B) {
	const perRun = 1_000_000
	line := `{"type":"assistant","message":{"content":[{"type":"text","text":"working on the objective, step n"}]},"session_id":"abc"}`
	script := fmt.Sprintf(`yes '%s' | head -n %d`, line, perRun)
	p := shProfile(b, script)
	ex, err := New(Options{Profile: p, WorkdirRoot: b.TempDir(), InitPath: self(b), Sandbox: sandbox.Auto, MaxOutputBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var total int64
	i := 0
	for b.Loop() {
		out := &countOutput{}
		s := spec(fmt.Sprintf("b%d", i), "x")
		s.APIKey = "sk-ant-api03-tenantkey0123456789abcdef"
		i++
		if _, err := ex.Run(b.Context(), s, out); err != nil {
			b.Fatal(err)
		}
		if out.n.Load() != perRun {
			b.Fatalf("%d lines", out.n.Load())
		}
		total += out.n.Load()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkRunStart is the cost of one task that does nothing: sandbox start, engine, reap.
// With Landlock the engine's process execs the flowgate binary once more to confine itself.
func BenchmarkRunStart(b *testing.B) {
	for _, ll := range []sandbox.LandlockMode{sandbox.LandlockOff, sandbox.LandlockAuto} {
		b.Run("landlock="+string(ll), func(b *testing.B) {
			ex, err := New(Options{Profile: shProfile(b, "exit 0"), WorkdirRoot: b.TempDir(), InitPath: self(b), Landlock: ll})
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				if _, err := ex.Run(b.Context(), spec(fmt.Sprintf("b%d", i), "x"), &countOutput{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
