package session

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/task"
)

// Meta is where a session came from, for audit records and logs.
type Meta struct {
	IP        string
	Origin    string
	UserAgent string
	RequestID string
	// SessionID, when set, is the id the handshake already recorded in session.open.
	SessionID string
}

// Session is one connection. Its reader runs on a goroutine of its own while the client
// sends; when the client is idle and the hub has a poller, the reader parks the connection
// (no goroutine) until it is readable again. Its writer is started on demand when there is
// something to send and ends when there is nothing left. An idle connection therefore
// holds no goroutine at all (one when the platform cannot park).
type Session struct {
	id        string
	hub       *Hub
	opts      *Options
	conn      *websocket.Conn
	meta      Meta
	connected time.Time // when the hub took it: the admin API's connectedAt
	principal atomic.Pointer[auth.Principal]
	onEnd     func()

	// park is the connection's parking side (nil when it cannot park). A connection parks
	// only when gorilla's buffer holds nothing, so every byte the client sent is still in
	// the socket.
	park *parkConn

	mu         sync.Mutex
	queue      [][]byte
	queueBytes int
	subs       map[string]*task.Subscription
	// The writer's schedule: writing while a writer runs; dirty when work arrived during its
	// pass (it goes round again); pingDue when the sweep asked for a ping.
	writing, dirty, pingDue bool
	nextPing                time.Time
	// life is where the connection is; closeCode and closeReason are the close it ends with.
	life        lifecycle
	closeCode   int
	closeReason string
	// readDeadline is when the reader gives up on the client (no pong, no close reply).
	// It lives here, not only on the socket, because a parked connection has no reader:
	// the hub's sweep wakes it once the deadline has passed.
	readDeadline time.Time

	writer sync.WaitGroup

	// Reader-goroutine state.
	msgLimiter     *rate.Limiter
	lastDenyAudit  time.Time
	deniedSinceLog int
}

// lifecycle is where a session's connection is. It only moves forward: open → closing (a
// close frame is due; the writer sends it next, dropping what is queued) → closeSent (waiting
// for the peer's answer, or the deadline) → ended (the connection is gone: nothing is
// written any more). A connection can also end from open or closing (the peer vanished, a
// write failed).
type lifecycle uint8

const (
	lifeOpen lifecycle = iota
	lifeClosing
	lifeCloseSent
	lifeEnded
)

// ID is the session id sent in the welcome frame.
func (s *Session) ID() string { return s.id }

// Principal is the identity the session currently speaks for (reauth may refresh it).
func (s *Session) Principal() *auth.Principal { return s.principal.Load() }

// Start runs a session on an upgraded connection and returns at once: the HTTP handler's
// goroutine and the request it holds are released. The session's reader is owned by the hub
// (Shutdown waits for it). br is the buffered reader the connection was upgraded with, or
// nil if unknown (the connection then never parks). When the session ends it releases
// everything it held — subscriptions (detaching the tasks they watched), the writer, the
// connection — and then calls onEnd. The caller has already authenticated p and recorded
// session.open.
func (h *Hub) Start(ctx context.Context, conn *websocket.Conn, br *bufio.Reader, p *auth.Principal, meta Meta, onEnd func()) {
	o := &h.opts
	id := meta.SessionID
	if id == "" {
		id = NewID()
	}
	s := &Session{
		id:         id,
		hub:        h,
		opts:       o,
		conn:       conn,
		meta:       meta,
		onEnd:      onEnd,
		subs:       map[string]*task.Subscription{},
		msgLimiter: rate.NewLimiter(rate.Limit(o.MessagesPerSecond), o.MessageBurst),
	}
	s.principal.Store(p)
	// Everything the hub's sweep and its Close* may touch is set before the session is
	// registered: from then on they can reach it.
	now := o.Now()
	s.connected = now
	s.nextPing = now.Add(o.PingInterval)
	s.readDeadline = now.Add(o.PongTimeout)
	conn.SetReadLimit(o.MaxMessageBytes)
	conn.SetPongHandler(func(string) error {
		s.extendDeadline()
		return nil
	})
	s.park = newParkConn(h.poll, conn, br)
	if !h.add(s) {
		if s.park != nil {
			s.park.h.Close()
		}
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(protocol.CloseGoingAway, protocol.ReasonShutdown), time.Now().Add(time.Second))
		conn.Close()
		onEnd()
		return
	}
	o.metric(func(m Metrics) { m.SessionOpened() })
	s.send(protocol.Connection{
		Type: protocol.TypeConnection, SessionID: s.id, Status: "connected", Version: o.Version,
		Protocol: protocol.Name, Tenant: p.Tenant, User: p.Subject, Permissions: p.Permissions,
		ExpiresAt: protocol.Time(p.ExpiresAt), Limits: o.PublicLimits, ServerTime: protocol.Time(now),
	})
	go s.serve(ctx)
}

// serve is the reader: it runs until the session ends, or until it parks the connection
// (then the poller starts serve again when the client sends something).
func (s *Session) serve(ctx context.Context) {
	code, parked := s.readLoop(ctx)
	if !parked {
		s.end(ctx, code)
	}
}

// NewID returns a fresh session id (128 random bits, hex).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readLoop reads frames until the connection ends, and returns the close code to report,
// or until it parks the connection (parked true: the session lives on without a reader).
func (s *Session) readLoop(ctx context.Context) (code int, parked bool) {
	c := s.conn
	s.mu.Lock()
	_ = c.SetReadDeadline(s.readDeadline)
	s.mu.Unlock()
	for {
		if s.park != nil && s.park.takeControl(s.handleControl) && s.parkReader(ctx) {
			return 0, true
		}
		mt, data, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			switch {
			case errors.As(err, &ce):
				return ce.Code, false
			case errors.Is(err, websocket.ErrReadLimit):
				// gorilla has already sent 1009 on its way out.
				s.closeWith(protocol.CloseMessageTooBig, "message too big")
				s.discardRest()
				return protocol.CloseMessageTooBig, false
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.closeWith(protocol.ClosePolicyViolation, "pong timeout")
				return protocol.ClosePolicyViolation, false
			}
			return websocket.CloseAbnormalClosure, false
		}
		if s.isClosing() {
			continue // drain until the peer answers our close
		}
		s.extendDeadline()
		if mt != websocket.TextMessage {
			s.closeWith(protocol.CloseUnsupportedData, "binary frames are not supported")
			continue
		}
		if !utf8.Valid(data) {
			s.closeWith(protocol.CloseInvalidPayload, "invalid UTF-8")
			continue
		}
		if !s.msgLimiter.Allow() {
			s.denyMessage(ctx)
			continue
		}
		s.handle(ctx, data)
	}
}

// discardRest reads and drops what the client is still sending after an oversized frame,
// for a second at most and a bounded amount: gorilla cannot read past that frame, and
// closing a socket with unread data makes the kernel answer with a reset, which can reach
// the client before our 1009 and leave it with a bare "connection reset".
func (s *Session) discardRest() {
	nc := s.conn.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, nc, 4*s.opts.MaxMessageBytes)
}

// denyMessage answers a message over the per-connection rate. The audit log gets one record
// per ten seconds of flooding, with the count, not one per message.
func (s *Session) denyMessage(ctx context.Context) {
	o := s.opts
	now := o.Now()
	r := s.msgLimiter.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	s.sendError(protocol.CodeRateLimited, "too many messages on this connection", "", "", wait, nil)
	o.metric(func(m Metrics) { m.Rejected(protocol.CodeRateLimited, "connection") })
	s.deniedSinceLog++
	if now.Sub(s.lastDenyAudit) >= 10*time.Second {
		s.audit(ctx, audit.ActionRateLimitDenied, audit.OutcomeDenied, "connection message rate", "", "",
			map[string]any{"scope": "connection", "denied": s.deniedSinceLog})
		s.lastDenyAudit = now
		s.deniedSinceLog = 0
	}
}

// send queues a direct reply. Past the send bound the client is a slow consumer.
func (s *Session) send(v any) {
	frame, err := json.Marshal(v)
	if err != nil {
		s.opts.Logger.Error("encode reply", "session", s.id, "err", err)
		return
	}
	s.mu.Lock()
	if s.life != lifeOpen {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= s.opts.SendQueueMessages || s.queueBytes+len(frame) > s.opts.SendQueueBytes {
		s.mu.Unlock()
		s.opts.Logger.Info("session closed: slow consumer (reply queue full)", "session", s.id)
		s.opts.metric(func(m Metrics) { m.SlowConsumer() })
		s.closeWith(protocol.ClosePolicyViolation, protocol.ReasonSlowConsumer)
		return
	}
	s.queue = append(s.queue, frame)
	s.queueBytes += len(frame)
	s.kickLocked()
	s.mu.Unlock()
}

// Notify implements task.Subscriber.
func (s *Session) Notify() {
	s.mu.Lock()
	s.kickLocked()
	s.mu.Unlock()
}

// SlowConsumer implements task.Subscriber.
func (s *Session) SlowConsumer() {
	s.closeWith(protocol.ClosePolicyViolation, protocol.ReasonSlowConsumer)
}

var _ task.Subscriber = (*Session)(nil)

// kickLocked marks work pending and starts the writer if none is running.
func (s *Session) kickLocked() {
	s.dirty = true
	if s.writing || s.life == lifeEnded {
		return
	}
	s.writing = true
	s.writer.Add(1)
	go s.writeLoop()
}

func (s *Session) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.life != lifeOpen
}

// closeWith starts the close handshake: the writer drops what is pending, sends the close
// frame, and the reader ends when the peer answers (or its deadline passes).
func (s *Session) closeWith(code int, reason string) {
	s.mu.Lock()
	if s.life != lifeOpen {
		s.mu.Unlock()
		return
	}
	s.life, s.closeCode, s.closeReason = lifeClosing, code, reason
	s.queue, s.queueBytes = nil, 0
	s.kickLocked()
	// Do not wait longer than a second for the peer's close frame.
	s.readDeadline = s.opts.Now().Add(time.Second + s.opts.WriteTimeout)
	_ = s.conn.SetReadDeadline(s.readDeadline)
	s.mu.Unlock()
	// A parked connection needs its reader back to see the peer's answer, or the deadline.
	s.wakeReader()
}

func (s *Session) pingIfDue(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life != lifeOpen || now.Before(s.nextPing) {
		return
	}
	s.nextPing = now.Add(s.opts.PingInterval)
	s.pingDue = true
	s.kickLocked()
}

// batcher is a connection that can gather writes (server.BatchListener's connections).
type batcher interface {
	Batch()
	Flush() error
}

const (
	maxBatchFrames = 128
	maxBatchBytes  = 256 << 10
)

// writeLoop is the session's only writer. It runs while there is work and exits when a
// pass finds nothing new; kickLocked starts it again.
func (s *Session) writeLoop() {
	defer s.writer.Done()
	var (
		subs   []*task.Subscription
		frames [][]byte
	)
	for {
		s.mu.Lock()
		s.dirty = false
		queue := s.queue
		s.queue, s.queueBytes = nil, 0
		ping := s.pingDue
		s.pingDue = false
		life := s.life
		subs = subs[:0]
		if life == lifeOpen {
			for _, sub := range s.subs {
				subs = append(subs, sub)
			}
		}
		var code int
		var reason string
		if life == lifeClosing {
			s.life = lifeCloseSent
			code, reason = s.closeCode, s.closeReason
		}
		s.mu.Unlock()

		if life != lifeOpen {
			if life == lifeClosing {
				_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
			}
			s.mu.Lock()
			s.writing = false
			s.mu.Unlock()
			return
		}

		err := s.conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		// Gather this pass's frames into one write system call when the connection can.
		batch, _ := s.conn.NetConn().(batcher)
		if batch != nil {
			batch.Batch()
		}
		if err == nil && ping {
			err = s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.opts.WriteTimeout))
		}
		// Frames and bytes written this pass, reported once at its end: per-frame counter
		// updates would be a shared cache line bounced between every writer.
		var sent, sentBytes int
		for _, f := range queue {
			if err != nil {
				break
			}
			if err = s.conn.WriteMessage(websocket.TextMessage, f); err == nil {
				sent, sentBytes = sent+1, sentBytes+len(f)
			}
		}
		more := false
		for _, sub := range subs {
			if err != nil {
				break
			}
			var last, end int64
			if sub.Stored() {
				var ok bool
				if frames, last, end, ok = s.readStored(sub, frames[:0]); !ok {
					continue
				}
			} else {
				frames, last, end = sub.Pending(frames[:0], maxBatchFrames, maxBatchBytes)
			}
			for _, f := range frames {
				if err = s.conn.WriteMessage(websocket.TextMessage, f); err != nil {
					break
				}
				sent, sentBytes = sent+1, sentBytes+len(f)
			}
			if err != nil {
				break
			}
			sub.Advance(last, end) // frames, or stored events the event log does not hold
			if sub.HasPending() {
				more = true
			}
			if sub.Finished() {
				s.dropSub(sub)
			}
		}
		clear(frames)
		if batch != nil {
			if ferr := batch.Flush(); err == nil {
				err = ferr
			}
		}
		if m := s.opts.Metrics; m != nil && err == nil && sent > 0 {
			m.FramesSent(sent, sentBytes)
		}
		if err != nil {
			// The peer is gone, or too slow to take a frame within the write timeout: the
			// latter is a slow consumer whose socket is too full to carry even a close frame.
			var ne net.Error
			slow := errors.As(err, &ne) && ne.Timeout()
			s.mu.Lock()
			if slow && s.life == lifeOpen {
				s.closeCode, s.closeReason = protocol.ClosePolicyViolation, protocol.ReasonSlowConsumer
			}
			s.life = lifeEnded
			s.writing = false
			s.mu.Unlock()
			if slow {
				s.opts.Logger.Info("session closed: slow consumer (write timed out)", "session", s.id)
				s.opts.metric(func(m Metrics) { m.SlowConsumer() })
			}
			s.conn.Close()
			s.wakeReader() // a parked reader must see the connection gone and end the session
			return
		}
		s.mu.Lock()
		if !more && !s.dirty && len(s.queue) == 0 && !s.pingDue && s.life == lifeOpen {
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// readStored reads a subscriber's next events from the event log (a resume from far behind
// a long task's head). The read gets its own deadline and the write deadline starts again
// after it, so a slow store is not taken for a slow client. When the log cannot be read the
// subscription ends with an error naming the task; the client resumes it with afterSeq.
func (s *Session) readStored(sub *task.Subscription, dst [][]byte) (frames [][]byte, last, end int64, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.WriteTimeout)
	frames, last, end, err := sub.ReadStored(ctx, dst, maxBatchFrames, maxBatchBytes)
	cancel()
	if err != nil {
		id := sub.Task().ID
		s.opts.Logger.Error("task events could not be read from the event log; subscription ended", "session", s.id, "task", id, "err", err)
		s.dropSub(sub)
		s.sendError(protocol.CodeInternal, "task events could not be read; subscribe again with afterSeq", "", id, 0, nil)
		return frames, last, end, false
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	return frames, last, end, true
}

func (s *Session) dropSub(sub *task.Subscription) {
	s.mu.Lock()
	id := sub.Task().ID
	if s.subs[id] == sub {
		delete(s.subs, id)
	}
	s.mu.Unlock()
	sub.Close()
}

func (s *Session) addSub(id string, sub *task.Subscription) bool {
	s.mu.Lock()
	if s.life != lifeOpen {
		s.mu.Unlock()
		sub.Close()
		return false
	}
	old := s.subs[id]
	s.subs[id] = sub
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return true
}

// end releases the session after its reader returned.
func (s *Session) end(ctx context.Context, code int) {
	s.mu.Lock()
	if s.life == lifeOpen {
		// The peer closed or vanished: there is no one to send a close frame to.
		s.life, s.closeCode = lifeCloseSent, code
	}
	subs := s.subs
	s.subs = map[string]*task.Subscription{}
	s.mu.Unlock()
	for _, sub := range subs {
		sub.Close() // detaches the tasks this session watched
	}
	s.writer.Wait()
	s.mu.Lock()
	s.life = lifeEnded
	s.mu.Unlock()
	if s.park != nil {
		s.park.h.Close()
	}
	s.conn.Close()
	s.opts.metric(func(m Metrics) { m.SessionClosed(code) })
	s.audit(context.WithoutCancel(ctx), audit.ActionSessionClose, audit.OutcomeSuccess, closeReason(code, s.closeReason), "", "",
		map[string]any{"code": code, "jti": s.Principal().JTI})
	s.onEnd()
	// Last: Hub.Shutdown waits for this, and the process records server.stop after it, so
	// session.close and onEnd (the connection slots) must be done by then.
	s.hub.remove(s)
}

func closeReason(code int, reason string) string {
	if reason != "" {
		return reason
	}
	switch code {
	case websocket.CloseNormalClosure:
		return "client closed"
	case websocket.CloseGoingAway:
		return "going away"
	}
	return "connection lost"
}

func (o *Options) metric(f func(Metrics)) {
	if o.Metrics != nil {
		f(o.Metrics)
	}
}
