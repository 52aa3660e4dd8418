package anthropicmock

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
	"unicode/utf8"
)

// Error types of the real API's error bodies.
const (
	errInvalidRequest = "invalid_request_error"
	errAuthentication = "authentication_error"
	errNotFound       = "not_found_error"
	errTooLarge       = "request_too_large"
	errRateLimit      = "rate_limit_error"
	errAPI            = "api_error"
	errOverloaded     = "overloaded_error"

	statusOverloaded = 529 // the API's own status; net/http has no name for it
)

// writeError sends the real API's error shape:
// {"type":"error","error":{"type":…,"message":…},"request_id":"req_…"}.
func writeError(w http.ResponseWriter, reqID string, status int, errType, msg string) int {
	return writeJSON(w, status, map[string]any{
		"type":       "error",
		"error":      map[string]string{"type": errType, "message": msg},
		"request_id": reqID,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	body := mustJSON(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body+"\n") // a client that hung up is not an error of the mock
	return status
}

// usage is the API's usage object; the cache fields are always present in real answers.
type usage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

// apiMessage is the assistant message, as message_start carries it (content empty, no stop
// reason) or as a non-streamed answer returns it.
type apiMessage struct {
	ID           string  `json:"id"`
	Type         string  `json:"type"`
	Role         string  `json:"role"`
	Model        string  `json:"model"`
	Content      []any   `json:"content"`
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        usage   `json:"usage"`
	outputTokens int     // of the whole answer, reported at the end
}

func newMessage(model string, inputTokens int, a answer) *apiMessage {
	out := 0
	for _, b := range a.blocks {
		switch b.Type {
		case "text":
			out += estimateTokens(len(b.Text))
		case "tool_use":
			out += estimateTokens(len(mustJSON(b.Input)))
		}
	}
	return &apiMessage{
		ID:           "msg_" + rand.Text(),
		Type:         "message",
		Role:         "assistant",
		Model:        model,
		Content:      []any{},
		Usage:        usage{InputTokens: inputTokens, OutputTokens: 1},
		outputTokens: out,
	}
}

// final is the complete message of a non-streamed answer.
func (m *apiMessage) final(a answer) *apiMessage {
	f := *m
	f.Content = make([]any, len(a.blocks))
	for i, b := range a.blocks {
		f.Content[i] = blockJSON(b, true)
	}
	f.StopReason = &a.stopReason
	f.Usage.OutputTokens = m.outputTokens
	return &f
}

// blockJSON is a content block as the API writes it; full=false is the content_block_start
// form, whose text is "" and whose tool input is {} until the deltas fill them.
func blockJSON(b outBlock, full bool) map[string]any {
	switch b.Type {
	case "tool_use":
		input := map[string]any{}
		if full {
			input = b.Input
		}
		return map[string]any{"type": "tool_use", "id": b.ID, "name": b.Name, "input": input}
	default:
		text := ""
		if full {
			text = b.Text
		}
		return map[string]any{"type": "text", "text": text}
	}
}

// streamMessage writes the answer as the API's SSE stream, flushing every event. delay > 0
// waits that long before every delta. It returns the number of events written and why it
// stopped early: ctx ending (client gone, Close) or a failed write.
func streamMessage(ctx context.Context, w http.ResponseWriter, m *apiMessage, a answer, delay time.Duration) (int, error) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	events := 0
	send := func(event string, data any) error {
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, mustJSON(data)); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil {
			return err
		}
		events++
		return nil
	}
	if err := send("message_start", map[string]any{"type": "message_start", "message": m}); err != nil {
		return events, err
	}
	for i, b := range a.blocks {
		if err := send("content_block_start", map[string]any{
			"type": "content_block_start", "index": i, "content_block": blockJSON(b, false),
		}); err != nil {
			return events, err
		}
		if i == 0 {
			if err := send("ping", map[string]string{"type": "ping"}); err != nil {
				return events, err
			}
		}
		for _, delta := range deltas(b, a.slow) {
			if delay > 0 && !sleepCtx(ctx, delay) {
				return events, ctx.Err()
			}
			if err := ctx.Err(); err != nil {
				return events, err
			}
			if err := send("content_block_delta", map[string]any{
				"type": "content_block_delta", "index": i, "delta": delta,
			}); err != nil {
				return events, err
			}
		}
		if err := send("content_block_stop", map[string]any{"type": "content_block_stop", "index": i}); err != nil {
			return events, err
		}
	}
	if err := send("message_delta", map[string]any{
		"type":  "message_delta",
		"delta": map[string]any{"stop_reason": a.stopReason, "stop_sequence": nil},
		"usage": map[string]int{"output_tokens": m.outputTokens},
	}); err != nil {
		return events, err
	}
	return events, send("message_stop", map[string]string{"type": "message_stop"})
}

// deltas splits a block into content_block_delta payloads: text_delta chunks of a few words
// (one word each when slow), or input_json_delta chunks of the tool input's JSON.
func deltas(b outBlock, slow bool) []map[string]string {
	var out []map[string]string
	if b.Type == "tool_use" {
		for _, chunk := range chunkRunes(mustJSON(b.Input), 24) {
			out = append(out, map[string]string{"type": "input_json_delta", "partial_json": chunk})
		}
		return out
	}
	words := 3
	if slow {
		words = 1
	}
	for _, chunk := range chunkWords(b.Text, words) {
		out = append(out, map[string]string{"type": "text_delta", "text": chunk})
	}
	return out
}

// chunkWords splits text after every n-th space, so the chunks concatenate back to text.
func chunkWords(text string, n int) []string {
	var chunks []string
	for text != "" {
		end, seen := len(text), 0
		for i, r := range text {
			if r == ' ' {
				if seen++; seen == n {
					end = i + 1
					break
				}
			}
		}
		chunks = append(chunks, text[:end])
		text = text[end:]
	}
	return chunks
}

// chunkRunes splits s into pieces of at most n bytes without cutting a UTF-8 sequence, which
// would turn into U+FFFD once the piece is JSON-encoded.
func chunkRunes(s string, n int) []string {
	var chunks []string
	for s != "" {
		end := min(n, len(s))
		for end < len(s) && !utf8.RuneStart(s[end]) {
			end++
		}
		chunks = append(chunks, s[:end])
		s = s[end:]
	}
	return chunks
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil { // only the mock's own values get here
		panic(fmt.Sprintf("anthropicmock: marshal: %v", err))
	}
	return string(b)
}
