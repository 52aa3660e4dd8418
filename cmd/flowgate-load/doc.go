// Command flowgate-load drives a flowgate.v1 WebSocket server (flowgate, or the seed tutorial's
// Node server) with idle connections, streams, paced swarms and spawns; one JSON object per run.
package main
