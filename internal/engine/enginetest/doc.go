// Package enginetest finds the real engine CLIs (Claude Code, claude-flow) that scripts/engines
// installed at the versions pinned in scripts/engines.env, for tests that run them.
package enginetest
