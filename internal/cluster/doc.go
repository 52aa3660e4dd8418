// Package cluster lets several gateway replicas act as one: shared limits and quotas, task
// events in Redis Streams, cross-node cancel and subscribe, propagation, and node liveness.
package cluster
