// Package ratelimit provides bounded, sharded, keyed token buckets (per user, tenant, IP) and
// keyed concurrency counters for caps on connections and running tasks.
package ratelimit
