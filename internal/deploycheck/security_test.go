package deploycheck

import (
	"regexp"
	"strings"
	"testing"
)

var citedTestRE = regexp.MustCompile("`([a-zA-Z0-9_./-]+_test\\.go)::((?:Test|Fuzz)[A-Za-z0-9_]+)`")

// SECURITY.md proves each control by naming a test; a renamed or deleted test must not leave
// the claim standing.
func TestSecurityCitesExistingTests(t *testing.T) {
	doc := string(readFile(t, "SECURITY.md"))
	cites := citedTestRE.FindAllStringSubmatch(doc, -1)
	if len(cites) < 50 {
		t.Fatalf("only %d test citations found in SECURITY.md; the pattern or the document changed", len(cites))
	}
	files := map[string]string{}
	for _, c := range cites {
		file, name := c[1], c[2]
		src, ok := files[file]
		if !ok {
			src = string(readFile(t, file))
			files[file] = src
		}
		if !strings.Contains(src, "\nfunc "+name+"(") {
			t.Errorf("SECURITY.md cites %s::%s, which does not exist", file, name)
		}
	}
}
