package executor

import (
	"bytes"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

type gotLine struct {
	text      string
	truncated bool
}

// reference splits the whole input at once, the obvious way.
func reference(in []byte, maxLine int) []gotLine {
	var out []gotLine
	parts := bytes.Split(in, []byte("\n"))
	for i, p := range parts {
		if i == len(parts)-1 && len(p) == 0 {
			break
		}
		if len(p) > maxLine {
			out = append(out, gotLine{string(p[:maxLine]), true})
		} else {
			out = append(out, gotLine{string(p), false})
		}
	}
	return out
}

func split(in []byte, maxLine int, chunks func(int) int) []gotLine {
	var out []gotLine
	s := &lineSplitter{max: maxLine, emit: func(l []byte, tr bool) { out = append(out, gotLine{string(l), tr}) }}
	for len(in) > 0 {
		n := min(max(1, chunks(len(in))), len(in))
		s.write(in[:n])
		in = in[n:]
	}
	s.flush()
	return out
}

func TestLineSplitterMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := [][]byte{
		[]byte("a\nbb\nccc\n"),
		[]byte("no newline"),
		[]byte("\n\n\n"),
		[]byte(strings.Repeat("x", 100) + "\nshort\n" + strings.Repeat("y", 10) + "\n" + strings.Repeat("z", 11)),
		[]byte(strings.Repeat("long line without end ", 50)),
	}
	for range 200 {
		var b []byte
		for range rng.IntN(30) {
			b = append(b, bytes.Repeat([]byte{'a' + byte(rng.IntN(26))}, rng.IntN(40))...)
			if rng.IntN(3) > 0 {
				b = append(b, '\n')
			}
		}
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		for _, maxLine := range []int{1, 10, 11, 64} {
			want := reference(in, maxLine)
			for _, chunk := range []func(int) int{
				func(n int) int { return n },
				func(int) int { return 1 },
				func(int) int { return 7 },
				func(n int) int { return 1 + rng.IntN(n) },
			} {
				if got := split(in, maxLine, chunk); !slices.Equal(got, want) {
					t.Fatalf("input %q max %d:\n got %v\nwant %v", in, maxLine, got, want)
				}
			}
		}
	}
}

func TestPumpBudget(t *testing.T) {
	in := strings.Repeat("0123456789\n", 100) // 1100 bytes
	b := newBudget(500)
	var n int
	pump(strings.NewReader(in), readBufSize, 1024, nil, b, func([]byte, bool) { n++ })
	// 45 whole lines fit in 500 bytes; the 46th is cut by the cap and never delivered.
	if !b.exceeded.Load() || n != 45 {
		t.Errorf("exceeded %v, %d lines delivered", b.exceeded.Load(), n)
	}
	select {
	case <-b.ch:
	default:
		t.Error("budget channel not closed")
	}
}

// lineSource yields the same line forever, in 64 KiB reads, like a busy pipe.
type lineSource struct {
	chunk []byte
	left  int
}

func (s *lineSource) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	n := copy(p, s.chunk)
	s.left -= n
	return n, nil
}

func BenchmarkPumpLines(b *testing.B) {
	line := `{"type":"assistant","message":{"content":[{"type":"text","text":"working on the objective, step n"}]},"session_id":"abc"}` + "\n"
	chunk := []byte(strings.Repeat(line, readBufSize/len(line)))
	red := NewRedactor("sk-ant-api03-tenantkey0123456789abcdef")
	b.ReportAllocs()
	lines := 0
	for b.Loop() {
		src := &lineSource{chunk: chunk, left: len(chunk) * 16}
		pump(src, readBufSize, DefaultMaxLineBytes, red, newBudget(1<<40), func([]byte, bool) { lines++ })
	}
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
}
