package deptest

import (
	"go/build"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/flowgate/flowgate"

// forbidden lists, for each package, the packages it must not depend on, directly or through
// anything it imports (test files excepted). The domain and serving layers get their
// persistence through interfaces they declare; only cmd/ wires internal/store in.
var forbidden = map[string][]string{
	"internal/session": {"internal/store"},
	"internal/task":    {"internal/store"},
	"internal/server":  {"internal/store"},
	"internal/admin":   {"internal/store"},
	"internal/tenant":  {"internal/store"},
	// The domain types stay leaves: the store imports them, so they must not import it.
	"internal/task/record": {"internal/store", "internal/task"},
}

// moduleRoot is the repository root, two levels above this file.
func moduleRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// deps returns every module package pkg depends on (non-test imports, transitively), and the
// standard library's "testing" if anything on the way imports it, each with the chain of
// imports that reaches it.
func deps(t *testing.T, root, pkg string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	var walk func(p string, path []string)
	walk = func(p string, path []string) {
		bp, err := build.Default.Import(module+"/"+p, filepath.Join(root, p), 0)
		if err != nil {
			t.Fatalf("import %s: %v", p, err)
		}
		for _, imp := range bp.Imports {
			if imp == "testing" { // recorded, not walked: no binary should link it
				out[imp] = append(slices.Clone(path), imp)
				continue
			}
			rel, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if _, seen := out[rel]; seen {
				continue
			}
			chain := append(slices.Clone(path), rel)
			out[rel] = chain
			walk(rel, chain)
		}
	}
	walk(pkg, []string{pkg})
	return out
}

func TestImportBoundaries(t *testing.T) {
	root := moduleRoot(t)
	for pkg, bad := range forbidden {
		d := deps(t, root, pkg)
		for _, b := range bad {
			if chain, ok := d[b]; ok {
				t.Errorf("%s depends on %s: %s", pkg, b, strings.Join(chain, " → "))
			}
		}
	}
}

// TestBoundaryCheckSeesViolations: the walk finds a known dependency, so a violation would
// not pass unseen (cmd/flowgate does import the store).
func TestBoundaryCheckSeesViolations(t *testing.T) {
	d := deps(t, moduleRoot(t), "cmd/flowgate")
	if _, ok := d["internal/store"]; !ok {
		t.Fatal("the walk does not see cmd/flowgate → internal/store; the boundary test would miss violations")
	}
	if chain := d["internal/tenant"]; len(chain) < 2 {
		t.Fatalf("no import chain recorded for internal/tenant: %v", chain)
	}
}

// TestBinariesLinkNoTestHelpers: the helper packages tests share (named *test: apitest,
// proctest, smtest…) may fake what production must not; no command under cmd/
// may link one, nor the "testing" package they use.
func TestBinariesLinkNoTestHelpers(t *testing.T) {
	root := moduleRoot(t)
	cmds, err := filepath.Glob(filepath.Join(root, "cmd", "*"))
	if err != nil || len(cmds) == 0 {
		t.Fatalf("no commands under cmd/: %v", err)
	}
	for _, dir := range cmds {
		pkg := "cmd/" + filepath.Base(dir)
		for dep, chain := range deps(t, root, pkg) {
			if dep == "testing" || strings.HasSuffix(filepath.Base(dep), "test") {
				t.Errorf("%s links the test helper %s: %s", pkg, dep, strings.Join(chain, " → "))
			}
		}
	}
}
