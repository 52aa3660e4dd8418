package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// figure is one row of the comparison table: a number taken from a report.
type figure struct {
	mode, name string
	better     string // higher | lower | ""
	value      func(r map[string]any) (float64, bool)
}

func path(keys ...string) func(map[string]any) (float64, bool) {
	return func(r map[string]any) (float64, bool) {
		var v any = r
		for _, k := range keys {
			m, ok := v.(map[string]any)
			if !ok {
				return 0, false
			}
			v = m[k]
		}
		f, ok := v.(float64)
		return f, ok
	}
}

func scaled(f func(map[string]any) (float64, bool), by float64) func(map[string]any) (float64, bool) {
	return func(r map[string]any) (float64, bool) {
		v, ok := f(r)
		return v * by, ok
	}
}

// delivered is the share of the sim's events that reached the client, in percent.
func delivered(r map[string]any) (float64, bool) {
	ev, ok1 := path("result", "events")(r)
	exp, ok2 := path("result", "expectedEventsPerSwarm")(r)
	n, ok3 := path("result", "swarms")(r)
	if !ok1 || !ok2 || !ok3 || exp*n == 0 {
		return 0, false
	}
	return 100 * ev / (exp * n), true
}

func figures() []figure {
	return []figure{
		{"idle", "connected", "", path("result", "connected")},
		{"idle", "handshakes/s", "higher", path("result", "connectRatePerSec")},
		{"idle", "connect p50 ms", "lower", path("result", "connectMs", "p50")},
		{"idle", "connect p99 ms", "lower", path("result", "connectMs", "p99")},
		{"idle", "RSS per idle conn KiB", "lower", scaled(path("result", "rss", "perConnBytes"), 1.0/1024)},
		{"idle", "RSS per idle conn KiB (held)", "lower", scaled(path("result", "rss", "perConnBytesHeld"), 1.0/1024)},
		{"idle", "probe connect ms", "lower", path("result", "probe", "connectMs")},
		{"idle", "probe task_created ms", "lower", path("result", "probe", "taskCreatedMs")},
		{"idle", "probe first event ms", "lower", path("result", "probe", "firstEventMs")},
		{"handshake", "handshakes/s", "higher", path("result", "connectRatePerSec")},
		{"handshake", "connect p50 ms", "lower", path("result", "connectMs", "p50")},
		{"handshake", "connect p99 ms", "lower", path("result", "connectMs", "p99")},
		{"stream", "events/s", "higher", path("result", "eventsPerSec")},
		{"stream", "events delivered %", "higher", delivered},
		{"stream", "server peak RSS MiB", "lower", scaled(path("result", "rss", "peakKiB"), 1.0/1024)},
		{"spawn", "swarms/s", "higher", path("result", "swarmsPerSec")},
		{"spawn", "task_created p50 ms", "lower", path("result", "createdMs", "p50")},
		{"spawn", "task_created p99 ms", "lower", path("result", "createdMs", "p99")},
		{"spawn", "task_complete p50 ms", "lower", path("result", "completeMs", "p50")},
		{"spawn", "task_complete p99 ms", "lower", path("result", "completeMs", "p99")},
		{"spawn", "events delivered %", "higher", delivered},
		{"paced", "engine→client p50 ms", "lower", path("result", "latencyMs", "p50")},
		{"paced", "engine→client p99 ms", "lower", path("result", "latencyMs", "p99")},
		{"paced", "engine→client max ms", "lower", path("result", "latencyMs", "max")},
		{"paced", "events delivered %", "higher", delivered},
		{"paced", "server peak RSS MiB", "lower", scaled(path("result", "rss", "peakKiB"), 1.0/1024)},
		{"burst", "engine→client p50 ms", "lower", path("result", "latencyMs", "p50")},
		{"burst", "engine→client p99 ms", "lower", path("result", "latencyMs", "p99")},
		{"burst", "engine→client max ms", "lower", path("result", "latencyMs", "max")},
		{"burst", "swarm→first event p50 ms", "lower", path("result", "firstEventMs", "p50")},
		{"burst", "swarm→first event max ms", "lower", path("result", "firstEventMs", "max")},
		{"burst", "events delivered %", "higher", delivered},
		{"burst", "server peak RSS MiB", "lower", scaled(path("result", "rss", "peakKiB"), 1.0/1024)},
	}
}

const maxReportFiles = 1000

// runTable reads reports (files of JSON objects, as the modes print them) and prints, per
// mode and figure, the median over runs of each label and the ratio of the first label's
// median to the second's.
func runTable(files []string, stdout io.Writer) error {
	if len(files) == 0 || len(files) > maxReportFiles {
		return usageError(fmt.Sprintf("usage: flowgate-load table FILE... (1 to %d files of JSON reports)", maxReportFiles))
	}
	type key struct{ mode, label string }
	runs := map[key][]map[string]any{}
	var labels []string
	for _, f := range files {
		reports, err := readReports(f)
		if err != nil {
			return err
		}
		for _, r := range reports {
			mode, _ := r["mode"].(string)
			label, _ := r["label"].(string)
			if label == "" {
				label = "(unlabelled)"
			}
			if !slices.Contains(labels, label) {
				labels = append(labels, label)
			}
			k := key{mode, label}
			runs[k] = append(runs[k], r)
		}
	}
	if len(labels) == 0 {
		return errors.New("no reports found")
	}
	head := []string{"mode", "figure"}
	head = append(head, labels...)
	if len(labels) >= 2 {
		head = append(head, labels[0]+"/"+labels[1], "better")
	}
	rows := [][]string{head}
	for _, fg := range figures() {
		row := []string{fg.mode, fg.name}
		meds := make([]float64, len(labels))
		have := make([]bool, len(labels))
		found := false
		for i, l := range labels {
			var vals []float64
			for _, r := range runs[key{fg.mode, l}] {
				if v, ok := fg.value(r); ok {
					vals = append(vals, v)
				}
			}
			if len(vals) == 0 {
				row = append(row, "-")
				continue
			}
			meds[i], have[i], found = median(vals), true, true
			cell := num(meds[i])
			if len(vals) > 1 {
				cell += " (n=" + strconv.Itoa(len(vals)) + ")"
			}
			row = append(row, cell)
		}
		if !found {
			continue
		}
		if len(labels) >= 2 {
			ratio := "-"
			if have[0] && have[1] && meds[1] != 0 {
				ratio = num(meds[0]/meds[1]) + "×"
			}
			row = append(row, ratio, fg.better)
		}
		rows = append(rows, row)
	}
	writeMarkdown(stdout, rows)
	// Runs that finished with errors: the figures above include them; say what went wrong.
	keys := slices.SortedFunc(maps.Keys(runs), func(a, b key) int {
		return strings.Compare(a.mode+"\x00"+a.label, b.mode+"\x00"+b.label)
	})
	for _, k := range keys {
		for i, r := range runs[k] {
			if ok, _ := r["ok"].(bool); ok {
				continue
			}
			var byKind any
			if e, ok := r["errors"].(map[string]any); ok {
				byKind = e["byKind"]
			}
			errs, _ := json.Marshal(byKind)
			fmt.Fprintf(stdout, "note: %s %s run %d finished with errors: %s\n", k.label, k.mode, i+1, errs)
		}
	}
	return nil
}

// writeMarkdown prints rows as an aligned Markdown table (numbers right-aligned), so it
// can be pasted into docs/performance.md as is.
func writeMarkdown(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	right := func(i int) bool { return i >= 2 && rows[0][i] != "better" }
	line := func(r []string, sep bool) {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			switch {
			case sep && right(i):
				c = strings.Repeat("-", width[i]-1) + ":"
			case sep:
				c = strings.Repeat("-", width[i])
			}
			if sep {
				pad = ""
			}
			if right(i) && !sep {
				c = pad + c
			} else {
				c += pad
			}
			b.WriteString("| " + c + " ")
		}
		fmt.Fprintln(w, b.String()+"|")
	}
	line(rows[0], false)
	line(rows[0], true)
	for _, r := range rows[1:] {
		line(r, false)
	}
}

func readReports(file string) ([]map[string]any, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(io.LimitReader(f, 64<<20))
	var out []map[string]any
	for {
		var r map[string]any
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if r["tool"] == "flowgate-load" {
			out = append(out, r)
		}
	}
}

func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func num(v float64) string {
	switch a := max(v, -v); {
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
