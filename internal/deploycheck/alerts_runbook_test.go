package deploycheck

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// runbookBase is the one form every alert's runbook_url takes: the guide's copy in the
// repository, and an anchor.
const runbookBase = "https://github.com/flowgate/flowgate/blob/main/docs/operations.md#"

// heading is one Markdown heading of a document and the anchor GitHub gives it.
type heading struct {
	level  int
	text   string
	anchor string
}

// markdownHeadings lists the ATX headings of doc outside fenced code blocks, with GitHub's
// anchors: lower case, spaces to '-', every other character but letters, digits, '-' and '_'
// dropped, and "-1", "-2", … appended to repeats.
func markdownHeadings(doc string) []heading {
	var (
		out   []heading
		fence string
		seen  = map[string]int{}
	)
	for line := range strings.Lines(doc) {
		line = strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		level := len(trimmed) - len(strings.TrimLeft(trimmed, "#"))
		if level == 0 || level > 6 || len(line)-len(trimmed) > 3 {
			continue
		}
		rest := trimmed[level:]
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			continue // "#hashtag" is not a heading
		}
		text := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(rest), "#"))
		anchor := githubSlug(text)
		if n := seen[anchor]; n > 0 {
			seen[anchor]++
			anchor += "-" + strconv.Itoa(n)
		} else {
			seen[anchor] = 1
		}
		out = append(out, heading{level: level, text: text, anchor: anchor})
	}
	return out
}

func githubSlug(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-', r == '_', unicode.IsLetter(r), unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestGitHubSlug(t *testing.T) {
	for text, want := range map[string]string{
		"FlowgateTargetDown":         "flowgatetargetdown",
		"`flowgate doctor`":          "flowgate-doctor",
		"Docker Compose (one host)":  "docker-compose-one-host",
		"AWS IAM":                    "aws-iam",
		"systemd (bare metal or VM)": "systemd-bare-metal-or-vm",
		"snake_case and-dash":        "snake_case-and-dash",
	} {
		if got := githubSlug(text); got != want {
			t.Errorf("githubSlug(%q) = %q, want %q", text, got, want)
		}
	}
	hs := markdownHeadings("# A\n```sh\n# not a heading\n```\n## A\n#nope\n### B ###\n")
	var got []string
	for _, h := range hs {
		got = append(got, h.anchor)
	}
	if strings.Join(got, " ") != "a a-1 b" {
		t.Errorf("anchors %v, want [a a-1 b]", got)
	}
}

// Every alert links to its runbook: a section of docs/operations.md under "Alerts" named
// after the alert, and every runbook there belongs to an alert.
func TestAlertRunbooks(t *testing.T) {
	guide := string(readFile(t, "docs/operations.md"))
	anchors := map[string]heading{}
	inAlerts := map[string]bool{}
	section := ""
	for _, h := range markdownHeadings(guide) {
		anchors[h.anchor] = h
		if h.level <= 2 {
			section = h.text
		}
		if section == "Alerts" && h.level == 3 {
			inAlerts[h.anchor] = true
		}
	}
	if len(inAlerts) == 0 {
		t.Fatal(`docs/operations.md has no runbook sections under "## Alerts"`)
	}

	alerts := map[string]bool{}
	doc := yamlDocs(t, "deploy/prometheus/alerts.yml")[0]
	for _, g := range getList(doc, "groups") {
		for _, r := range getList(g, "rules") {
			name := getString(r, "alert")
			if name == "" {
				continue // a recording rule
			}
			url := getString(r, "annotations", "runbook_url")
			if url == "" {
				t.Errorf("%s: no annotations.runbook_url", name)
				continue
			}
			anchor, ok := strings.CutPrefix(url, runbookBase)
			if !ok {
				t.Errorf("%s: runbook_url %q does not start with %s", name, url, runbookBase)
				continue
			}
			alerts[anchor] = true
			if want := strings.ToLower(name); anchor != want {
				t.Errorf("%s: runbook anchor %q, want %q (a \"### %s\" heading)", name, anchor, want, name)
			}
			switch {
			case !inAlerts[anchor] && anchors[anchor].text != "":
				t.Errorf("%s: runbook #%s is not a section under \"## Alerts\"", name, anchor)
			case !inAlerts[anchor]:
				t.Errorf("%s: docs/operations.md has no heading with anchor #%s", name, anchor)
			}
		}
	}
	for a := range inAlerts {
		if !alerts[a] {
			t.Errorf("docs/operations.md: runbook #%s belongs to no alert in deploy/prometheus/alerts.yml", a)
		}
	}

	// The guide's own links to its sections resolve too.
	for _, m := range regexp.MustCompile(`\]\(#([^)\s]+)\)`).FindAllStringSubmatch(guide, -1) {
		if _, ok := anchors[m[1]]; !ok {
			t.Errorf("docs/operations.md links to #%s, which no heading defines", m[1])
		}
	}
}
