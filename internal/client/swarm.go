package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/flowgate/flowgate/internal/protocol"
)

// SwarmOptions are a swarm's options; zero values are left out (the gateway's defaults apply).
type SwarmOptions struct {
	Agents   int    `json:"agents,omitempty"`
	Strategy string `json:"strategy,omitempty"`
	Mode     string `json:"mode,omitempty"`
	Timeout  int    `json:"timeout,omitempty"` // seconds
}

// SwarmRequest is one swarm to run.
type SwarmRequest struct {
	Objective string
	Options   SwarmOptions
	// RequestID correlates the gateway's replies; generated when empty.
	RequestID string
	// CancelGrace bounds the wait for task_complete after ctx ends and cancel was sent
	// (default 5s).
	CancelGrace time.Duration
}

// ServerError is an error frame that answered one of this client's requests.
type ServerError struct {
	Code         string
	Message      string
	TaskID       string
	RetryAfterMs int64
	Fields       map[string]string
}

func (e *ServerError) Error() string {
	s := e.Code + ": " + e.Message
	if len(e.Fields) > 0 {
		parts := make([]string, 0, len(e.Fields))
		for k, v := range e.Fields {
			parts = append(parts, k+": "+v)
		}
		s += " (" + strings.Join(parts, "; ") + ")"
	}
	if e.RetryAfterMs > 0 {
		s += fmt.Sprintf(" (retry after %d ms)", e.RetryAfterMs)
	}
	return s
}

// ErrCancelled is returned by RunSwarm when ctx ended: the task was asked to stop.
var ErrCancelled = errors.New("client: swarm cancelled")

// NewRequestID returns a random request id.
func NewRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "go-" + hex.EncodeToString(b[:])
}

// RunSwarm starts a swarm and reads its task to the end: onEvent (may be nil) receives
// task_created and every frame of the task, task_complete last. Frames of other tasks and
// replies to other requests are skipped. It returns task_complete whatever its status, or a
// *ServerError when the gateway refused the request; the connection can then be used again.
// When ctx ends first, RunSwarm sends cancel, waits up to CancelGrace for task_complete, and
// returns it (if it came) with an error wrapping ErrCancelled. It reads the connection: no
// other goroutine may read meanwhile. After any other error, close the connection.
func (c *Conn) RunSwarm(ctx context.Context, req SwarmRequest, onEvent func(Message)) (Message, error) {
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	grace := req.CancelGrace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	msg := map[string]any{"type": protocol.TypeSwarm, "objective": req.Objective, "requestId": req.RequestID}
	if req.Options != (SwarmOptions{}) {
		msg["options"] = req.Options
	}
	if err := c.Send(msg); err != nil {
		return Message{}, fmt.Errorf("client: send swarm: %w", err)
	}

	// A read interrupted by a deadline leaves a gorilla connection unusable, so ctx must not
	// interrupt reads: a reader goroutine reads until the task's last frame (or the refusal)
	// while this one watches ctx and sends cancel.
	type frame struct {
		m   Message
		err error
	}
	frames := make(chan frame, 64)
	readCtx, stopReading := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(frames)
		taskID := ""
		for {
			m, err := c.Read(readCtx)
			last := err != nil
			switch {
			case err != nil:
			case taskID == "" && m.RequestID == req.RequestID && m.Type == protocol.TypeError:
				last = true
			case taskID == "" && m.RequestID == req.RequestID && m.Type == protocol.TypeTaskCreated:
				taskID = m.TaskID
			case taskID != "" && m.TaskID == taskID && m.Type != protocol.TypeStatus && m.Type != protocol.TypeError:
				last = m.Type == protocol.TypeTaskComplete
			default:
				continue // another task's frame or another request's reply
			}
			select {
			case frames <- frame{m, err}:
			case <-readCtx.Done():
				return
			}
			if last {
				return
			}
		}
	}()
	defer func() {
		stopReading()
		wg.Wait()
	}()

	taskID := ""
	cancelled := false
	var graceC <-chan time.Time
	done := ctx.Done()
	sendCancel := func() error {
		if err := c.Send(map[string]any{"type": protocol.TypeCancel, "taskId": taskID, "requestId": req.RequestID}); err != nil {
			return fmt.Errorf("%w (cancel not sent: %v)", ErrCancelled, err)
		}
		return nil
	}
	for {
		select {
		case <-done:
			done = nil
			cancelled = true
			t := time.NewTimer(grace)
			defer t.Stop()
			graceC = t.C
			if taskID != "" {
				if err := sendCancel(); err != nil {
					return Message{}, err
				}
			}
		case <-graceC:
			return Message{}, fmt.Errorf("%w: no task_complete within %s", ErrCancelled, grace)
		case f, ok := <-frames:
			if !ok {
				return Message{}, errors.New("client: reader stopped")
			}
			if f.err != nil {
				if cancelled {
					return Message{}, fmt.Errorf("%w: %v", ErrCancelled, f.err)
				}
				return Message{}, f.err
			}
			m := f.m
			switch m.Type {
			case protocol.TypeError:
				return Message{}, &ServerError{Code: m.Code, Message: m.Error, TaskID: m.TaskID, RetryAfterMs: m.RetryAfterMs, Fields: m.Fields}
			case protocol.TypeTaskCreated:
				if taskID == "" {
					taskID = m.TaskID
					if cancelled {
						// ctx ended while the request was in flight: cancel it now it has an id.
						if err := sendCancel(); err != nil {
							return Message{}, err
						}
					}
				}
			}
			if onEvent != nil {
				onEvent(m)
			}
			if m.Type == protocol.TypeTaskComplete {
				if cancelled {
					return m, fmt.Errorf("%w: task %s", ErrCancelled, m.Status)
				}
				return m, nil
			}
		}
	}
}

// Ticket is a single-use WebSocket ticket (DESIGN §4).
type Ticket struct {
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// HTTPBase is the gateway's HTTP origin for a ws:// or wss:// URL.
func HTTPBase(wsURL string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "", fmt.Errorf("client: url: %w", err)
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("client: url scheme %q is not ws or wss", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("client: url has no host")
	}
	return u.Scheme + "://" + u.Host, nil
}

// FetchTicket exchanges token for a ticket at POST /v1/ws-ticket of the gateway that wsURL
// points to. hc may be nil (a client with a 10s timeout).
func FetchTicket(ctx context.Context, hc *http.Client, wsURL, token string) (Ticket, error) {
	base, err := HTTPBase(wsURL)
	if err != nil {
		return Ticket{}, err
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/ws-ticket", nil)
	if err != nil {
		return Ticket{}, fmt.Errorf("client: ticket: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return Ticket{}, fmt.Errorf("client: ticket: %w", err)
	}
	defer res.Body.Close()
	body := io.LimitReader(res.Body, 64<<10)
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		var p struct {
			Code   string `json:"code"`
			Detail string `json:"detail"`
		}
		_ = json.NewDecoder(body).Decode(&p)
		return Ticket{}, &HandshakeError{Status: res.StatusCode, Code: p.Code, Detail: p.Detail}
	}
	var t Ticket
	if err := json.NewDecoder(body).Decode(&t); err != nil || t.Ticket == "" {
		return Ticket{}, errors.New("client: ticket: malformed answer")
	}
	return t, nil
}
