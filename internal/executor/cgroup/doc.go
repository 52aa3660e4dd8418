// Package cgroup gives each engine a control group of its own, under the gateway's, with a
// memory and a process limit, on cgroup v2 or on the v1 memory and pids hierarchies.
package cgroup
