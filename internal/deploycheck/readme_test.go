package deploycheck

import (
	"strings"
	"testing"
)

// The README's Deployment section names every file of deploy/ (and the Dockerfile and the
// operations guide) on a line that also says when to use it.
func TestREADMEDeploymentSection(t *testing.T) {
	readme := string(readFile(t, "README.md"))
	_, section, ok := strings.Cut(readme, "\n## Deployment\n")
	if !ok {
		t.Fatal("README.md has no \"## Deployment\" section")
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	lines := strings.Split(section, "\n")
	want := append([]string{"Dockerfile", ".dockerignore", "docs/operations.md"}, deployFiles(t)...)
	for _, f := range want {
		var line string
		for _, l := range lines {
			if strings.Contains(l, "`"+f+"`") {
				line = l
				break
			}
		}
		if line == "" {
			t.Errorf("the Deployment section does not reference `%s`", f)
			continue
		}
		// "* `path` — when to use it": some words besides the path.
		rest := strings.TrimSpace(strings.Replace(line, "`"+f+"`", "", 1))
		if len(strings.Fields(strings.Trim(rest, "*-—: "))) < 3 {
			t.Errorf("`%s`: no line saying when to use it (%q)", f, line)
		}
	}
	// The seed deployed with PM2; there is no Go counterpart and the README says what replaces it.
	if !strings.Contains(section, "PM2") || !strings.Contains(section, "systemd") || !strings.Contains(section, "Kubernetes") {
		t.Error("the Deployment section does not say that systemd or Kubernetes take PM2's place")
	}
}
