package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/netpoll"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/session"
	"github.com/flowgate/flowgate/internal/task"
	"github.com/flowgate/flowgate/internal/validation"
	"github.com/flowgate/flowgate/internal/wstest"
)

// waitBound bounds every wait for a condition; conditions are polled, never assumed after a
// fixed sleep.
const waitBound = 10 * time.Second

// mode is how the hub reads idle connections.
type mode int

const (
	noPoller       mode = iota // a reader goroutine per connection
	withPoller                 // idle connections park
	pollerNoReader             // a poller, but Start gets no bufio.Reader: never parks
)

func (m mode) String() string {
	switch m {
	case noPoller:
		return "no-poller"
	case withPoller:
		return "poller"
	case pollerNoReader:
		return "poller-nil-reader"
	}
	return "?"
}

// envConfig is a test hub's configuration; zero fields take the defaults below.
type envConfig struct {
	mode            mode
	sweep           bool // run hub.Run (pings, deadline wake-ups, token expiry)
	maxMessageBytes int64
	pingInterval    time.Duration
	pongTimeout     time.Duration
	perSecond       int
	burst           int
	expiresIn       time.Duration // the principal's token lifetime
	quiet           bool          // discard the hub's logs
	metrics         session.Metrics
}

// env is one hub serving WebSocket sessions over an httptest server, as internal/server
// wires it: an Upgrader with ReadBufferSize 0 and a captured hijack reader, so a session
// can park its connection.
type env struct {
	hub    *session.Hub
	poller *netpoll.Poller // nil in noPoller mode
	srv    *httptest.Server
	audit  *fakeAudit

	mu   sync.Mutex
	ends map[string]*atomic.Int32 // session id → onEnd calls
}

func newEnv(tb testing.TB, cfg envConfig) *env {
	tb.Helper()
	if cfg.maxMessageBytes == 0 {
		cfg.maxMessageBytes = 64 << 10
	}
	if cfg.pingInterval == 0 {
		cfg.pingInterval = time.Minute
	}
	if cfg.pongTimeout == 0 {
		cfg.pongTimeout = 2 * time.Minute
	}
	if cfg.perSecond == 0 {
		cfg.perSecond = 1000
	}
	if cfg.burst == 0 {
		cfg.burst = 1000
	}
	if cfg.expiresIn == 0 {
		cfg.expiresIn = time.Hour
	}
	var out io.Writer = io.Discard
	if t, ok := tb.(*testing.T); ok && !cfg.quiet {
		out = t.Output()
	}
	e := &env{audit: &fakeAudit{}, ends: map[string]*atomic.Int32{}}
	opts := session.Options{
		Logger:    slog.New(slog.NewTextHandler(out, nil)),
		Tasks:     stubTasks{},
		Validator: validation.New(),
		SwarmLimits: validation.Limits{
			MaxObjectiveChars: 1000, MaxObjectiveBytes: 4000, MaxAgents: 20, MaxTimeoutSeconds: 3600,
			DefaultAgents: 3, DefaultTimeoutSeconds: 600, DefaultStrategy: "auto", DefaultMode: "centralized",
			Strategies: []string{"auto", "parallel", "sequential"}, Modes: []string{"centralized", "distributed"},
		},
		Audit:             e.audit,
		Version:           "test",
		MaxMessageBytes:   cfg.maxMessageBytes,
		PingInterval:      cfg.pingInterval,
		PongTimeout:       cfg.pongTimeout,
		WriteTimeout:      10 * time.Second,
		SendQueueMessages: 256,
		SendQueueBytes:    1 << 20,
		MaxSubscriptions:  10,
		MessagesPerSecond: cfg.perSecond,
		MessageBurst:      cfg.burst,
		Now:               time.Now,
		Metrics:           cfg.metrics,
	}
	stopPoller := func() {}
	if cfg.mode != noPoller {
		p, err := netpoll.New()
		if errors.Is(err, netpoll.ErrUnsupported) {
			tb.Skip("no netpoll on this platform: connections cannot park")
		}
		if err != nil {
			tb.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _ = p.Run(ctx) }()
		stopPoller = func() {
			cancel()
			<-p.Done()
		}
		opts.Poller, e.poller = p, p
	}
	e.hub = session.NewHub(opts)

	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	if cfg.sweep {
		go func() {
			defer close(runDone)
			e.hub.Run(runCtx)
		}()
	} else {
		close(runDone)
	}

	up := websocket.Upgrader{
		ReadBufferSize:  0, // gorilla then reads through the captured reader
		WriteBufferSize: 4096,
		Subprotocols:    []string{protocol.Name},
		CheckOrigin:     func(*http.Request) bool { return true },
	}
	expires := time.Now().Add(cfg.expiresIn)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &session.HijackReader{ResponseWriter: w}
		conn, err := up.Upgrade(cw, r, nil)
		if err != nil {
			return
		}
		br := cw.Reader()
		if cfg.mode == pollerNoReader {
			br = nil
		}
		id := session.NewID()
		calls := new(atomic.Int32)
		e.mu.Lock()
		e.ends[id] = calls
		e.mu.Unlock()
		p := &auth.Principal{
			Tenant: "acme", Subject: "alice", Permissions: []string{auth.PermSwarmExecute},
			ExpiresAt: expires, JTI: "j1",
		}
		e.hub.Start(context.Background(), conn, br, p, session.Meta{SessionID: id, IP: "127.0.0.1"}, func() { calls.Add(1) })
	}))

	tb.Cleanup(func() {
		stopRun()
		<-runDone
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		e.hub.Shutdown(ctx)
		stopPoller()
		e.srv.Close()
		if n := e.hub.Count(); n != 0 {
			tb.Errorf("hub still counts %d sessions after Shutdown", n)
		}
		// Shutdown may return before the last onEnd ran (see TestShutdownWaitsForOnEnd):
		// wait for every onEnd, then check that none ran twice.
		e.mu.Lock()
		ends := maps.Clone(e.ends)
		e.mu.Unlock()
		for id, n := range ends {
			deadline := time.Now().Add(waitBound)
			for n.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
			if got := n.Load(); got != 1 {
				tb.Errorf("session %s: onEnd called %d times, want exactly 1", id, got)
			}
		}
	})
	return e
}

// endCount is how many times the session's onEnd ran.
func (e *env) endCount(id string) int32 {
	e.mu.Lock()
	n := e.ends[id]
	e.mu.Unlock()
	if n == nil {
		return -1
	}
	return n.Load()
}

// waitEnded waits for the session to end: onEnd ran and the hub no longer counts it.
func (e *env) waitEnded(tb testing.TB, id string) {
	tb.Helper()
	waitFor(tb, "session "+id+" to end", func() bool { return e.endCount(id) >= 1 })
	if n := e.endCount(id); n != 1 {
		tb.Fatalf("onEnd called %d times, want 1", n)
	}
}

// waitParked waits until the poller holds n parked connections.
func (e *env) waitParked(tb testing.TB, n int) {
	tb.Helper()
	if e.poller == nil {
		tb.Fatal("waitParked without a poller")
	}
	waitFor(tb, "parked connections to reach "+strconv.Itoa(n), func() bool { return e.poller.Parked() == n })
}

// closeRecord is the session.close audit record of a session.
func (e *env) closeRecord(tb testing.TB, id string) (code int, reason string) {
	tb.Helper()
	for _, r := range e.audit.records() {
		if r.Action == audit.ActionSessionClose && r.SessionID == id {
			c, _ := r.Details["code"].(int)
			return c, r.Reason
		}
	}
	tb.Fatalf("no %s record for session %s", audit.ActionSessionClose, id)
	return 0, ""
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", waitBound, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// client is one test connection; all its reads and writes happen on the test's goroutine
// unless a test says otherwise.
type client struct {
	*websocket.Conn
	id      string // the session id of the welcome frame
	welcome reply
}

// reply is the subset of server frames the tests look at.
type reply struct {
	Type         string   `json:"type"`
	RequestID    string   `json:"requestId"`
	Code         string   `json:"code"`
	Error        string   `json:"error"`
	RetryAfterMs int64    `json:"retryAfterMs"`
	SessionID    string   `json:"sessionId"`
	Status       string   `json:"status"`
	Protocol     string   `json:"protocol"`
	Tenant       string   `json:"tenant"`
	User         string   `json:"user"`
	Permissions  []string `json:"permissions"`
	ServerTime   string   `json:"serverTime"`
}

// dial opens a session and reads its welcome frame. The connection is closed when tb ends.
func (e *env) dial(tb testing.TB) *client {
	tb.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol.Name}, HandshakeTimeout: waitBound}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(e.srv.URL, "http"), nil)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	tb.Cleanup(func() { conn.Close() })
	c := &client{Conn: conn}
	c.welcome = c.next(tb)
	if c.welcome.Type != protocol.TypeConnection {
		tb.Fatalf("first frame is %+v, want a %q frame", c.welcome, protocol.TypeConnection)
	}
	c.id = c.welcome.SessionID
	return c
}

// next reads the next text frame (control frames are handled inside).
func (c *client) next(tb testing.TB) reply {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitBound))
	mt, data, err := c.ReadMessage()
	if err != nil {
		tb.Fatalf("read: %v", err)
	}
	if mt != websocket.TextMessage {
		tb.Fatalf("server sent a frame of type %d", mt)
	}
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		tb.Fatalf("server frame %q: %v", data, err)
	}
	return r
}

// expectClose reads until the server closes the connection and returns its close frame.
func (c *client) expectClose(tb testing.TB) *websocket.CloseError {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitBound))
	for {
		_, data, err := c.ReadMessage()
		if err == nil {
			tb.Logf("frame before the close: %s", data)
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			tb.Fatalf("connection ended without a close frame: %v", err)
		}
		return ce
	}
}

// raw writes bytes straight to the socket, bypassing gorilla.
func (c *client) raw(tb testing.TB, b []byte) {
	tb.Helper()
	_ = c.UnderlyingConn().SetWriteDeadline(time.Now().Add(waitBound))
	if _, err := c.UnderlyingConn().Write(b); err != nil {
		tb.Fatalf("raw write: %v", err)
	}
}

// expectPongs reads one app pong per id, in order.
func (c *client) expectPongs(tb testing.TB, ids ...string) {
	tb.Helper()
	for _, id := range ids {
		r := c.next(tb)
		if r.Type != protocol.TypePong || r.RequestID != id {
			tb.Fatalf("got %+v, want the pong to requestId %q", r, id)
		}
		if r.ServerTime == "" {
			tb.Fatalf("pong %q has no serverTime", id)
		}
	}
}

const (
	opText   = websocket.TextMessage
	opBinary = websocket.BinaryMessage
	opClose  = websocket.CloseMessage
	opPing   = websocket.PingMessage
	opPong   = websocket.PongMessage
)

func pingJSON(id string) []byte { return []byte(`{"type":"ping","requestId":"` + id + `"}`) }

func pingFrame(id string) []byte { return wstest.ClientFrame(opText, pingJSON(id)) }

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// fakeAudit keeps what it is given.
type fakeAudit struct {
	closeDelay atomic.Int64 // nanoseconds each session.close record takes to write

	mu   sync.Mutex
	recs []audit.Record
}

func (a *fakeAudit) Record(_ context.Context, r audit.Record) error {
	if d := time.Duration(a.closeDelay.Load()); d > 0 && r.Action == audit.ActionSessionClose {
		time.Sleep(d)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
	return nil
}

func (a *fakeAudit) records() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.recs...)
}

// stubTasks is a task manager that refuses everything; ping never reaches it.
type stubTasks struct{}

var errNoTasks = errors.New("stub: no task manager")

func (stubTasks) Create(context.Context, *auth.Principal, task.Request, task.Meta) (*task.Task, error) {
	return nil, errNoTasks
}
func (stubTasks) Attach(*task.Task, *auth.Principal, task.Subscriber) *task.Subscription {
	return nil
}
func (stubTasks) Subscribe(context.Context, *auth.Principal, string, int64, task.Subscriber) (*task.Subscription, error) {
	return nil, errNoTasks
}
func (stubTasks) Status(context.Context, *auth.Principal, string) (task.Snapshot, error) {
	return task.Snapshot{}, errNoTasks
}
func (stubTasks) Cancel(context.Context, *auth.Principal, string, task.Meta) error { return errNoTasks }
func (stubTasks) List(context.Context, *auth.Principal) ([]task.Snapshot, error) {
	return nil, errNoTasks
}
func (stubTasks) Draining() bool { return false }

var _ session.Tasks = stubTasks{}
