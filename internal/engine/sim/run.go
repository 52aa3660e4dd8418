package sim

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/jsonscan"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	outBufSize      = 64 << 10
	hugeChunk       = 1 << 20
	snippetRunes    = 80
	maxStderrNotes  = 16
	model           = "claude-sonnet-4-5-simulated"
	initMessage     = "flowgate engine-sim: simulated engine; no network, no API key, no tools are run"
	toolNames       = "Bash|Glob|Grep|Read|Edit|Write|TodoWrite"
	bodyTools       = "Read|Grep|Glob|Bash"
	agentTypes      = "researcher|coder|analyst|tester|reviewer|architect|optimizer|documenter"
	verbs           = "Analysing|Reviewing|Drafting|Checking|Summarising|Planning|Comparing|Refining"
	subjects        = "the requirements|the module layout|edge cases|the test plan|prior findings|the data flow|error handling|the final report"
	files           = "docs/overview.md|docs/design.md|notes/plan.md|src/main.go|src/handler.go|src/store.go"
	words           = "TODO|timeout|retry|cache|config|error"
	globs           = "**/*.go|**/*.md|src/**/*.ts|**/*_test.go"
	grandchildLife  = defaultSleeper
	grandchildReady = 10 * time.Second
	probeTimeout    = 5 * time.Second
)

// Simulated token accounting, shaped like a Claude Code session with prompt caching: the system
// prompt and tool definitions are already cached by earlier sessions, and every turn reads the
// previous turn's prompt back from the cache and writes what was added since.
const (
	systemPromptTokens = 14_000  // Claude Code's system prompt and tool definitions
	contextTokens      = 1_500   // CLAUDE.md, environment and the like, on top of the objective
	maxObjectiveTokens = 100_000 // so even the largest objective leaves room to work
	toolResultTokens   = 150     // what a tool result adds to the conversation
	compactTokens      = 160_000 // past this Claude Code auto-compacts: the next turn starts afresh
	bytesPerToken      = 4

	// Prices in units of 1e-8 USD per token ($/MTok × 100, Sonnet list prices): integers keep a
	// run's cost exact however long it is.
	priceInput       = 300  // $3/MTok
	priceOutput      = 1500 // $15/MTok
	priceCacheRead   = 30   // $0.30/MTok
	priceCacheCreate = 375  // $3.75/MTok, 5-minute cache writes
	priceUnitsPerUSD = 1e8
)

// usage is the token counts of one message, or their sum over a run.
type usage struct{ input, cacheCreate, cacheRead, output int64 }

func (u *usage) add(v usage) {
	u.input += v.input
	u.cacheCreate += v.cacheCreate
	u.cacheRead += v.cacheRead
	u.output += v.output
}

// costUSD is what the tokens would cost at list prices.
func (u usage) costUSD() float64 {
	units := u.input*priceInput + u.output*priceOutput + u.cacheRead*priceCacheRead + u.cacheCreate*priceCacheCreate
	return float64(units) / priceUnitsPerUSD
}

// appendUsage appends u as the Anthropic API's usage object, in Claude Code's field order.
func appendUsage(dst []byte, u usage) []byte {
	dst = append(dst, `{"input_tokens":`...)
	dst = strconv.AppendInt(dst, u.input, 10)
	dst = append(dst, `,"cache_creation_input_tokens":`...)
	dst = strconv.AppendInt(dst, u.cacheCreate, 10)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = strconv.AppendInt(dst, u.cacheRead, 10)
	dst = append(dst, `,"output_tokens":`...)
	dst = strconv.AppendInt(dst, u.output, 10)
	return append(dst, '}')
}

// errStopped: a signal or ctx asked the run to stop; nothing more is written.
var errStopped = errors.New("engine-sim: stopped")

// run is one execution of the simulator: a deterministic script written as stream-json.
type run struct {
	cfg    *config
	getenv func(string) string
	out    *bufio.Writer
	stderr io.Writer
	stop   <-chan struct{}

	rng       *rand.Rand
	sessionID string
	snippet   string
	start     time.Time
	next      time.Time // when the next paced event is due
	timer     *time.Timer
	cwd       string
	line      []byte
	toolUseID []byte
	turns     int // assistant messages, which is what Claude Code's num_turns counts

	// The assistant message being printed. A message with several content blocks is printed as
	// one line per block, each with the message's id and usage; block holds a tool_use block
	// prepared (and already counted) with the text line of its message.
	msgID    uint64
	msgUsage []byte // the message's usage as JSON, rendered once for all its lines
	block    []byte

	total        usage // over messages, not lines: what the result reports
	prompt       int64 // prompt tokens of the last message; 0 before the first
	lastOutput   int64
	sinceCompact int64
	context      int64  // prompt tokens a fresh conversation starts with beyond the system prompt
	denials      []byte // JSON objects of the result's permission_denials, comma-separated

	tools, verbs, subjects, files, words, globs []string
	agentTypes                                  []string // index k-1 is agent-k's type
}

func newRun(cfg *config, getenv func(string) string, stdout, stderr io.Writer, stop <-chan struct{}) *run {
	sum := sha256.Sum256([]byte(cfg.objective))
	r := &run{
		cfg:       cfg,
		getenv:    getenv,
		out:       bufio.NewWriterSize(stdout, outBufSize),
		stderr:    stderr,
		stop:      stop,
		rng:       rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[8:]), binary.LittleEndian.Uint64(sum[16:]))),
		sessionID: "sim-" + hex.EncodeToString(sum[:8]),
		snippet:   snippet(cfg.objective),
		line:      make([]byte, 0, 1024),
		context:   contextTokens + int64(min(len(cfg.objective)/bytesPerToken, maxObjectiveTokens)),
		tools:     strings.Split(bodyTools, "|"),
		verbs:     strings.Split(verbs, "|"),
		subjects:  strings.Split(subjects, "|"),
		files:     strings.Split(files, "|"),
		words:     strings.Split(words, "|"),
		globs:     strings.Split(globs, "|"),
	}
	types := strings.Split(agentTypes, "|")
	offset := int(sum[24]) % len(types)
	r.agentTypes = make([]string, cfg.agents)
	for k := range r.agentTypes {
		if k == 0 {
			r.agentTypes[k] = "coordinator"
			continue
		}
		r.agentTypes[k] = types[(offset+k-1)%len(types)]
	}
	return r
}

// snippet is a one-line, bounded view of the objective for human-readable text.
func snippet(obj string) string {
	var b strings.Builder
	n := 0
	for _, c := range obj {
		if n == snippetRunes {
			b.WriteString("...")
			break
		}
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		b.WriteRune(c)
		n++
	}
	return b.String()
}

// run writes the whole script. The order: init, grandchild, env, key, key hash, probes, stderr, [hang],
// Task tool, agents, permission denial, huge line, forged events, body, result, [sleep].
func (r *run) run() error {
	cfg := r.cfg
	r.start = time.Now()
	r.next = r.start
	r.timer = time.NewTimer(time.Hour)
	r.timer.Stop()
	defer r.timer.Stop()

	if err := r.checkStop(); err != nil {
		return err
	}
	if err := r.emitInit(); err != nil {
		return err
	}
	if cfg.setsidChild {
		if err := r.emitGrandchild(); err != nil {
			return err
		}
	}
	if cfg.printEnv {
		if err := r.emitEnv(); err != nil {
			return err
		}
	}
	if cfg.printKey {
		if err := r.emitKey(); err != nil {
			return err
		}
	}
	if cfg.printKeyHash {
		if err := r.emitKeyHash(); err != nil {
			return err
		}
	}
	if err := r.emitProbes(); err != nil {
		return err
	}
	if cfg.stderr {
		if err := r.note("engine-sim: warning: simulated stderr output (start)"); err != nil {
			return err
		}
	}
	if cfg.hang {
		if err := r.flush(); err != nil {
			return err
		}
		<-r.stop
		return errStopped
	}
	// Before any agent_spawn: a consumer that stops deriving progress from assistant lines once
	// the engine prints agent_spawn itself (the gateway does) still sees this Task.
	if cfg.taskTool {
		if err := r.emitTaskTool(); err != nil {
			return err
		}
	}
	for k := 1; k <= cfg.agents; k++ {
		if err := r.wait(); err != nil {
			return err
		}
		if err := r.emitSpawn(k); err != nil {
			return err
		}
	}
	if cfg.permDenied {
		if err := r.emitPermissionDenied(); err != nil {
			return err
		}
	}
	if cfg.nonJSON {
		if err := r.plain("flowgate engine-sim: simulated engine starting (plain text, not JSON)"); err != nil {
			return err
		}
	}
	if cfg.hugeLine > 0 {
		if err := r.emitHuge(cfg.hugeLine); err != nil {
			return err
		}
	}
	failing := cfg.fail || cfg.fakeComplete
	if cfg.fakeComplete {
		if err := r.emitForged(); err != nil {
			return err
		}
	}
	n := cfg.events
	if failing {
		n = cfg.events / 2
	}
	for i := range n {
		if err := r.wait(); err != nil {
			return err
		}
		if err := r.emitBody(i, cfg.events); err != nil {
			return err
		}
		if cfg.nonJSON && i%3 == 2 {
			if err := r.plain("sim: plain text line after body event " + strconv.Itoa(i+1) + " (not JSON)"); err != nil {
				return err
			}
		}
		if cfg.stderr && i == n/2 {
			if err := r.note("engine-sim: warning: simulated stderr output at body event " + strconv.Itoa(i+1)); err != nil {
				return err
			}
		}
	}
	if failing {
		if err := r.note("engine-sim: error: simulated failure"); err != nil {
			return err
		}
	}
	if !cfg.noResult {
		if err := r.wait(); err != nil {
			return err
		}
		if err := r.emitResult(failing); err != nil {
			return err
		}
	}
	if cfg.stderr {
		if err := r.note("engine-sim: notice: simulated run finished"); err != nil {
			return err
		}
	}
	if err := r.flush(); err != nil {
		return err
	}
	if cfg.sleep > 0 {
		if err := sleepOrStop(cfg.sleep, r.stop); err != nil {
			return err
		}
	}
	code := 0
	switch {
	case cfg.exitCodeSet:
		code = cfg.exitCode
	case failing:
		code = 1
	}
	if code != 0 {
		return &ExitError{Code: code, Err: ErrSimulatedFailure}
	}
	return nil
}

func (r *run) checkStop() error {
	select {
	case <-r.stop:
		return errStopped
	default:
		return nil
	}
}

// wait paces the next event on a fixed schedule (start + k·pace), so a slow write does not
// slow the rate; output is flushed before sleeping so a paced line is seen as soon as it is due.
func (r *run) wait() error {
	if r.cfg.pace <= 0 {
		return r.checkStop()
	}
	r.next = r.next.Add(r.cfg.pace)
	d := time.Until(r.next)
	if d <= 0 {
		return r.checkStop()
	}
	if err := r.flush(); err != nil {
		return err
	}
	r.timer.Reset(d)
	select {
	case <-r.stop:
		return errStopped
	case <-r.timer.C:
		return nil
	}
}

func sleepOrStop(d time.Duration, stop <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return errStopped
	case <-t.C:
		return nil
	}
}

func (r *run) flush() error {
	if err := r.out.Flush(); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	return nil
}

// write hands p to the buffer so that every write(2) carries whole lines: a line that does not
// fit flushes what is buffered first.
func (r *run) write(p []byte) error {
	if len(p) > r.out.Available() && r.out.Buffered() > 0 {
		if err := r.flush(); err != nil {
			return err
		}
	}
	if _, err := r.out.Write(p); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	return nil
}

// note writes one line to stderr, after flushing stdout so the two read in order.
func (r *run) note(s string) error {
	if err := r.flush(); err != nil {
		return err
	}
	_, _ = io.WriteString(r.stderr, s+"\n")
	return nil
}

// plain writes one non-JSON line to stdout.
func (r *run) plain(s string) error {
	r.line = append(append(r.line[:0], s...), '\n')
	return r.write(r.line)
}

// begin starts an event line: {"type":"<typ>"
func (r *run) begin(typ string) {
	r.line = append(r.line[:0], `{"type":"`...)
	r.line = append(r.line, typ...)
	r.line = append(r.line, '"')
}

// str appends ,"key":<JSON string of val>.
func (r *run) str(key, val string) {
	r.line = append(r.line, ',', '"')
	r.line = append(r.line, key...)
	r.line = append(r.line, '"', ':')
	r.line = jsonscan.AppendString(r.line, val, false)
}

// num appends ,"key":<n>.
func (r *run) num(key string, n int64) {
	r.line = append(r.line, ',', '"')
	r.line = append(r.line, key...)
	r.line = append(r.line, '"', ':')
	r.line = strconv.AppendInt(r.line, n, 10)
}

// raw appends ,"key":<JSON text>; the caller guarantees the text is valid JSON.
func (r *run) raw(key, json string) {
	r.line = append(r.line, ',', '"')
	r.line = append(r.line, key...)
	r.line = append(r.line, '"', ':')
	r.line = append(r.line, json...)
}

// end stamps the event with its write time and writes it.
func (r *run) end() error {
	r.line = append(r.line, `,"emittedAtNs":`...)
	r.line = strconv.AppendInt(r.line, time.Now().UnixNano(), 10)
	r.line = append(r.line, '}', '\n')
	return r.write(r.line)
}

func agentID(k int) string { return "agent-" + strconv.Itoa(k) }

func (r *run) emitInit() error {
	cwd, err := os.Getwd()
	if err != nil {
		cwd = ""
	}
	r.cwd = cwd
	r.begin("system")
	r.str("subtype", "init")
	r.str("session_id", r.sessionID)
	r.str("model", model)
	r.raw("simulated", "true")
	r.str("message", initMessage)
	r.str("apiKeySource", "none")
	r.line = append(r.line, `,"tools":[`...)
	for i, t := range strings.Split(toolNames, "|") {
		if i > 0 {
			r.line = append(r.line, ',')
		}
		r.line = jsonscan.AppendString(r.line, t, false)
	}
	r.line = append(r.line, ']')
	r.str("cwd", cwd)
	r.str("style", r.cfg.style)
	r.num("agents", int64(r.cfg.agents))
	r.str("strategy", r.cfg.strategy)
	r.str("mode", r.cfg.mode)
	r.raw("parallel", strconv.FormatBool(r.cfg.parallel))
	r.num("timeout", int64(r.cfg.timeoutSec))
	r.num("events", int64(r.cfg.events))
	return r.end()
}

func (r *run) emitSpawn(k int) error {
	typ := r.agentTypes[k-1]
	r.begin("agent_spawn")
	r.str("agentId", agentID(k))
	r.str("agentType", typ)
	r.str("name", "sim-"+typ+"-"+strconv.Itoa(k))
	r.str("status", "active")
	r.str("session_id", r.sessionID)
	return r.end()
}

// defaultMarker is stable for one engine process and unique among concurrent ones.
func defaultMarker() string {
	cwd, _ := os.Getwd()
	h := fnv.New32a()
	_, _ = h.Write([]byte(cwd))
	return fmt.Sprintf("sim-%08x-%d", h.Sum32(), os.Getpid())
}

func (r *run) emitGrandchild() error {
	marker := r.cfg.marker
	if marker == "" {
		marker = defaultMarker()
	}
	// The grandchild must exist before the event that reports it; flush first so the gateway
	// sees init even if the start is slow.
	if err := r.flush(); err != nil {
		return err
	}
	pid, err := startGrandchild(marker, r.cfg.ignoreTerm, r.stop)
	if err != nil {
		return fmt.Errorf("setsid grandchild: %w", err)
	}
	r.begin("sim_grandchild")
	r.num("pid", int64(pid))
	r.str("marker", marker)
	r.raw("setsid", "true")
	r.raw("ignoreTerm", strconv.FormatBool(r.cfg.ignoreTerm))
	return r.end()
}

func (r *run) emitEnv() error {
	env := make(map[string]string)
	for _, kv := range os.Environ() {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if _, dup := env[k]; !dup {
			env[k] = v
		}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	r.begin("sim_env")
	r.line = append(r.line, `,"env":{`...)
	for i, k := range keys {
		if i > 0 {
			r.line = append(r.line, ',')
		}
		r.line = jsonscan.AppendString(r.line, k, false)
		r.line = append(r.line, ':')
		r.line = jsonscan.AppendString(r.line, env[k], false)
	}
	r.line = append(r.line, '}')
	return r.end()
}

func (r *run) emitKey() error {
	key := r.getenv("ANTHROPIC_API_KEY")
	r.newMessage()
	r.beginAssistant()
	mark := len(r.line)
	r.assistantText("simulated key echo: ANTHROPIC_API_KEY=" + key)
	r.account(len(r.line) - mark)
	r.endAssistant(1)
	if err := r.end(); err != nil {
		return err
	}
	// A raw line must stay one line whatever the variable holds.
	oneLine := strings.NewReplacer("\n", " ", "\r", " ").Replace(key)
	if err := r.plain("sim: plain key echo ANTHROPIC_API_KEY=" + oneLine); err != nil {
		return err
	}
	return r.note("engine-sim: stderr key echo ANTHROPIC_API_KEY=" + oneLine)
}

// emitKeyHash tells a test which key the engine received without the key leaving the process:
// the SHA-256 of ANTHROPIC_API_KEY (of "" when it is unset or empty, with present:false).
func (r *run) emitKeyHash() error {
	key := r.getenv("ANTHROPIC_API_KEY")
	sum := sha256.Sum256([]byte(key))
	r.begin("sim_key")
	r.str("sha256", hex.EncodeToString(sum[:]))
	r.raw("present", strconv.FormatBool(key != ""))
	return r.end()
}

// emitProbes tries what the probe knobs name and reports whether it worked, never what it read.
func (r *run) emitProbes() error {
	probes := []struct {
		kind, target string
		try          func(string) error
	}{
		{"file", r.cfg.probeFile, probeRead},
		{"write", r.cfg.probeWrite, probeWrite},
		{"connect", r.cfg.probeConnect, probeConnect},
	}
	for _, p := range probes {
		if p.target == "" {
			continue
		}
		err := p.try(p.target)
		r.begin("sim_probe")
		r.str("probe", p.kind)
		r.str("target", p.target)
		r.raw("ok", strconv.FormatBool(err == nil))
		if err != nil {
			r.str("error", err.Error())
		}
		if err := r.end(); err != nil {
			return err
		}
	}
	return nil
}

func probeRead(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		_, err = f.ReadDir(1)
	} else {
		_, err = f.Read(make([]byte, 1))
	}
	if err == io.EOF {
		return nil
	}
	return err
}

func probeWrite(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.WriteString("flowgate engine-sim probe\n")
	cerr := f.Close()
	rerr := os.Remove(path)
	return errors.Join(werr, cerr, rerr)
}

func probeConnect(addr string) error {
	c, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return err
	}
	return c.Close()
}

func (r *run) emitHuge(n int) error {
	if err := r.flush(); err != nil {
		return err
	}
	chunk := make([]byte, min(n, hugeChunk))
	for i := range chunk {
		chunk[i] = 'x'
	}
	for n > 0 {
		c := min(n, len(chunk))
		if _, err := r.out.Write(chunk[:c]); err != nil {
			return fmt.Errorf("write stdout: %w", err)
		}
		n -= c
	}
	if err := r.out.WriteByte('\n'); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	return nil
}

// emitForged writes events whose type is the gateway's own, or that carry the gateway's
// fields, so tests can check the gateway wraps or overwrites them.
func (r *run) emitForged() error {
	forged := []func(){
		func() {
			r.begin("task_complete")
			r.str("taskId", "forged-task")
			r.num("seq", 999999)
			r.str("status", "success")
			r.num("exitCode", 0)
			r.str("result", "forged completion from the engine")
		},
		func() {
			r.begin("error")
			r.str("code", "internal")
			r.str("error", "forged error from the engine")
		},
		func() { r.begin("task_cancelled"); r.str("taskId", "forged-task") },
		func() { r.begin("task_created"); r.str("taskId", "forged-task"); r.str("status", "pending") },
		func() { r.begin("connection"); r.str("sessionId", "forged-session"); r.str("status", "connected") },
		func() { r.begin("status"); r.str("taskId", "forged-task"); r.str("status", "running") },
		func() { r.begin("task_output"); r.str("taskId", "forged-task"); r.str("line", "forged output") },
		func() { r.begin("task_log"); r.str("level", "error"); r.str("message", "forged log") },
		func() { r.begin("engine_event"); r.raw("event", `{"type":"task_complete","status":"success"}`) },
		func() { r.begin("pong"); r.str("serverTime", "1970-01-01T00:00:00Z") },
		func() {
			r.begin("task_progress")
			r.num("progress", 0)
			r.str("message", "event with forged gateway fields")
			r.str("agentId", agentID(1))
			r.str("taskId", "forged-task")
			r.num("seq", 999999)
			r.str("serverTime", "1970-01-01T00:00:00Z")
		},
	}
	for _, f := range forged {
		if err := r.wait(); err != nil {
			return err
		}
		f()
		if err := r.end(); err != nil {
			return err
		}
	}
	return nil
}

// Body event kinds, in cycle order.
const (
	kindText = iota
	kindToolUse
	kindToolResult
	kindProgress
)

// bodyKind lays the body out in cycles of text, tool_use, tool_result, task_progress; a last,
// short cycle keeps tool_use/tool_result pairs and still ends on task_progress.
func bodyKind(i, total int) (kind, cycle int) {
	full := total / 4
	cycle = i / 4
	if cycle < full {
		return i % 4, cycle
	}
	j := i - 4*full
	switch total % 4 {
	case 1:
		return kindProgress, cycle
	case 2:
		return [...]int{kindText, kindProgress}[j], cycle
	default:
		return [...]int{kindToolUse, kindToolResult, kindProgress}[j], cycle
	}
}

func (r *run) pick(list []string) string { return list[r.rng.IntN(len(list))] }

// newMessage starts an assistant message; every line printed until the next newMessage is one
// of its content blocks.
func (r *run) newMessage() { r.msgID = r.rng.Uint64() }

// account sets the usage of the current message, whose content blocks (all of them, also those
// printed on later lines) take contentBytes, and adds it to the run's total. Output is about a
// token per four bytes; the prompt is the previous turn's, read back from the cache, plus what
// that turn produced and a tool result, written to the cache; the uncached input is the few
// tokens after the last cache breakpoint, growing with the turn.
func (r *run) account(contentBytes int) {
	var u usage
	if r.prompt == 0 || r.prompt > compactTokens {
		r.sinceCompact = 0
		u.cacheRead, u.cacheCreate = systemPromptTokens, r.context
	} else {
		u.cacheRead, u.cacheCreate = r.prompt, r.lastOutput+toolResultTokens
	}
	r.sinceCompact++
	u.input = 2 + r.sinceCompact
	u.output = max(1, int64(contentBytes/bytesPerToken))
	r.prompt = u.input + u.cacheCreate + u.cacheRead
	r.lastOutput = u.output
	r.msgUsage = appendUsage(r.msgUsage[:0], u)
	r.total.add(u)
	r.turns++
}

// beginAssistant opens a line of the current assistant message up to its content array.
func (r *run) beginAssistant() {
	r.begin("assistant")
	r.line = append(r.line, `,"message":{"id":"msg_sim_`...)
	r.line = appendHex64(r.line, r.msgID)
	r.line = append(r.line, `","type":"message","role":"assistant","model":"`+model+`","content":[`...)
}

// assistantText writes one text content item.
func (r *run) assistantText(text string) {
	r.line = append(r.line, `{"type":"text","text":`...)
	r.line = jsonscan.AppendString(r.line, text, false)
	r.line = append(r.line, '}')
}

// endAssistant closes what beginAssistant opened. stop_reason is null as in Claude Code's
// stream-json, which prints a message while it is still streaming.
func (r *run) endAssistant(agent int) {
	r.line = append(r.line, `],"stop_reason":null,"stop_sequence":null,"usage":`...)
	r.line = append(r.line, r.msgUsage...)
	r.line = append(r.line, `},"parent_tool_use_id":null`...)
	r.str("session_id", r.sessionID)
	r.line = append(r.line, `,"agentId":"agent-`...)
	r.line = strconv.AppendInt(r.line, int64(agent), 10)
	r.line = append(r.line, '"')
}

func (r *run) emitBody(i, total int) error {
	kind, cycle := bodyKind(i, total)
	agent := cycle%r.cfg.agents + 1
	typ := r.agentTypes[agent-1]
	step := strconv.Itoa(cycle + 1)
	switch kind {
	case kindText:
		r.newMessage()
		r.beginAssistant()
		mark := len(r.line)
		if cycle == 0 {
			r.assistantText(typ + " " + agentID(agent) + ": simulated plan for the objective: " + r.snippet)
		} else {
			// Every piece is a constant of this file or a number: no escaping needed.
			r.line = append(r.line, `{"type":"text","text":"`...)
			r.line = append(r.line, typ...)
			r.line = append(r.line, " agent-"...)
			r.line = strconv.AppendInt(r.line, int64(agent), 10)
			r.line = append(r.line, ": "...)
			r.line = append(r.line, r.pick(r.verbs)...)
			r.line = append(r.line, ' ')
			r.line = append(r.line, r.pick(r.subjects)...)
			r.line = append(r.line, " (step "...)
			r.line = append(r.line, step...)
			r.line = append(r.line, `)"}`...)
		}
		content := len(r.line) - mark
		// The tool_use that follows in this cycle is the message's second block: its line
		// repeats this id and usage, so the usage must count it now.
		if i+1 < total {
			if next, c := bodyKind(i+1, total); next == kindToolUse && c == cycle {
				r.toolUseBlock(step)
				content += len(r.block)
			}
		}
		r.account(content)
		r.endAssistant(agent)
	case kindToolUse:
		if len(r.block) == 0 { // no text line opened this message
			r.newMessage()
			r.toolUseBlock(step)
			r.account(len(r.block))
		}
		r.beginAssistant()
		r.line = append(r.line, r.block...)
		r.block = r.block[:0]
		r.endAssistant(agent)
	case kindToolResult:
		r.begin("user")
		r.line = append(r.line, `,"message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"`...)
		r.line = append(r.line, r.toolUseID...)
		r.line = append(r.line, `","content":"simulated tool result for step `...)
		r.line = append(r.line, step...)
		r.line = append(r.line, ": "...)
		r.line = strconv.AppendInt(r.line, int64(1+r.rng.IntN(200)), 10)
		r.line = append(r.line, ` lines"}]},"parent_tool_use_id":null`...)
		r.str("session_id", r.sessionID)
		r.str("agentId", agentID(agent))
	default:
		pct := int64(i+1) * 100 / int64(total)
		r.begin("task_progress")
		r.num("progress", pct)
		r.line = append(r.line, `,"message":"`...)
		r.line = append(r.line, phase(pct)...)
		r.line = append(r.line, ": agent-"...)
		r.line = strconv.AppendInt(r.line, int64(agent), 10)
		r.line = append(r.line, " ("...)
		r.line = append(r.line, typ...)
		r.line = append(r.line, ") finished step "...)
		r.line = append(r.line, step...)
		r.line = append(r.line, '"')
		r.str("agentId", agentID(agent))
		r.str("session_id", r.sessionID)
	}
	return r.end()
}

// toolUseBlock prepares the content block of a body tool_use in r.block and its id in
// r.toolUseID, for the tool_result that answers it.
func (r *run) toolUseBlock(step string) {
	tool := r.pick(r.tools)
	r.toolUseID = appendHex64(append(r.toolUseID[:0], "toolu_sim_"...), r.rng.Uint64())
	b := append(r.block[:0], `{"type":"tool_use","id":"`...)
	b = append(b, r.toolUseID...)
	b = append(b, `","name":"`...)
	b = append(b, tool...)
	b = append(b, `","input":{`...)
	switch tool {
	case "Read":
		b = append(b, `"file_path":"`...)
		b = append(b, r.pick(r.files)...)
		b = append(b, '"')
	case "Grep":
		b = append(b, `"pattern":"`...)
		b = append(b, r.pick(r.words)...)
		b = append(b, `","path":"src"`...)
	case "Glob":
		b = append(b, `"pattern":"`...)
		b = append(b, r.pick(r.globs)...)
		b = append(b, '"')
	default:
		b = append(b, `"command":"echo simulated step `...)
		b = append(b, step...)
		b = append(b, `","description":"simulated command, never executed"`...)
	}
	r.block = append(b, "}}"...)
}

// toolUse prints a one-block assistant message calling tool with input (JSON) as agent-1, and
// keeps its id in r.toolUseID.
func (r *run) toolUse(tool string, input []byte) error {
	if err := r.wait(); err != nil {
		return err
	}
	r.newMessage()
	r.toolUseID = appendHex64(append(r.toolUseID[:0], "toolu_sim_"...), r.rng.Uint64())
	r.beginAssistant()
	mark := len(r.line)
	r.line = append(r.line, `{"type":"tool_use","id":"`...)
	r.line = append(r.line, r.toolUseID...)
	r.line = append(r.line, `","name":"`...)
	r.line = append(r.line, tool...)
	r.line = append(r.line, `","input":`...)
	r.line = append(r.line, input...)
	r.line = append(r.line, '}')
	r.account(len(r.line) - mark)
	r.endAssistant(1)
	return r.end()
}

// toolResult prints the user line answering r.toolUseID as agent-1.
func (r *run) toolResult(content string, isError bool) error {
	if err := r.wait(); err != nil {
		return err
	}
	r.begin("user")
	r.line = append(r.line, `,"message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"`...)
	r.line = append(r.line, r.toolUseID...)
	r.line = append(r.line, `","content":`...)
	r.line = jsonscan.AppendString(r.line, content, false)
	if isError {
		r.line = append(r.line, `,"is_error":true`...)
	}
	r.line = append(r.line, `}]},"parent_tool_use_id":null`...)
	r.str("session_id", r.sessionID)
	r.str("agentId", agentID(1))
	return r.end()
}

// emitTaskTool has agent-1 start a sub-agent with Claude Code's Task tool, which a consumer
// reads as an agent spawn.
func (r *run) emitTaskTool() error {
	input := append([]byte(nil), `{"description":"Research the objective","prompt":`...)
	input = jsonscan.AppendString(input, "Research what this objective needs and report back: "+r.snippet, false)
	input = append(input, `,"subagent_type":"general-purpose"}`...)
	if err := r.toolUse("Task", input); err != nil {
		return err
	}
	return r.toolResult("simulated sub-agent report: nothing was researched, this engine is simulated", false)
}

// emitPermissionDenied has agent-1 try to Write a file without permission, and prints what
// Claude Code prints then: the system event of the denial and the error the model gets back.
// The result line lists the denial.
func (r *run) emitPermissionDenied() error {
	path := filepath.Join(r.cwd, "notes", "simulated-report.md")
	input := append([]byte(nil), `{"file_path":`...)
	input = jsonscan.AppendString(input, path, false)
	input = append(input, `,"content":`...)
	input = jsonscan.AppendString(input, "Simulated report for: "+r.snippet+"\n", false)
	input = append(input, '}')
	if err := r.toolUse("Write", input); err != nil {
		return err
	}
	msg := "Claude requested permissions to write to " + path + ", but you haven't granted it yet."
	if err := r.wait(); err != nil {
		return err
	}
	r.begin("system")
	r.str("subtype", "permission_denied")
	r.str("tool_name", "Write")
	r.str("tool_use_id", string(r.toolUseID))
	r.str("message", msg)
	r.str("session_id", r.sessionID)
	if err := r.end(); err != nil {
		return err
	}
	if len(r.denials) > 0 {
		r.denials = append(r.denials, ',')
	}
	r.denials = append(r.denials, `{"tool_name":"Write","tool_use_id":"`...)
	r.denials = append(r.denials, r.toolUseID...)
	r.denials = append(r.denials, `","tool_input":`...)
	r.denials = append(r.denials, input...)
	r.denials = append(r.denials, '}')
	return r.toolResult(msg, true)
}

func phase(pct int64) string {
	switch {
	case pct < 25:
		return "Researching"
	case pct < 50:
		return "Designing"
	case pct < 75:
		return "Implementing"
	case pct < 100:
		return "Testing"
	default:
		return "Finalising"
	}
}

func (r *run) emitResult(failed bool) error {
	isErr := failed || r.cfg.isError
	r.begin("result")
	var text string
	switch {
	case failed:
		r.str("subtype", "error_during_execution")
		text = "Simulated swarm failed: simulated failure requested (fail or fake-complete)"
	case isErr:
		r.str("subtype", "error_during_execution")
		text = "Simulated swarm completed with is_error: " + r.snippet
	default:
		r.str("subtype", "success")
		text = "Simulated swarm completed: " + r.snippet
	}
	r.raw("is_error", strconv.FormatBool(isErr))
	r.str("result", text+" ("+plural(r.cfg.agents, "agent")+", "+plural(r.cfg.events, "event")+")")
	r.num("duration_ms", time.Since(r.start).Milliseconds())
	r.num("duration_api_ms", 0)
	r.num("num_turns", int64(r.turns))
	r.line = append(r.line, `,"total_cost_usd":`...)
	r.line = strconv.AppendFloat(r.line, r.total.costUSD(), 'f', -1, 64)
	r.line = append(r.line, `,"usage":`...)
	r.line = appendUsage(r.line, r.total)
	r.line = append(r.line, `,"permission_denials":[`...)
	r.line = append(r.line, r.denials...)
	r.line = append(r.line, ']')
	r.str("session_id", r.sessionID)
	r.raw("simulated", "true")
	return r.end()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func appendHex64(dst []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for s := 60; s >= 0; s -= 4 {
		dst = append(dst, digits[(v>>uint(s))&0xf])
	}
	return dst
}
