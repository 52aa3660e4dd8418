// Package executor runs one task's engine in the sandbox with an allowlisted environment and
// streams its stdout and stderr line by line, bounded and redacted, until every process is gone.
package executor
