package anthropicmock

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Trigger words. A prompt steers the mock by containing one of them in the last user message;
// the first trigger found wins. They are case-sensitive and the mock rejects an unknown
// "mock:…" word with 400, so a typo fails loudly instead of getting the default answer.
const (
	TriggerPrefix       = "mock:"
	TriggerUnauthorized = "mock:401"      // 401 authentication_error "invalid x-api-key"
	TriggerRateLimited  = "mock:429"      // 429 rate_limit_error, retry-after: 1
	TriggerServerError  = "mock:500"      // 500 api_error "Internal server error"
	TriggerOverloaded   = "mock:529"      // 529 overloaded_error "Overloaded"
	TriggerSlow         = "mock:slow"     // SlowEvents text deltas, SlowDelay apart
	TriggerWrite        = "mock:write"    // "mock:write NAME": a Write tool_use for <cwd>/NAME
	TriggerEchoKey      = "mock:echo-key" // a text answer that contains the API key verbatim
	TriggerTask         = "mock:task"     // a sub-agent tool_use (Agent, or Task in older CLIs)
)

// Texts of the answers, for assertions.
const (
	DefaultText    = "Hello from the flowgate Anthropic mock."
	ToolResultText = "mock: tool result received."
	EchoKeyPrefix  = "The API key this request carried is "
	WriteContent   = "written by the flowgate mock\n"
	// TaskPrompt is the prompt the sub-agent gets: no trigger, so it gets DefaultText.
	TaskPrompt = "Reply with a short greeting; this sub-agent task comes from the flowgate mock."
)

// trigger is a parsed trigger word: word is the full trigger ("mock:write"), arg its argument.
type trigger struct {
	word string
	arg  string
}

func (t trigger) String() string {
	if t.arg == "" {
		return t.word
	}
	return t.word + " " + t.arg
}

// findTrigger returns the first trigger in text; ok is false when there is none. An unknown
// word after "mock:" or a mock:write without a local file name is an error.
func findTrigger(text string) (t trigger, ok bool, err error) {
	i := strings.Index(text, TriggerPrefix)
	if i < 0 {
		return trigger{}, false, nil
	}
	rest := text[i+len(TriggerPrefix):]
	n := strings.IndexFunc(rest, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-'
	})
	if n < 0 {
		n = len(rest)
	}
	word := TriggerPrefix + rest[:n]
	switch word {
	case TriggerUnauthorized, TriggerRateLimited, TriggerServerError, TriggerOverloaded,
		TriggerSlow, TriggerEchoKey, TriggerTask:
		return trigger{word: word}, true, nil
	case TriggerWrite:
		fields := strings.Fields(rest[n:])
		if len(fields) == 0 || !filepath.IsLocal(fields[0]) {
			return trigger{}, false, fmt.Errorf("anthropicmock: %s needs a relative file name inside the working directory", TriggerWrite)
		}
		return trigger{word: word, arg: fields[0]}, true, nil
	default:
		return trigger{}, false, fmt.Errorf("anthropicmock: unknown trigger %q", word)
	}
}
