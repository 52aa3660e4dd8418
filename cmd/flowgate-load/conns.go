package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/client"
)

// Read buffer sizes: idle connections keep theirs small (the client's memory is not what is
// measured, but 10,000 of them add up); streams read many frames per syscall.
const (
	idleReadBuffer   = 1 << 10
	streamReadBuffer = 64 << 10
	handshakeTimeout = 30 * time.Second
)

// dialAll opens n connections with cfg.Dialers handshakes in flight. conns[i] is nil where
// the dial failed (the failure is in errs); connect times (TCP connect through the welcome
// frame) go to h. elapsed covers the first dial to the last one ending.
func dialAll(ctx context.Context, cfg *config, toks *tokens, n, readBuf int, errs *errorLog, h *hist) (conns []*client.Conn, elapsed time.Duration) {
	conns = make([]*client.Conn, n)
	dialer := &websocket.Dialer{HandshakeTimeout: handshakeTimeout, ReadBufferSize: readBuf, WriteBufferSize: 1 << 10}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(cfg.Dialers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				c, err := dialOne(ctx, cfg, toks.options(i), i, dialer)
				if err != nil {
					errs.add(dialErrorKind(err), err)
					continue
				}
				h.record(time.Since(t0))
				conns[i] = c
			}
		})
	}
	wg.Wait()
	return conns, time.Since(start)
}

// dialOne dials connection i with opts: through base, bound to source address i when
// --source-net is given.
func dialOne(ctx context.Context, cfg *config, opts client.Options, i int, base *websocket.Dialer) (*client.Conn, error) {
	opts.Dialer = base
	if cfg.src != nil {
		d := *base
		d.NetDialContext = cfg.src.dialFunc(i)
		opts.Dialer = &d
	}
	return client.Dial(ctx, cfg.URL, opts)
}

func dialErrorKind(err error) string {
	var he *client.HandshakeError
	if errors.As(err, &he) {
		if he.Code != "" {
			return fmt.Sprintf("handshake_%d_%s", he.Status, he.Code)
		}
		return fmt.Sprintf("handshake_%d", he.Status)
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "dial_cancelled"
	case errors.As(err, &ne) && ne.Timeout():
		return "dial_timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "dial_refused"
	case strings.Contains(err.Error(), "too many open files"):
		return "dial_emfile"
	case strings.Contains(err.Error(), "address already in use"), strings.Contains(err.Error(), "cannot assign requested address"):
		return "dial_no_port" // the source address's ephemeral ports are used up: see --source-net
	case strings.Contains(err.Error(), "welcome"):
		return "welcome"
	}
	return "dial"
}

// closeAll closes every connection, cfg.Dialers at a time.
func closeAll(conns []*client.Conn, parallel int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(parallel, len(conns))) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				if conns[i] != nil {
					_ = conns[i].Close()
				}
			}
		})
	}
	wg.Wait()
}

func countLive(conns []*client.Conn) int {
	n := 0
	for _, c := range conns {
		if c != nil {
			n++
		}
	}
	return n
}

// errorLog counts errors by kind and keeps a few messages of each for the report.
type errorLog struct {
	mu      sync.Mutex
	total   int64
	byKind  map[string]int64
	samples []string
}

const (
	maxErrorKinds   = 64
	maxErrorSamples = 10
	maxSampleBytes  = 300
)

// tokenInURL finds a credential in an error that quotes a URL (--token-source query).
var tokenInURL = regexp.MustCompile(`((?:token|ticket)=)[^&\s"]+`)

func newErrorLog() *errorLog { return &errorLog{byKind: map[string]int64{}} }

func (e *errorLog) add(kind string, err error) {
	e.addN(kind, 1, err)
}

func (e *errorLog) addN(kind string, n int64, err error) {
	if n <= 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.byKind[kind]; !ok && len(e.byKind) >= maxErrorKinds {
		kind = "other"
	}
	e.byKind[kind] += n
	e.total += n
	if err != nil && len(e.samples) < maxErrorSamples {
		msg := tokenInURL.ReplaceAllString(kind+": "+err.Error(), "${1}[REDACTED]")
		if len(msg) > maxSampleBytes {
			msg = msg[:maxSampleBytes]
		}
		e.samples = append(e.samples, msg)
	}
}

type errorSummary struct {
	Total   int64            `json:"total"`
	ByKind  map[string]int64 `json:"byKind"`
	Samples []string         `json:"samples,omitempty"`
}

func (e *errorLog) snapshot() errorSummary {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := errorSummary{Total: e.total, ByKind: make(map[string]int64, len(e.byKind)), Samples: append([]string(nil), e.samples...)}
	for k, v := range e.byKind {
		s.ByKind[k] = v
	}
	return s
}
