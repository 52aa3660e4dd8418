package anthropicmock

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Limits of what the mock accepts and keeps. They bound memory in a test process that may run
// many CLIs against one server; the real CLI's requests are about 50 KiB.
const (
	MaxBodyBytes     = 8 << 20 // larger bodies get 413 request_too_large, like the real API
	MaxRecorded      = 1024    // Requests beyond this are answered but no longer recorded
	DefaultSlowDelay = 500 * time.Millisecond
	SlowEvents       = 120 // text deltas of a mock:slow answer: a minute at DefaultSlowDelay
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// Logf, when set, gets one line per request (method, path, trigger, status) and never the
	// API key or the answer text.
	Logf func(format string, args ...any)
	// SlowDelay spaces the events of a mock:slow answer; 0 means DefaultSlowDelay.
	SlowDelay time.Duration
}

// Request is what the server received, as recorded by Requests.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte // nil when the body was over MaxBodyBytes
	// APIKey is x-api-key, else the token of "Authorization: Bearer …"; "" when absent.
	APIKey string
	// Model and Stream are the body's fields, for telling the CLI's requests apart.
	Model  string
	Stream bool
	// Prompt is the text searched for triggers: every text block of the last user message,
	// joined by newlines. Empty when that message carries tool results.
	Prompt string
	// Trigger is the trigger word acted on ("mock:write hello.txt"), "" for the default answer.
	Trigger string
	// ToolResults are the tool_result blocks of the last user message.
	ToolResults []ToolResult
}

// ToolResult is one tool_result block the client sent back.
type ToolResult struct {
	ToolUseID string
	IsError   bool
	Content   string // its text, blocks joined by newlines
}

// Server is a running mock. Its methods are safe for concurrent use.
type Server struct {
	opts   Options
	ln     net.Listener
	srv    *http.Server
	ctx    context.Context // parent of every request context; cancelled by Close
	cancel context.CancelFunc
	served chan struct{} // closed when Serve has returned

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // handlers, so Close can wait for them (Add only under mu while !closed)
	reqs     []Request
}

// Start listens on 127.0.0.1:0 and serves until Close.
func Start(opts Options) (*Server, error) {
	if opts.SlowDelay <= 0 {
		opts.SlowDelay = DefaultSlowDelay
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("anthropicmock: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: opts, ln: ln, ctx: ctx, cancel: cancel, served: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		// Connection-level noise (a client that hung up) is not a test failure, and logging it
		// through a testing.T after the test ended would panic.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln) // ErrServerClosed after Close; nothing else to report to
	}()
	return s, nil
}

// URL is the base URL for ANTHROPIC_BASE_URL, "http://127.0.0.1:PORT" without a trailing slash.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops the listener, ends in-flight answers (mock:slow streams included) and returns
// once every handler has returned. It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		<-s.served
		s.inflight.Wait()
		return
	}
	s.cancel()
	_ = s.srv.Close() // closes the listener and every connection; the error is the listener's
	<-s.served
	s.inflight.Wait()
}

// Requests returns a copy of the recorded requests in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		r.Header = r.Header.Clone()
		r.Body = slices.Clone(r.Body)
		r.ToolResults = slices.Clone(r.ToolResults)
		out[i] = r
	}
	return out
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "anthropicmock: closed", http.StatusServiceUnavailable)
		return
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()

	rec := Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		APIKey:   apiKey(r.Header),
	}
	reqID := "req_" + rand.Text()
	w.Header().Set("request-id", reqID)
	status := s.route(w, r, &rec, reqID)
	s.record(rec)
	s.logf("anthropicmock: %s %s trigger=%q model=%q stream=%v -> %d",
		r.Method, r.URL.RequestURI(), rec.Trigger, rec.Model, rec.Stream, status)
}

// route answers r and fills in rec; it returns the HTTP status for the log line.
func (s *Server) route(w http.ResponseWriter, r *http.Request, rec *Request, reqID string) int {
	switch r.URL.Path {
	case "/v1/messages", "/v1/messages/count_tokens":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			return writeError(w, reqID, http.StatusMethodNotAllowed, errInvalidRequest, "Method Not Allowed")
		}
		if rec.APIKey == "" {
			return writeError(w, reqID, http.StatusUnauthorized, errAuthentication,
				"x-api-key header is required")
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				return writeError(w, reqID, http.StatusRequestEntityTooLarge, errTooLarge,
					fmt.Sprintf("Request exceeds the maximum allowed number of bytes (%d)", MaxBodyBytes))
			}
			return writeError(w, reqID, http.StatusBadRequest, errInvalidRequest, "reading the body: "+err.Error())
		}
		rec.Body = body
		if r.URL.Path == "/v1/messages/count_tokens" {
			return writeJSON(w, http.StatusOK, map[string]int{"input_tokens": estimateTokens(len(body))})
		}
		return s.messages(w, r, rec, reqID)
	case "/api/hello":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			return writeError(w, reqID, http.StatusMethodNotAllowed, errInvalidRequest, "Method Not Allowed")
		}
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return http.StatusOK
		}
		return writeJSON(w, http.StatusOK, map[string]string{"message": "hello"})
	default:
		return writeError(w, reqID, http.StatusNotFound, errNotFound, "Not Found")
	}
}

func (s *Server) record(rec Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) < MaxRecorded {
		s.reqs = append(s.reqs, rec)
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// apiKey reads the credential the way the API accepts it: x-api-key first, then a bearer token
// (what the SDK sends for ANTHROPIC_AUTH_TOKEN).
func apiKey(h http.Header) string {
	if k := h.Get("X-Api-Key"); k != "" {
		return k
	}
	scheme, token, ok := strings.Cut(h.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return ""
}
