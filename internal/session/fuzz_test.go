package session_test

import (
	"bytes"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/wstest"
)

const (
	fuzzMaxOps = 40
	// fuzzPause is long enough for an idle connection to park (microseconds suffice).
	fuzzPause = 10 * time.Millisecond
)

// Script operations: op = b % fuzzOps; the ops marked (arg) take the next byte as argument.
const (
	fzPing        = iota // an app ping with a fresh requestId
	fzPong               // (arg) a masked PONG control frame, arg%126 payload bytes
	fzCtrlPing           // (arg) a masked PING control frame, arg%126 payload bytes
	fzPause              // silence: the connection parks
	fzSplitPing          // (arg) an app ping written in two pieces, split at arg, a pause between
	fzUnknown            // a message of an unknown type, with a fresh requestId
	fzPongAndPing        // (arg) a pong and an app ping in a single write
	fzSplitPong          // (arg) a pong written in two pieces, a pause between
	fuzzOps
)

// FuzzInterleavedFrames drives one parked-capable session with a script of app messages,
// client control frames, pauses (the connection parks) and frames split across writes
// (the poller wakes on the first piece). Invariants: the server never closes the
// connection; every app ping gets exactly one pong with its requestId and every unknown
// message exactly one unknown_type error echoing its requestId, all in the order sent;
// every control ping gets one pong with its payload; afterwards the idle connection parks
// again, and when the client leaves the session ends once.
func FuzzInterleavedFrames(f *testing.F) {
	f.Add([]byte{fzPing})
	f.Add([]byte{fzPong, 5})
	f.Add([]byte{fzPong, 125, fzPing})
	f.Add([]byte{fzCtrlPing, 3})
	f.Add([]byte{fzPause, fzPing, fzPause, fzPing})
	f.Add([]byte{fzSplitPing, 1})
	f.Add([]byte{fzSplitPing, 7})
	f.Add([]byte{fzUnknown, fzPing, fzUnknown})
	f.Add([]byte{fzPongAndPing, 0})
	f.Add([]byte{fzSplitPong, 2, fzPing})
	f.Add([]byte{fzPause, fzPong, 0, fzPause, fzPong, 125, fzPause, fzSplitPong, 9, fzPause, fzCtrlPing, 1, fzPause, fzPing})
	f.Add([]byte{fzPause, fzSplitPing, 3, fzSplitPong, 4, fzPongAndPing, 77, fzUnknown, fzCtrlPing, 125, fzPause, fzSplitPing, 200})
	f.Add(bytes.Repeat([]byte{fzPause, fzPong, 17}, 8))

	e := newEnv(f, envConfig{mode: withPoller, quiet: true})
	f.Fuzz(func(t *testing.T, script []byte) {
		runScript(t, e, script)
	})
}

type expected struct{ typ, id string }

func runScript(t *testing.T, e *env, script []byte) {
	c := e.dial(t)
	var (
		want      []expected
		wantPongs [][]byte // payloads of our control pings
		gotPongs  [][]byte
		n         int
	)
	c.SetPongHandler(func(data string) error {
		gotPongs = append(gotPongs, []byte(data))
		return nil
	})
	pos := 0
	arg := func() byte {
		if pos < len(script) {
			pos++
			return script[pos-1]
		}
		return 0
	}
	split := func(b []byte, at byte) {
		i := 1 + int(at)%(len(b)-1)
		c.raw(t, b[:i])
		time.Sleep(fuzzPause)
		c.raw(t, b[i:])
	}
	pong := func(a byte) []byte { return wstest.ClientFrame(opPong, bytes.Repeat([]byte{a}, int(a)%126)) }
	ping := func() []byte {
		n++
		id := "p" + strconv.Itoa(n)
		want = append(want, expected{protocol.TypePong, id})
		return pingFrame(id)
	}
	for ops := 0; pos < len(script) && ops < fuzzMaxOps; ops++ {
		op := script[pos] % fuzzOps
		pos++
		switch op {
		case fzPing:
			c.raw(t, ping())
		case fzPong:
			c.raw(t, pong(arg()))
		case fzCtrlPing:
			a := arg()
			payload := bytes.Repeat([]byte{^a}, int(a)%126)
			wantPongs = append(wantPongs, payload)
			c.raw(t, wstest.ClientFrame(opPing, payload))
		case fzPause:
			time.Sleep(fuzzPause)
		case fzSplitPing:
			split(ping(), arg())
		case fzUnknown:
			n++
			id := "u" + strconv.Itoa(n)
			want = append(want, expected{protocol.TypeError, id})
			c.raw(t, wstest.ClientFrame(opText, []byte(`{"type":"fuzz-unknown","requestId":"`+id+`"}`)))
		case fzPongAndPing:
			c.raw(t, concat(pong(arg()), ping()))
		case fzSplitPong:
			a := arg()
			split(pong(a), a)
		}
	}
	want = append(want, expected{protocol.TypePong, "end"})
	c.raw(t, pingFrame("end"))

	var got []expected
	for len(got) < len(want) {
		r := c.next(t) // fails the iteration if the server closes the connection
		got = append(got, expected{r.Type, r.RequestID})
		if r.Type == protocol.TypeError && r.Code != protocol.CodeUnknownType {
			t.Fatalf("error reply %+v", r)
		}
		if r.RequestID == "end" {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("replies\n got %v\nwant %v", got, want)
	}
	// The server answered each control ping while reading, before it read the final ping.
	if !slices.EqualFunc(gotPongs, wantPongs, bytes.Equal) {
		t.Fatalf("control pongs\n got %d %v\nwant %d %v", len(gotPongs), gotPongs, len(wantPongs), wantPongs)
	}
	e.waitParked(t, 1)

	c.Close()
	e.waitEnded(t, c.id)
	waitFor(t, "the hub to forget the session", func() bool { return e.hub.Count() == 0 })
	if p := e.poller.Parked(); p != 0 {
		t.Fatalf("%d connections still parked after the session ended", p)
	}
}
