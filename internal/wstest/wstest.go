// Package wstest writes raw WebSocket client frames for tests that talk below gorilla: frames
// split across reads, control frames sent to a parked connection.
package wstest

import (
	"encoding/binary"
	"sync/atomic"
)

var maskSeq atomic.Uint32

// ClientFrame is a masked client frame (RFC 6455 §5.2) with FIN set. Each frame gets a
// different mask, as a browser's would, so a server that ignored the mask would read garbage.
func ClientFrame(opcode byte, payload []byte) []byte {
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	binary.BigEndian.PutUint32(mask[:], 0x9e3779b9*maskSeq.Add(1))
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}
