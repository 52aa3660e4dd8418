// Package task owns swarm tasks: their lifecycle, ownership, the seq-numbered event log that
// subscribers replay and follow, quotas and the executor pool, detach and timeouts.
package task
