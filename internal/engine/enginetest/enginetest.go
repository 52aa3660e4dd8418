package enginetest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Versions are the pinned engine versions of scripts/engines.env.
type Versions struct {
	ClaudeCode string
	ClaudeFlow string
}

// RepoRoot walks up from the working directory to the directory holding go.mod.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("enginetest: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// PinnedVersions reads scripts/engines.env.
func PinnedVersions(tb testing.TB) Versions {
	tb.Helper()
	v, err := ReadVersions(filepath.Join(RepoRoot(tb), "scripts", "engines.env"))
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// ReadVersions parses an engines.env file (NAME=value lines, # comments).
func ReadVersions(path string) (Versions, error) {
	f, err := os.Open(path)
	if err != nil {
		return Versions{}, err
	}
	defer f.Close()
	var v Versions
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			return Versions{}, fmt.Errorf("%s: %q is not NAME=value", path, line)
		}
		switch name {
		case "CLAUDE_CODE_VERSION":
			v.ClaudeCode = val
		case "CLAUDE_FLOW_VERSION":
			v.ClaudeFlow = val
		}
	}
	if err := sc.Err(); err != nil {
		return Versions{}, err
	}
	if v.ClaudeCode == "" || v.ClaudeFlow == "" {
		return Versions{}, fmt.Errorf("%s: CLAUDE_CODE_VERSION and CLAUDE_FLOW_VERSION are required", path)
	}
	return v, nil
}

// Dir is where scripts/engines installs: $FLOWGATE_ENGINES_DIR, else
// ${XDG_CACHE_HOME:-~/.cache}/flowgate/engines.
func Dir() string {
	if d := os.Getenv("FLOWGATE_ENGINES_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "flowgate", "engines")
}

// ClaudeBin returns the absolute path of the pinned Claude Code CLI (bin/claude, a symlink into
// its npm package). Missing: the test fails when FLOWGATE_TEST_REQUIRE_SERVICES is set (CI
// installs it) and is skipped otherwise, naming the command that installs it.
func ClaudeBin(tb testing.TB) string {
	tb.Helper()
	v := PinnedVersions(tb)
	return find(tb, filepath.Join(Dir(), "claude-code-"+v.ClaudeCode), "claude")
}

// ClaudeFlowBin is ClaudeBin for claude-flow.
func ClaudeFlowBin(tb testing.TB) string {
	tb.Helper()
	v := PinnedVersions(tb)
	return find(tb, filepath.Join(Dir(), "claude-flow-"+v.ClaudeFlow), "claude-flow")
}

func find(tb testing.TB, prefix, name string) string {
	tb.Helper()
	bin := filepath.Join(prefix, "bin", name)
	if _, err := os.Stat(filepath.Join(prefix, ".installed")); err == nil {
		if _, err := os.Stat(bin); err == nil {
			return bin
		}
	}
	msg := fmt.Sprintf("the real %s CLI is not installed at %s: run scripts/engines", name, bin)
	if os.Getenv("FLOWGATE_TEST_REQUIRE_SERVICES") != "" {
		tb.Fatal(msg + " (FLOWGATE_TEST_REQUIRE_SERVICES is set)")
	}
	tb.Skip(msg)
	return ""
}
