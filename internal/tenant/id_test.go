package tenant

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidIDMatchesRule(t *testing.T) {
	re := regexp.MustCompile(IDRule)
	for _, id := range []string{"", "a", "ab", "a-", "-a", "acme", "ACME", "a_b", "a.b", "9lives", strings.Repeat("a", 63), strings.Repeat("a", 64), "tenant-1", "ü-x", "a b"} {
		if got, want := ValidID(id), re.MatchString(id); got != want {
			t.Errorf("ValidID(%q) = %v; the rule says %v", id, got, want)
		}
	}
}

func FuzzValidID(f *testing.F) {
	re := regexp.MustCompile(IDRule)
	for _, s := range []string{"acme", "-x", "a", strings.Repeat("z", 63)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidID(id) != re.MatchString(id) {
			t.Fatalf("ValidID(%q) disagrees with %s", id, IDRule)
		}
	})
}
