package tenantid

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidMatchesRule(t *testing.T) {
	re := regexp.MustCompile(Rule)
	for _, id := range []string{"", "a", "ab", "a-", "-a", "acme", "ACME", "a_b", "a.b", "9lives", strings.Repeat("a", 63), strings.Repeat("a", 64), "tenant-1", "ü-x", "a b"} {
		if got, want := Valid(id), re.MatchString(id); got != want {
			t.Errorf("Valid(%q) = %v; the rule says %v", id, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	re := regexp.MustCompile(Rule)
	for _, s := range []string{"acme", "-x", "a", strings.Repeat("z", 63)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if Valid(id) != re.MatchString(id) {
			t.Fatalf("Valid(%q) disagrees with %s", id, Rule)
		}
	})
}
