// Package engine describes the swarm engines flowgate can run (sim, claude-flow-v2, claude-code,
// custom) and turns a validated request into an absolute command, an argv and fixed variables.
package engine
