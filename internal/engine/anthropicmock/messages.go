package anthropicmock

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// messagesRequest is the part of a Messages API body the mock reads.
type messagesRequest struct {
	Model    string          `json:"model"`
	Messages []message       `json:"messages"`
	System   json.RawMessage `json:"system"`
	Tools    []toolDef       `json:"tools"`
	Stream   bool            `json:"stream"`
}

type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"` // a string or an array of blocks
}

type contentBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ToolUseID string          `json:"tool_use_id"`
	IsError   bool            `json:"is_error"`
	Content   json.RawMessage `json:"content"` // of a tool_result: a string or text blocks
}

type toolDef struct {
	Name        string `json:"name"`
	InputSchema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	} `json:"input_schema"`
}

// contentBlocks decodes a content field: a plain string is one text block; anything that is
// neither gives no blocks.
func contentBlocks(raw json.RawMessage) []contentBlock {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []contentBlock{{Type: "text", Text: s}}
	}
	var blocks []contentBlock
	if json.Unmarshal(raw, &blocks) != nil {
		return nil
	}
	return blocks
}

// answer is what the mock replies to one Messages request.
type answer struct {
	status  int // 0 for a message
	errType string
	errMsg  string

	blocks     []outBlock
	stopReason string
	slow       bool // stream the text in SlowEvents deltas, SlowDelay apart
}

// outBlock is one content block of the assistant message: text, or a tool_use with its input.
type outBlock struct {
	Type  string         `json:"type"`
	Text  string         `json:"text,omitempty"`
	ID    string         `json:"id,omitempty"`
	Name  string         `json:"name,omitempty"`
	Input map[string]any `json:"input,omitempty"`
}

func textAnswer(text string) answer {
	return answer{blocks: []outBlock{{Type: "text", Text: text}}, stopReason: "end_turn"}
}

func toolAnswer(text, name string, input map[string]any) answer {
	return answer{
		blocks: []outBlock{
			{Type: "text", Text: text},
			{Type: "tool_use", ID: "toolu_" + rand.Text(), Name: name, Input: input},
		},
		stopReason: "tool_use",
	}
}

func errorAnswer(status int, errType, msg string) answer {
	return answer{status: status, errType: errType, errMsg: msg}
}

// messages answers POST /v1/messages whose body has been read into rec.Body.
func (s *Server) messages(w http.ResponseWriter, r *http.Request, rec *Request, reqID string) int {
	var req messagesRequest
	if err := json.Unmarshal(rec.Body, &req); err != nil {
		return writeError(w, reqID, http.StatusBadRequest, errInvalidRequest, "invalid JSON body: "+err.Error())
	}
	rec.Model, rec.Stream = req.Model, req.Stream
	if req.Model == "" || len(req.Messages) == 0 {
		return writeError(w, reqID, http.StatusBadRequest, errInvalidRequest, "model and messages are required")
	}
	a := decide(&req, rec)
	if a.status != 0 {
		if a.status == http.StatusTooManyRequests {
			w.Header().Set("retry-after", "1")
		}
		return writeError(w, reqID, a.status, a.errType, a.errMsg)
	}
	m := newMessage(req.Model, estimateTokens(len(rec.Body)), a)
	if !req.Stream {
		if a.slow && !sleepCtx(r.Context(), time.Duration(SlowEvents)*s.opts.SlowDelay) {
			// The client left or Close ends the server: an error rather than the empty 200
			// net/http would send for a handler that wrote nothing. 499 is only for the log.
			writeError(w, reqID, http.StatusServiceUnavailable, errAPI, "anthropicmock: stopped before the answer was complete")
			return 499
		}
		return writeJSON(w, http.StatusOK, m.final(a))
	}
	delay := time.Duration(0)
	if a.slow {
		delay = s.opts.SlowDelay
	}
	n, err := streamMessage(r.Context(), w, m, a, delay)
	if a.slow && err != nil {
		s.logf("anthropicmock: slow stream stopped after %d events: %v", n, err)
	}
	return http.StatusOK
}

// decide picks the answer from the last user message and fills in rec's Prompt, Trigger and
// ToolResults. Only that message is searched: the system prompt is huge and quotes anything.
func decide(req *messagesRequest, rec *Request) answer {
	var last []contentBlock
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			last = contentBlocks(req.Messages[i].Content)
			break
		}
	}
	for _, b := range last {
		if b.Type == "tool_result" {
			rec.ToolResults = append(rec.ToolResults, ToolResult{
				ToolUseID: b.ToolUseID,
				IsError:   b.IsError,
				Content:   joinTexts(contentBlocks(b.Content)),
			})
		}
	}
	if len(rec.ToolResults) > 0 {
		return textAnswer(ToolResultText)
	}
	rec.Prompt = joinTexts(last)
	t, ok, err := findTrigger(rec.Prompt)
	if err != nil {
		return errorAnswer(http.StatusBadRequest, errInvalidRequest, err.Error())
	}
	if !ok {
		return textAnswer(DefaultText)
	}
	rec.Trigger = t.String()
	switch t.word {
	case TriggerUnauthorized:
		return errorAnswer(http.StatusUnauthorized, errAuthentication, "invalid x-api-key")
	case TriggerRateLimited:
		return errorAnswer(http.StatusTooManyRequests, errRateLimit,
			"This request would exceed your organization's rate limit. (flowgate mock)")
	case TriggerServerError:
		return errorAnswer(http.StatusInternalServerError, errAPI, "Internal server error")
	case TriggerOverloaded:
		return errorAnswer(statusOverloaded, errOverloaded, "Overloaded")
	case TriggerSlow:
		a := textAnswer(slowText())
		a.slow = true
		return a
	case TriggerEchoKey:
		return textAnswer(EchoKeyPrefix + rec.APIKey)
	case TriggerWrite:
		dir := workingDir(req)
		if dir == "" {
			return textAnswer("mock: the request states no working directory, so there is nowhere to write " + t.arg)
		}
		return toolAnswer("I will write "+t.arg+".", "Write", map[string]any{
			"file_path": filepath.Join(dir, t.arg),
			"content":   WriteContent,
		})
	case TriggerTask:
		name, input := subAgentTool(req.Tools)
		return toolAnswer("I will hand this to a sub-agent.", name, input)
	}
	return textAnswer(DefaultText) // unreachable: findTrigger knows only the words above
}

// slowText is SlowEvents words, one per delta.
func slowText() string {
	var b strings.Builder
	for i := range SlowEvents {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("tick")
	}
	return b.String()
}

// estimateTokens is the usual four bytes per token, never 0: clients treat 0 as "no usage".
func estimateTokens(bytes int) int {
	return max(1, (bytes+3)/4)
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
