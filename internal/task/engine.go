package task

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/flowgate/flowgate/internal/jsonscan"
	"github.com/flowgate/flowgate/internal/protocol"
)

// What the gateway reads out of a real engine's stream-json (Claude Code, claude-flow) on top
// of forwarding it: usage, turns and permission denials for task_complete, and — for the seed
// clients, which only render agent_spawn, task_progress and insight — progress events derived
// from assistant messages (docs/protocol.md, "Progress events from real engines").

// Event types of the seed's progress dialect.
const (
	typeAgentSpawn   = "agent_spawn"
	typeTaskProgress = "task_progress"
	typeInsight      = "insight"
)

// maxInsightBytes bounds the text of a derived insight: it repeats text the client also gets
// in full in the assistant event.
const maxInsightBytes = 1000

// engineState is guarded by Task.mu.
type engineState struct {
	usage      protocol.Usage // summed over assistant messages while running; the result's at the end
	hasUsage   bool
	msgID      []byte         // the assistant message whose usage is last in usage
	msgUsage   protocol.Usage // that message's usage, replaced when the engine repeats the message
	msgRaw     []byte         // its raw usage object, to skip decoding an identical repeat
	denials    int
	resultDeny int  // len(result.permission_denials)
	seedSpeech bool // the engine emits the seed's progress events itself: derive none
}

// apiUsage is the Messages API's usage object (and Claude Code's result usage).
type apiUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
}

// wire converts, clamping what a hostile engine may print: negative counts would only be
// refused by the store, and with them the task's final state.
func (u apiUsage) wire() protocol.Usage {
	return protocol.Usage{InputTokens: max(u.InputTokens, 0), OutputTokens: max(u.OutputTokens, 0),
		CacheReadInputTokens: max(u.CacheReadInputTokens, 0), CacheCreationInputTokens: max(u.CacheCreationInputTokens, 0)}
}

var (
	keyMessage = []byte(`"message":{`)
	keyID      = []byte(`"id":"`)
	keyUsage   = []byte(`"usage":{`)
)

// messageUsage finds an assistant line's message id and usage object without decoding the
// whole line (this runs for every assistant event). In valid JSON (the scanner checked it) an
// unescaped `"usage":{` is always a key: inside a string its quotes would be escaped. The
// message's usage follows its content, so the last one is taken; an engine that lies here only
// misreports its own usage.
func messageUsage(line []byte) (id, usage []byte) {
	m := bytes.Index(line, keyMessage)
	if m < 0 {
		return nil, nil
	}
	rest := line[m+len(keyMessage):]
	if i := bytes.Index(rest, keyID); i >= 0 {
		v := rest[i+len(keyID):]
		if j := bytes.IndexByte(v, '"'); j >= 0 {
			id = v[:j]
		}
	}
	// The last occurrence, found scanning forward: bytes.LastIndex of a multi-byte key is a
	// Rabin-Karp loop (6 % of the gateway's CPU per event in a stream profile), Index is
	// vectorized and the key occurs once or twice.
	u := -1
	for off := 0; ; {
		i := bytes.Index(rest[off:], keyUsage)
		if i < 0 {
			break
		}
		u = off + i
		off = u + len(keyUsage)
	}
	if u < 0 {
		return id, nil
	}
	obj := rest[u+len(keyUsage)-1:]
	// The usage object holds numbers and small objects, no strings with braces: its end is
	// the first brace that balances.
	depth := 0
	for i, c := range obj {
		switch c {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return id, obj[:i+1]
			}
		}
	}
	return id, nil
}

// observeAssistant accounts an assistant line's usage. Claude Code prints one line per content
// block of a message, repeating the message's id and usage: a repeat replaces, not adds.
// Called with mu held.
func (es *engineState) observeAssistant(line []byte) {
	id, raw := messageUsage(line)
	if raw == nil {
		return
	}
	same := id != nil && bytes.Equal(id, es.msgID)
	if same && bytes.Equal(raw, es.msgRaw) {
		return
	}
	u, ok := decodeUsage(raw)
	if !ok {
		return
	}
	w := u.wire()
	if same {
		es.usage = subUsage(es.usage, es.msgUsage)
	} else {
		es.usage.NumTurns++
	}
	es.usage = addUsage(es.usage, w)
	es.msgID = append(es.msgID[:0], id...)
	es.msgRaw = append(es.msgRaw[:0], raw...)
	es.msgUsage = w
	es.hasUsage = true
}

// decodeUsage reads the four counts out of a usage object, as json.Unmarshal into apiUsage
// would, but only for keys spelled exactly (encoding/json also matches other cases; engines
// print these in lower case): a count is an integer or null; any other value of one of them,
// or anything that is not an object, is refused. Other members are skipped unread. It runs for
// every assistant event, where encoding/json's reflection was a tenth of the gateway's CPU per
// streamed event.
func decodeUsage(b []byte) (u apiUsage, ok bool) {
	i := jsonscan.SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return apiUsage{}, false
	}
	i = jsonscan.SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return u, jsonscan.SkipSpace(b, i+1) == len(b)
	}
	for i < len(b) {
		if b[i] != '"' {
			return apiUsage{}, false
		}
		end, escaped, ok := jsonscan.StringEnd(b, i)
		if !ok {
			return apiUsage{}, false
		}
		key := b[i+1 : end-1]
		if escaped {
			key = nil // no count's name needs an escape; json would unescape it, keep it unknown
		}
		i = jsonscan.SkipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return apiUsage{}, false
		}
		i = jsonscan.SkipSpace(b, i+1)
		vend, ok := jsonscan.ValueEnd(b, i)
		if !ok || vend == i {
			return apiUsage{}, false
		}
		var dst *int64
		switch string(key) {
		case "input_tokens":
			dst = &u.InputTokens
		case "output_tokens":
			dst = &u.OutputTokens
		case "cache_read_input_tokens":
			dst = &u.CacheReadInputTokens
		case "cache_creation_input_tokens":
			dst = &u.CacheCreationInputTokens
		}
		if dst != nil && string(b[i:vend]) != "null" {
			n, ok := parseInt64(b[i:vend])
			if !ok {
				return apiUsage{}, false
			}
			*dst = n
		}
		i = jsonscan.SkipSpace(b, vend)
		if i >= len(b) {
			return apiUsage{}, false
		}
		switch b[i] {
		case ',':
			i = jsonscan.SkipSpace(b, i+1)
		case '}':
			return u, jsonscan.SkipSpace(b, i+1) == len(b)
		default:
			return apiUsage{}, false
		}
	}
	return apiUsage{}, false
}

// parseInt64 parses a JSON integer (no fraction or exponent) that fits an int64.
func parseInt64(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

func addUsage(a, b protocol.Usage) protocol.Usage {
	a.InputTokens += b.InputTokens
	a.OutputTokens += b.OutputTokens
	a.CacheReadInputTokens += b.CacheReadInputTokens
	a.CacheCreationInputTokens += b.CacheCreationInputTokens
	return a
}

func subUsage(a, b protocol.Usage) protocol.Usage {
	b.InputTokens, b.OutputTokens = -b.InputTokens, -b.OutputTokens
	b.CacheReadInputTokens, b.CacheCreationInputTokens = -b.CacheReadInputTokens, -b.CacheCreationInputTokens
	return addUsage(a, b)
}

// resultLine is the part of a result line task_complete reports.
type resultLine struct {
	IsError           *bool             `json:"is_error"`
	Result            json.RawMessage   `json:"result"`
	Usage             *apiUsage         `json:"usage"`
	TotalCostUSD      *float64          `json:"total_cost_usd"`
	NumTurns          *int              `json:"num_turns"`
	PermissionDenials []json.RawMessage `json:"permission_denials"`
}

// observeResult takes the engine's final word on usage. Called with mu held.
func (es *engineState) observeResult(r *resultLine) {
	if r.Usage != nil {
		turns := es.usage.NumTurns
		es.usage = r.Usage.wire()
		es.usage.NumTurns = turns
		es.hasUsage = true
	}
	if r.TotalCostUSD != nil && *r.TotalCostUSD >= 0 {
		es.usage.CostUSD = *r.TotalCostUSD
		es.hasUsage = true
	}
	if r.NumTurns != nil && *r.NumTurns >= 0 {
		es.usage.NumTurns = *r.NumTurns
	}
	es.resultDeny = len(r.PermissionDenials)
}

// snapshot returns the usage to report, nil when the engine reported none.
func (es *engineState) snapshot() *protocol.Usage {
	if !es.hasUsage {
		return nil
	}
	u := es.usage
	return &u
}

// permissionDenials: the events seen, or the result's list when it names more (an engine may
// print only one of them).
func (es *engineState) permissionDenials() int { return max(es.denials, es.resultDeny) }

var subtypePermissionDenied = []byte(`"permission_denied"`)

// isPermissionDenied reports a system event with subtype permission_denied.
func isPermissionDenied(line []byte) bool {
	if !bytes.Contains(line, subtypePermissionDenied) {
		return false
	}
	var ev struct {
		Subtype string `json:"subtype"`
	}
	return json.Unmarshal(line, &ev) == nil && ev.Subtype == "permission_denied"
}

// assistantLine is what progress derivation reads of an assistant event.
type assistantLine struct {
	Message struct {
		Content []struct {
			Type  string `json:"type"`
			Text  string `json:"text"`
			ID    string `json:"id"`
			Name  string `json:"name"`
			Input struct {
				Description  string `json:"description"`
				SubagentType string `json:"subagent_type"`
			} `json:"input"`
		} `json:"content"`
	} `json:"message"`
	ParentToolUseID *string `json:"parent_tool_use_id"`
}

// derived is one progress event to append after the assistant event it came from.
type derived struct {
	typ  string
	json []byte // the event's own fields, without type and the gateway's fields: `"k":v,...`
}

// deriveProgress maps one assistant event to the seed's progress events:
//   - a new assistant message (a turn)        → task_progress{progress, message, turn}
//   - a Task/Agent tool_use (a sub-agent)     → agent_spawn{agentId, agentType, description}
//   - a text block                            → insight{message}
//
// progress never reaches 100 before the end (the engine does not say how many turns are
// left): 90·n/(n+1) percent after n turns.
func deriveProgress(line []byte, newTurn bool, turn int) []derived {
	var a assistantLine
	if json.Unmarshal(line, &a) != nil {
		return nil
	}
	var out []derived
	if newTurn && turn > 0 {
		b := []byte(`"progress":`)
		b = strconv.AppendInt(b, int64(90*turn/(turn+1)), 10)
		b = append(b, `,"message":"turn `...)
		b = strconv.AppendInt(b, int64(turn), 10)
		b = append(b, `","turn":`...)
		b = strconv.AppendInt(b, int64(turn), 10)
		b = append(b, `,"derived":true`...)
		out = append(out, derived{typeTaskProgress, b})
	}
	for _, c := range a.Message.Content {
		switch {
		case c.Type == "tool_use" && (c.Name == "Task" || c.Name == "Agent"):
			agentType := c.Input.SubagentType
			if agentType == "" {
				agentType = "general-purpose"
			}
			b := []byte(`"agentId":`)
			b = appendJSON(b, c.ID)
			b = append(b, `,"agentType":`...)
			b = appendJSON(b, truncateUTF8(agentType, 128))
			b = append(b, `,"description":`...)
			b = appendJSON(b, truncateUTF8(c.Input.Description, 256))
			b = append(b, `,"derived":true`...)
			out = append(out, derived{typeAgentSpawn, b})
		case c.Type == "text" && len(bytes.TrimSpace([]byte(c.Text))) > 0:
			b := []byte(`"message":`)
			b = appendJSON(b, truncateUTF8(c.Text, maxInsightBytes))
			if a.ParentToolUseID != nil && *a.ParentToolUseID != "" {
				b = append(b, `,"agentId":`...)
				b = appendJSON(b, *a.ParentToolUseID)
			}
			b = append(b, `,"derived":true`...)
			out = append(out, derived{typeInsight, b})
		}
	}
	return out
}

func appendJSON(dst []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
	}
	b, _ := json.Marshal(s)
	return append(dst, b...)
}

// derivedFrame builds the frame of a derived event: {"type":T,<gateway fields>,<fields>}.
func derivedFrame(dst []byte, d derived, taskID string, seq int64, now []byte) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, d.typ...)
	dst = append(dst, `",`...)
	dst = appendGatewayFields(dst, taskID, seq, now)
	dst = append(dst, ',')
	dst = append(dst, d.json...)
	return append(dst, '}')
}
