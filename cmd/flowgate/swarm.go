package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flowgate/flowgate/internal/client"
	"github.com/flowgate/flowgate/internal/protocol"
)

// Exit statuses of `flowgate swarm` (beyond 0 = the task succeeded and 2 = usage).
const (
	swarmExitTask      = 1   // the task ended failed, timeout, cancelled or interrupted
	swarmExitConnect   = 3   // no connection: unreachable, handshake refused (bad token, origin, caps)
	swarmExitRefused   = 4   // the gateway refused the swarm request (validation, rate limit, quota, …)
	swarmExitInterrupt = 130 // Ctrl-C: the task was cancelled
)

const swarmUsage = `usage: flowgate swarm --url ws://HOST:PORT/ws [flags] "objective"

Runs one swarm and streams its events; exits 0 only when the task ends with status success.
The token comes from --token-file F, FLOWGATE_TOKEN or --token T (visible in ps: avoid).

exit status: 0 success, 1 task failed/timeout/cancelled/interrupted, 2 usage,
             3 could not connect or token refused, 4 request refused, 130 interrupted (Ctrl-C)

flags:
`

const (
	maxTokenFileBytes = 16 << 10
	maxLineRunes      = 2000
)

type swarmFlags struct {
	url, token, tokenFile, transport string
	agents, timeout                  int
	strategy, mode                   string
	jsonOut                          bool
	cancelGrace                      time.Duration
}

func runSwarm(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("swarm", stderr)
	var f swarmFlags
	fs.StringVar(&f.url, "url", getenv("FLOWGATE_URL"), "gateway WebSocket URL, e.g. ws://127.0.0.1:8080/ws (default $FLOWGATE_URL)")
	fs.StringVar(&f.token, "token", "", "token (prefer --token-file or $FLOWGATE_TOKEN: a flag shows in ps)")
	fs.StringVar(&f.tokenFile, "token-file", "", "read the token from this file")
	fs.StringVar(&f.transport, "token-transport", client.TokenHeader, "how the token travels: header, subprotocol, ticket or query")
	fs.IntVar(&f.agents, "agents", 0, "agents, 1-20 (default: the gateway's)")
	fs.StringVar(&f.strategy, "strategy", "", "strategy, e.g. auto, parallel, sequential (default: the gateway's)")
	fs.StringVar(&f.mode, "mode", "", "mode, e.g. centralized, distributed (default: the gateway's)")
	fs.IntVar(&f.timeout, "timeout", 0, "task timeout in seconds, enforced by the gateway (default: the gateway's)")
	fs.BoolVar(&f.jsonOut, "json", false, "print the task's frames as raw JSON lines")
	fs.DurationVar(&f.cancelGrace, "cancel-grace", 5*time.Second, "after Ctrl-C, how long to wait for the task's end")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), swarmUsage)
		fs.PrintDefaults()
	}
	// Flags may follow the objective: parse, take the positional word, parse the rest. After
	// "--" every word belongs to the objective, even one that looks like a flag.
	var words []string
	for rest := args; ; {
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		if i := len(rest) - fs.NArg() - 1; i >= 0 && rest[i] == "--" {
			words = append(words, fs.Args()...)
			break
		}
		words = append(words, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	objective := strings.Join(words, " ")
	if f.url == "" || strings.TrimSpace(objective) == "" {
		fs.Usage()
		return usageError("swarm needs --url and an objective")
	}
	token, err := swarmToken(f, getenv, stderr)
	if err != nil {
		return err
	}

	var (
		dialToken = token
		source    = f.transport
	)
	switch f.transport {
	case client.TokenHeader, client.TokenSubprotocol, client.TokenQuery:
	case client.TokenTicket:
		tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		t, err := client.FetchTicket(tctx, nil, f.url, token)
		cancel()
		if err != nil {
			return &exitError{code: swarmExitConnect, err: connectError(err)}
		}
		dialToken = t.Ticket
	default:
		return usageError("--token-transport must be header, subprotocol, ticket or query")
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	conn, err := client.Dial(dctx, f.url, client.Options{Token: dialToken, TokenSource: source})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{code: swarmExitInterrupt, err: errors.New("interrupted")}
		}
		return &exitError{code: swarmExitConnect, err: connectError(err)}
	}
	defer conn.Close()

	out := newSwarmPrinter(stdout, f.jsonOut, isTerminal(stdout))
	done, err := conn.RunSwarm(ctx, client.SwarmRequest{
		Objective:   objective,
		Options:     client.SwarmOptions{Agents: f.agents, Strategy: f.strategy, Mode: f.mode, Timeout: f.timeout},
		CancelGrace: f.cancelGrace,
	}, out.event)
	out.finish()
	var se *client.ServerError
	switch {
	case errors.As(err, &se):
		return &exitError{code: swarmExitRefused, err: fmt.Errorf("swarm refused: %s", clean(se.Error(), 500))}
	case errors.Is(err, client.ErrCancelled):
		status := "cancel sent"
		if done.Status != "" {
			status = "task " + done.Status
		}
		return &exitError{code: swarmExitInterrupt, err: fmt.Errorf("interrupted: %s", status)}
	case err != nil:
		return &exitError{code: swarmExitConnect, err: fmt.Errorf("connection lost: %s", clean(err.Error(), 300))}
	}
	if !f.jsonOut {
		out.summary(done)
	}
	if done.Status != protocol.StatusSuccess {
		msg := "task " + done.Status
		if done.Error != "" {
			msg += ": " + done.Error
		}
		return &exitError{code: swarmExitTask, err: errors.New(clean(msg, 500))}
	}
	return nil
}

// swarmToken picks the token: --token, --token-file or $FLOWGATE_TOKEN, exactly one.
func swarmToken(f swarmFlags, getenv func(string) string, stderr io.Writer) (string, error) {
	if f.token != "" && f.tokenFile != "" {
		return "", usageError("give --token or --token-file, not both")
	}
	switch {
	case f.token != "":
		return strings.TrimSpace(f.token), nil
	case f.tokenFile != "":
		fh, err := os.Open(f.tokenFile)
		if err != nil {
			return "", usageError("--token-file: %v", errors.Unwrap(err))
		}
		defer fh.Close()
		if fi, err := fh.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(stderr, "flowgate: warning: %s is readable by other users (chmod 600 it)\n", f.tokenFile)
		}
		b, err := io.ReadAll(io.LimitReader(fh, maxTokenFileBytes+1))
		if err != nil {
			return "", usageError("--token-file: %v", errors.Unwrap(err))
		}
		if len(b) > maxTokenFileBytes {
			return "", usageError("--token-file: larger than %d bytes", maxTokenFileBytes)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", usageError("--token-file: the file is empty")
	case strings.TrimSpace(getenv("FLOWGATE_TOKEN")) != "":
		return strings.TrimSpace(getenv("FLOWGATE_TOKEN")), nil
	}
	return "", usageError("no token: set FLOWGATE_TOKEN, or give --token-file F")
}

// connectError explains a failed connection in one line, without the token or the URL's
// query (which may hold one).
func connectError(err error) error {
	var he *client.HandshakeError
	if errors.As(err, &he) {
		detail := he.Detail
		if detail == "" {
			detail = "no detail"
		}
		code := he.Code
		if code == "" {
			code = "error"
		}
		return fmt.Errorf("connection refused by the gateway: HTTP %d %s: %s", he.Status, code, clean(detail, 300))
	}
	return fmt.Errorf("cannot connect: %s", clean(err.Error(), 300))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// swarmPrinter writes a task's events: raw JSON lines, or readable lines with, on a terminal,
// a progress line kept at the bottom.
type swarmPrinter struct {
	w        io.Writer
	json     bool
	tty      bool
	start    time.Time
	progress float64
	agents   int
	events   int
	bar      bool // a progress line is on screen
	taskID   string
}

func newSwarmPrinter(w io.Writer, jsonOut, tty bool) *swarmPrinter {
	return &swarmPrinter{w: w, json: jsonOut, tty: tty && !jsonOut, start: time.Now()}
}

func (p *swarmPrinter) event(m client.Message) {
	if p.json {
		fmt.Fprintf(p.w, "%s\n", m.Raw)
		return
	}
	var ev map[string]any
	if err := json.Unmarshal(m.Raw, &ev); err != nil {
		return
	}
	if m.Type == protocol.TypeTaskCreated {
		p.taskID = m.TaskID
	}
	p.events++
	switch m.Type {
	case "agent_spawn":
		p.agents++
	case "task_progress":
		if v, ok := ev["progress"].(float64); ok && v >= 0 && v <= 100 {
			p.progress = v
		}
	case protocol.TypeTaskComplete:
		if m.Status == protocol.StatusSuccess {
			p.progress = 100
		}
	}
	p.clearBar()
	seq := "    "
	if m.Seq > 0 {
		seq = fmt.Sprintf("#%-3d", m.Seq)
	}
	at := time.Now()
	if t, err := time.Parse(time.RFC3339Nano, str(ev["serverTime"])); err == nil {
		at = t
	}
	fmt.Fprintf(p.w, "%s %s %-15s %s\n", at.Local().Format("15:04:05.000"), seq, clean(m.Type, 40), clean(describeEvent(ev), maxLineRunes))
	p.drawBar()
}

func (p *swarmPrinter) clearBar() {
	if p.bar {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.bar = false
	}
}

func (p *swarmPrinter) drawBar() {
	if !p.tty {
		return
	}
	const width = 24
	filled := int(p.progress / 100 * width)
	fmt.Fprintf(p.w, "[%s%s] %3.0f%%  agents %d  events %d  %s",
		strings.Repeat("#", filled), strings.Repeat("-", width-filled), p.progress, p.agents, p.events,
		time.Since(p.start).Truncate(100*time.Millisecond))
	p.bar = true
}

func (p *swarmPrinter) finish() { p.clearBar() }

func (p *swarmPrinter) summary(done client.Message) {
	var ev struct {
		DurationMs int64  `json:"durationMs"`
		Result     string `json:"result"`
		Error      string `json:"error"`
		ExitCode   int    `json:"exitCode"`
	}
	_ = json.Unmarshal(done.Raw, &ev)
	fmt.Fprintf(p.w, "task %s %s (exit %d, %d ms)\n", clean(done.TaskID, 80), clean(done.Status, 20), ev.ExitCode, ev.DurationMs)
	if ev.Result != "" {
		fmt.Fprintf(p.w, "result: %s\n", clean(ev.Result, maxLineRunes))
	}
	if ev.Error != "" {
		fmt.Fprintf(p.w, "error: %s\n", clean(ev.Error, maxLineRunes))
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) string {
	switch n := v.(type) {
	case float64:
		return fmt.Sprintf("%g", n)
	case string:
		return n
	}
	return "?"
}

// describeEvent is one readable line for an event (the dashboard's format.js says the same).
func describeEvent(e map[string]any) string {
	switch t := str(e["type"]); t {
	case "task_created":
		return "created: " + str(e["objective"])
	case "agent_spawn":
		s := "agent " + str(e["agentId"]) + " spawned"
		if v := str(e["agentType"]); v != "" {
			s += " (" + v + ")"
		}
		if v := str(e["name"]); v != "" {
			s += " " + v
		}
		return s
	case "task_progress":
		s := num(e["progress"]) + "%"
		if v := str(e["message"]); v != "" {
			s += " " + v
		}
		return s
	case "assistant", "user":
		s := ""
		if v := str(e["agentId"]); v != "" {
			s = v + ": "
		}
		if msg, ok := e["message"].(map[string]any); ok {
			s += contentText(msg["content"])
		}
		return s
	case "system":
		s := str(e["subtype"])
		if v := str(e["model"]); v != "" {
			s += " model " + v
		}
		if v := str(e["message"]); v != "" {
			s += ": " + v
		}
		return s
	case "result":
		return "result (" + str(e["subtype"]) + "): " + str(e["result"])
	case "task_output":
		return str(e["line"])
	case "task_log":
		return "[" + str(e["level"]) + "] " + str(e["message"])
	case "engine_event":
		b, _ := json.Marshal(e["event"])
		return "engine event " + string(b)
	case "task_cancelled":
		return "cancel requested"
	case "task_complete":
		s := fmt.Sprintf("%s (exit %s, %s ms)", str(e["status"]), num(e["exitCode"]), num(e["durationMs"]))
		if v := str(e["error"]); v != "" {
			s += ": " + v
		}
		return s
	default:
		rest := make(map[string]any, len(e))
		for k, v := range e {
			switch k {
			case "type", "taskId", "seq", "serverTime":
				continue
			}
			rest[k] = v
		}
		b, _ := json.Marshal(rest)
		return string(b)
	}
}

func contentText(v any) string {
	switch c := v.(type) {
	case string:
		return c
	case []any:
		var parts []string
		for _, item := range c {
			m, ok := item.(map[string]any)
			if !ok {
				continue
			}
			switch str(m["type"]) {
			case "text":
				parts = append(parts, str(m["text"]))
			case "tool_use":
				b, _ := json.Marshal(m["input"])
				parts = append(parts, "→ "+str(m["name"])+" "+string(b))
			case "tool_result":
				parts = append(parts, "← "+contentText(m["content"]))
			default:
				parts = append(parts, "["+str(m["type"])+"]")
			}
		}
		return strings.Join(parts, " ")
	}
	return ""
}

// clean makes untrusted text safe for a terminal: control characters (an escape sequence could
// rewrite the screen or the title) and bidi overrides (which reorder what is shown) are
// escaped, invalid UTF-8 is replaced, and the text is cut at max runes.
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n >= max {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case r == utf8.RuneError:
			b.WriteRune('\uFFFD')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(" ")
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, `\x%02x`, r)
		case r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			fmt.Fprintf(&b, `\u%04x`, r)
		case !unicode.IsPrint(r) && !unicode.IsSpace(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
