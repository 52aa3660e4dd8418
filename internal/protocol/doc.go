// Package protocol defines the flowgate.v1 wire format: the JSON messages a client and the
// gateway exchange over a WebSocket, strict decoding of client frames, and the error codes.
package protocol
