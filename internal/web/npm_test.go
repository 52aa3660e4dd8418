package web

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated files of internal/web/npm")

// topLevelExport matches the export forms flowgate.js uses; cjsFromESM refuses any other.
var topLevelExport = regexp.MustCompile(`^export (?:(?:async )?function\*? |class |const |let )([A-Za-z_$][\w$]*)`)

// cjsFromESM turns the SDK's ES module into CommonJS: the same code, its exports gathered into
// module.exports. The SDK has no imports; any construct the rewrite does not know (an import,
// export lists, import.meta) is an error, so the package cannot drift silently from its source.
func cjsFromESM(src []byte) ([]byte, error) {
	var out bytes.Buffer
	out.WriteString("'use strict';\n// Generated from flowgate.mjs (the one source) by\n" +
		"// `go test ./internal/web -run TestNPMPackage -update`. Do not edit.\n")
	var names []string
	def := ""
	for i, line := range strings.SplitAfter(string(src), "\n") {
		trimmed := strings.TrimRight(line, "\n")
		switch {
		case strings.Contains(trimmed, "import.meta") || strings.Contains(trimmed, "import("):
			return nil, fmt.Errorf("flowgate.mjs:%d: %q has no CommonJS rewrite", i+1, trimmed)
		case topLevelExport.MatchString(trimmed):
			names = append(names, topLevelExport.FindStringSubmatch(trimmed)[1])
			out.WriteString(strings.TrimPrefix(line, "export "))
		case strings.HasPrefix(trimmed, "export default "):
			def = strings.TrimSuffix(strings.TrimPrefix(trimmed, "export default "), ";")
		case strings.HasPrefix(trimmed, "export") || strings.HasPrefix(trimmed, "import "):
			return nil, fmt.Errorf("flowgate.mjs:%d: %q has no CommonJS rewrite", i+1, trimmed)
		default:
			out.WriteString(line)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("flowgate.mjs exports nothing")
	}
	fmt.Fprintf(&out, "\nmodule.exports = { %s };\n", strings.Join(names, ", "))
	if def != "" {
		fmt.Fprintf(&out, "module.exports.default = %s;\n", def)
	}
	return out.Bytes(), nil
}

// TestNPMPackage: internal/web/npm is the npm package of the SDK. flowgate.mjs is the one
// source (the gateway serves it as /sdk/flowgate.js); its CommonJS twin and the CommonJS
// declarations are generated from it (DESIGN §19); the version is the source's VERSION.
func TestNPMPackage(t *testing.T) {
	src, err := os.ReadFile("npm/flowgate.mjs")
	if err != nil {
		t.Fatal(err)
	}
	dts, err := os.ReadFile("npm/flowgate.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	cjs, err := cjsFromESM(src)
	if err != nil {
		t.Fatal(err)
	}
	// flowgate.d.cts repeats the declarations for require(): with "type": "module", TypeScript
	// reads a .d.ts as ESM, and CommonJS consumers need their own file.
	want := map[string][]byte{"flowgate.cjs": cjs, "flowgate.d.cts": dts}
	for name, data := range want {
		p := filepath.Join("npm", name)
		if *update {
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s is not what flowgate.mjs makes of it (%v): run go test ./internal/web -run TestNPMPackage -update", p, err)
		}
	}
	ver, err := SDKVersion(src)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("npm/package.json")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Version string
		Files   []string
		Exports map[string]json.RawMessage
	}
	if err := json.Unmarshal(raw, &pkg); err != nil {
		t.Fatal(err)
	}
	if pkg.Version != ver {
		t.Errorf("npm/package.json version %s; flowgate.mjs says %s", pkg.Version, ver)
	}
	for _, f := range pkg.Files {
		if _, err := os.Stat(filepath.Join("npm", f)); err != nil {
			t.Errorf("package.json lists %s: %v", f, err)
		}
	}
}

func TestCJSRewriteRefusesWhatItDoesNotKnow(t *testing.T) {
	for _, src := range []string{
		"import x from 'y';\nexport const A = 1;\n",
		"const A = 1;\nexport { A };\n",
		"export const A = import.meta.url;\n",
		"const A = 1;\n",
	} {
		if _, err := cjsFromESM([]byte(src)); err == nil {
			t.Errorf("rewrote %q", src)
		}
	}
	out, err := cjsFromESM([]byte("export const A = 1;\nexport async function b() {}\nexport class C {}\nexport default C;\n"))
	if err != nil || !strings.Contains(string(out), "module.exports = { A, b, C };\nmodule.exports.default = C;\n") ||
		strings.Contains(string(out), "export ") {
		t.Fatalf("rewrite = %s (%v)", out, err)
	}
}
