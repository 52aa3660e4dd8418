package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/protocol"
)

// How the token travels in the handshake.
const (
	TokenHeader      = "header"      // Authorization: Bearer
	TokenSubprotocol = "subprotocol" // Sec-WebSocket-Protocol: flowgate.v1, flowgate.bearer.<jwt>
	TokenQuery       = "query"       // ?token= (seed compatibility; avoid)
	TokenTicket      = "ticket"      // ?ticket= (Token holds the ticket)
)

// Options configures Dial.
type Options struct {
	Token       string
	TokenSource string // default TokenHeader
	Header      http.Header
	// ReadLimit bounds one server frame (default 16 MiB: engine lines may be 1 MiB).
	ReadLimit int64
	Dialer    *websocket.Dialer
}

// Conn is one connection. Reads and writes may run in different goroutines, but only one
// goroutine may read and one may write at a time.
type Conn struct {
	ws      *websocket.Conn
	Welcome Message
}

// Message is one server frame with the fields clients branch on decoded; Raw is the frame.
type Message struct {
	Type         string            `json:"type"`
	TaskID       string            `json:"taskId"`
	RequestID    string            `json:"requestId"`
	Seq          int64             `json:"seq"`
	Status       string            `json:"status"`
	Code         string            `json:"code"`
	Error        string            `json:"error"`
	ExitCode     *int              `json:"exitCode"`
	RetryAfterMs int64             `json:"retryAfterMs"`
	Fields       map[string]string `json:"fields"`
	SessionID    string            `json:"sessionId"`
	ExpiresAt    string            `json:"expiresAt"`
	Raw          json.RawMessage   `json:"-"`
}

// HandshakeError is a refused handshake: the HTTP status and the problem's code.
type HandshakeError struct {
	Status int
	Code   string
	Detail string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("handshake refused: HTTP %d %s: %s", e.Status, e.Code, e.Detail)
}

// Dial connects, authenticates and reads the welcome frame.
func Dial(ctx context.Context, rawURL string, opts Options) (*Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("client: url: %w", err)
	}
	h := http.Header{}
	for k, v := range opts.Header {
		h[k] = v
	}
	d := opts.Dialer
	if d == nil {
		d = &websocket.Dialer{HandshakeTimeout: 10 * time.Second, Proxy: nil}
	}
	dialer := *d
	protocols := []string{protocol.Name}
	switch opts.TokenSource {
	case "", TokenHeader:
		if opts.Token != "" {
			h.Set("Authorization", "Bearer "+opts.Token)
		}
	case TokenSubprotocol:
		protocols = append(protocols, protocol.BearerPrefix+opts.Token)
	case TokenQuery, TokenTicket:
		q := u.Query()
		name := "token"
		if opts.TokenSource == TokenTicket {
			name = "ticket"
		}
		q.Set(name, opts.Token)
		u.RawQuery = q.Encode()
	default:
		return nil, fmt.Errorf("client: unknown token source %q", opts.TokenSource)
	}
	dialer.Subprotocols = protocols
	ws, resp, err := dialer.DialContext(ctx, u.String(), h)
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			var p struct {
				Code   string `json:"code"`
				Detail string `json:"detail"`
			}
			_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p)
			return nil, &HandshakeError{Status: resp.StatusCode, Code: p.Code, Detail: p.Detail}
		}
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	limit := opts.ReadLimit
	if limit <= 0 {
		limit = 16 << 20
	}
	ws.SetReadLimit(limit)
	c := &Conn{ws: ws}
	welcome, err := c.Read(ctx)
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("client: welcome: %w", err)
	}
	if welcome.Type != protocol.TypeConnection {
		ws.Close()
		return nil, fmt.Errorf("client: first frame is %q, not connection", welcome.Type)
	}
	c.Welcome = welcome
	return c, nil
}

// Subprotocol is what the server selected.
func (c *Conn) Subprotocol() string { return c.ws.Subprotocol() }

// Send writes one message as a JSON text frame.
func (c *Conn) Send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.SendRaw(data)
}

// SendRaw writes a text frame as is.
func (c *Conn) SendRaw(data []byte) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

// SendBinary writes a binary frame (the server refuses those; tests use it).
func (c *Conn) SendBinary(data []byte) error {
	return c.ws.WriteMessage(websocket.BinaryMessage, data)
}

// CloseError is how the server ended the connection.
type CloseError = websocket.CloseError

// Read returns the next frame. ctx's deadline bounds the wait.
func (c *Conn) Read(ctx context.Context) (Message, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.ws.SetReadDeadline(dl)
	} else {
		_ = c.ws.SetReadDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = c.ws.SetReadDeadline(time.Now()) })
	defer stop()
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		if ctx.Err() != nil {
			return Message{}, ctx.Err()
		}
		return Message{}, err
	}
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("client: frame is not JSON: %w", err)
	}
	m.Raw = data
	return m, nil
}

// Close sends a normal close and closes the connection.
func (c *Conn) Close() error {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return c.ws.Close()
}

// Abort drops the TCP connection without a close handshake (tests of detach and resume).
func (c *Conn) Abort() error { return c.ws.NetConn().Close() }

// IsClose reports whether err is a close frame with one of codes (any code when none given).
func IsClose(err error, codes ...int) (*websocket.CloseError, bool) {
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		return nil, false
	}
	if len(codes) == 0 {
		return ce, true
	}
	for _, c := range codes {
		if ce.Code == c {
			return ce, true
		}
	}
	return ce, false
}
