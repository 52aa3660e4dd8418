package e2e

import (
	"bytes"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/client"
)

// A long task keeps only a window of its newest events in memory once they are stored
// (docs/performance.md, "A window on a running task's log"). A client resuming from far
// behind it, while the task runs and after it has ended (still retained), gets every event
// after afterSeq once, byte for byte as the live subscriber got it: the older part from the
// store, the rest from memory.
func TestResumeBehindTheLogWindow(t *testing.T) {
	for name, backend := range storeBackends(t) {
		t.Run(name, func(t *testing.T) {
			g := startGateway(t, gwOptions{dataDir: t.TempDir(), env: backend(t)})
			c := g.dial(t, g.UserToken)
			id := startSwarm(t, c, "window sim:pace=1ms sim:events=8000", nil)
			live := readEvents(t, c, id, 5000)

			// While it runs: from the start, through the live tail, to task_complete.
			c2 := g.dial(t, g.UserToken)
			early := subscribeFrom(t, c2, id, 0)
			rest, err := collect(c, id, 60*time.Second)
			if err != nil {
				t.Fatalf("live subscriber: %v after %d frames", err, len(live)+len(rest))
			}
			live = append(live, rest...)
			n := int64(len(live))
			checkSeqs(t, live, 1, n)
			if n < 8000 || live[n-1].Status != "success" {
				t.Fatalf("live stream: %d frames ending with %s", n, live[n-1].Raw)
			}
			same := func(t *testing.T, got []client.Message, from int64) {
				t.Helper()
				checkSeqs(t, got, from+1, n)
				for i, m := range got {
					if want := live[from+int64(i)].Raw; !bytes.Equal(m.Raw, want) {
						t.Fatalf("event %d differs from the live one:\n got %s\nwant %s", m.Seq, m.Raw, want)
					}
				}
			}
			same(t, early, 0)

			// Ended and still in memory: every resume point, either side of the window.
			for _, from := range []int64{0, 2500, n - 1500, n - 1} {
				same(t, subscribeFrom(t, c2, id, from), from)
			}
		})
	}
}
