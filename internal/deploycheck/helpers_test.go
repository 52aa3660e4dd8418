package deploycheck

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flowgate/flowgate/internal/config"
)

// root is the repository root, from this package's directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", dir, err)
	}
	return dir
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// deployFiles lists every file under deploy/, as slash paths relative to the repository root.
func deployFiles(t *testing.T) []string {
	t.Helper()
	base := root(t)
	var files []string
	err := filepath.WalkDir(filepath.Join(base, "deploy"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(base, path)
		if err != nil {
			return err
		}
		// Generated secrets (gitignored) are not part of the tree.
		if strings.HasPrefix(filepath.ToSlash(rel), "deploy/compose/secrets/") && d.Name() != ".gitignore" {
			return nil
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatal("no files under deploy/")
	}
	return files
}

// yamlDocs decodes every document of a (multi-document) YAML file.
func yamlDocs(t *testing.T, rel string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, rel)))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}

// get walks a decoded YAML/JSON tree: get(v, "spec", "template", "spec").
func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func getMap(v any, path ...string) map[string]any {
	m, _ := get(v, path...).(map[string]any)
	return m
}

func getList(v any, path ...string) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func getString(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func getBool(v any, path ...string) (value, set bool) {
	b, ok := get(v, path...).(bool)
	return b, ok
}

func getInt(v any, path ...string) (int, bool) {
	switch n := get(v, path...).(type) {
	case int:
		return n, true
	case float64:
		return int(n), true
	}
	return 0, false
}

func strs(l []any) []string {
	out := make([]string, 0, len(l))
	for _, v := range l {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// loadConfig parses a flowgate config file the way `flowgate serve --config` does (unknown keys
// are errors, every value validated), with env as the environment.
func loadConfig(t *testing.T, rel string, env map[string]string) config.Config {
	t.Helper()
	cfg, err := config.Load(readFile(t, rel), func(k string) string { return env[k] }, false)
	if err != nil {
		t.Fatalf("%s does not load: %v", rel, err)
	}
	return cfg
}

// envKeys is the set of FLOWGATE_* variables the configuration understands.
func envKeys() map[string]bool {
	keys := map[string]bool{}
	for _, k := range config.Keys() {
		keys[config.EnvName(k)] = true
	}
	return keys
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
	buildLog  []byte
)

// binary builds cmd/flowgate once for the package.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flowgate-deploycheck-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "flowgate")
		cmd := exec.Command("go", "build", "-o", buildBin, "github.com/flowgate/flowgate/cmd/flowgate")
		cmd.Dir = filepath.Join("..", "..")
		buildLog, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build flowgate: %v\n%s", buildErr, buildLog)
	}
	return buildBin
}

var flagRE = regexp.MustCompile(`(?m)^\s+-([a-zA-Z0-9][a-zA-Z0-9-]*)`)

// commandFlags returns the flags `flowgate <sub> -h` prints.
func commandFlags(t *testing.T, sub ...string) map[string]bool {
	t.Helper()
	cmd := exec.Command(binary(t), append(sub, "-h")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("flowgate %v -h did not exit", sub)
	}
	flags := map[string]bool{}
	for _, m := range flagRE.FindAllStringSubmatch(out.String(), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("flowgate %s -h lists no flags:\n%s", strings.Join(sub, " "), out.String())
	}
	return flags
}

// checkInvocation asserts that argv (after the binary) names a real subcommand and only flags
// that subcommand has.
func checkInvocation(t *testing.T, where string, argv []string) {
	t.Helper()
	if len(argv) == 0 {
		t.Errorf("%s: no subcommand", where)
		return
	}
	sub := argv[0]
	flags := commandFlags(t, sub)
	for _, a := range argv[1:] {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !flags[name] {
			t.Errorf("%s: flowgate %s has no flag %q (has %v)", where, sub, a, keys(flags))
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// tool finds an external checker (nginx, openssl, systemd-analyze) on PATH or at one of the
// given paths. Missing, the test skips on a developer's machine but fails in CI
// (FLOWGATE_TEST_REQUIRE_SERVICES), where .ci/run installs them: a check that silently stops
// running there would let the files it guards rot.
func tool(t *testing.T, name string, paths ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("FLOWGATE_TEST_REQUIRE_SERVICES") != "" {
		t.Fatalf("%s not installed (FLOWGATE_TEST_REQUIRE_SERVICES is set)", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}
