// Package sim is the bundled simulated engine (flowgate engine-sim): deterministic Claude-Code and
// claude-flow shaped stream-json with knobs to fail, hang, ignore SIGTERM or spawn a setsid grandchild.
package sim
