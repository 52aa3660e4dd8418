// Package anthropicmock is flowgate's own mock of the Anthropic Messages API on 127.0.0.1, for tests
// that run the real Claude Code CLI (and claude-flow) and steer its answers with mock:… trigger words.
package anthropicmock
