// Package executor runs one task's engine in the sandbox, confined to its own directory, with an
// allowlisted environment, streaming stdout and stderr bounded and redacted until all is gone.
package executor
