// Package sandbox starts one engine process tree so that no descendant outlives its task: a PID
// namespace with a flowgate init as PID 1 where possible, a process group under a subreaper otherwise.
package sandbox
