// Package sandbox starts one engine process tree so that no descendant outlives its task (a PID
// namespace under a flowgate init, or a process group) and confines it (Landlock, engine user).
package sandbox
