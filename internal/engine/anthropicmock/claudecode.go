package anthropicmock

import (
	"encoding/json"
	"slices"
	"strings"
)

// What the real Claude Code CLI 2.1.332 sends, observed by recording its requests (run with -p,
// --output-format stream-json, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1, model
// "claude-opus-5-5" by default):
//
//   - Only POST /v1/messages?beta=true, one per model turn, stream:true, max_tokens 128000,
//     x-api-key, anthropic-version 2023-06-01, a long anthropic-beta list, User-Agent
//     "claude-cli/2.1.332 (external, sdk-cli)". No HEAD /api/hello, count_tokens, title or
//     quota request in -p mode with that variable.
//   - system is an array of text blocks (a billing header, the agent line, the long prompt).
//   - messages[0] is the user message: a <system-reminder> text block, then the prompt as its
//     own text block. After it comes a message with role "system" (sic; its content a string or
//     text blocks) holding " - Primary working directory: /abs/cwd". A sub-agent's request has
//     that line in its system field instead, and older CLIs wrote "Working directory: /abs/cwd"
//     in an <env> block of the system prompt: every place and both forms are searched.
//   - The tools offered include Write {file_path, content} and the sub-agent tool, named
//     "Agent" (the init line still lists "Task"), with {description, prompt, subagent_type,
//     model, effort, run_in_background, isolation}. Only description and prompt are required;
//     run_in_background defaults to true, which the mock turns off so the turn waits for it.
//   - After a tool ran, the next request's last user message holds the tool_result: a string
//     for Write ("File created successfully at: …"), text blocks for Agent (the sub-agent's
//     final text inside a "[Subagent hand-back]" frame). mock:task thus costs three requests:
//     the parent's, the sub-agent's (same model, its prompt as the last user text), the
//     parent's follow-up.

// workingDir finds the working directory the CLI reported in the system prompt or in any
// message; "" when there is none.
func workingDir(req *messagesRequest) string {
	for _, text := range systemTexts(req.System) {
		if dir := workingDirIn(text); dir != "" {
			return dir
		}
	}
	for _, msg := range req.Messages {
		for _, b := range contentBlocks(msg.Content) {
			if b.Type != "text" {
				continue
			}
			if dir := workingDirIn(b.Text); dir != "" {
				return dir
			}
		}
	}
	return ""
}

// workingDirIn reads a "[- ][Primary ]Working directory: /abs" line, the current and the older
// way the CLI states it; only an absolute path counts.
func workingDirIn(text string) string {
	for line := range strings.Lines(text) {
		line = strings.TrimLeft(line, " \t-")
		for _, label := range []string{"Primary working directory:", "Working directory:"} {
			if rest, ok := strings.CutPrefix(line, label); ok {
				if dir := strings.TrimSpace(rest); strings.HasPrefix(dir, "/") {
					return dir
				}
			}
		}
	}
	return ""
}

// systemTexts returns the texts of a system field, which is a string or an array of text blocks.
func systemTexts(raw json.RawMessage) []string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}
	}
	var texts []string
	for _, b := range contentBlocks(raw) {
		if b.Type == "text" {
			texts = append(texts, b.Text)
		}
	}
	return texts
}

// subAgentTool picks the name of the CLI's sub-agent tool from the tools it offered, and the
// input to call it with. Only properties its schema declares are set: the schema forbids others.
func subAgentTool(tools []toolDef) (string, map[string]any) {
	name := "Task"
	var props map[string]json.RawMessage
	for _, candidate := range []string{"Agent", "Task"} {
		i := slices.IndexFunc(tools, func(t toolDef) bool { return t.Name == candidate })
		if i >= 0 {
			name, props = candidate, tools[i].InputSchema.Properties
			break
		}
	}
	input := map[string]any{
		"description":   "flowgate mock sub-agent",
		"prompt":        TaskPrompt,
		"subagent_type": "general-purpose",
	}
	if _, ok := props["run_in_background"]; ok {
		input["run_in_background"] = false
	}
	return name, input
}

// joinTexts joins the text blocks of content with newlines.
func joinTexts(blocks []contentBlock) string {
	var texts []string
	for _, b := range blocks {
		if b.Type == "text" {
			texts = append(texts, b.Text)
		}
	}
	return strings.Join(texts, "\n")
}
