package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of one proxied connection.
const (
	maxRequestHeader   = 32 << 10
	headerTimeout      = 30 * time.Second
	DefaultDialTimeout = 10 * time.Second
	DefaultMaxConns    = 64 // open connections per task
	// DefaultReportsPerSession bounds the egress.denied audit records of one task: an engine
	// looping over refused destinations must not flood the audit log.
	DefaultReportsPerSession = 10
)

// Resolver resolves names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Denial is one refused destination.
type Denial struct {
	Task        string
	Tenant      string
	Destination string // as the engine asked for it (bounded)
	Reason      string
}

// Metrics receives the proxy's counters; every method must be cheap and safe for concurrent
// use.
type Metrics interface {
	EgressDenied(reason string)
	EgressBytes(out, in int64)
}

// Options configures a Proxy.
type Options struct {
	Policy      *Policy
	Resolver    Resolver // nil: net.DefaultResolver
	DialTimeout time.Duration
	MaxConns    int // per session; 0 = DefaultMaxConns
	Logger      *slog.Logger
	// OnDenied is called for the first ReportsPerSession refusals of each task (the caller
	// audits them); later ones are only counted, in Stats and metrics.
	OnDenied          func(Denial)
	ReportsPerSession int // 0 = DefaultReportsPerSession
	Metrics           Metrics
	// dial replaces the network dial in tests.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Proxy hands out one listener per task (Open): a connection's task is the listener it came
// in on, so nothing the engine sends can claim another task's identity.
type Proxy struct {
	opts Options
	log  *slog.Logger
}

// New checks opts.
func New(opts Options) (*Proxy, error) {
	if opts.Policy == nil {
		return nil, errors.New("egress: policy required")
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.ReportsPerSession <= 0 {
		opts.ReportsPerSession = DefaultReportsPerSession
	}
	if opts.dial == nil {
		d := &net.Dialer{Timeout: opts.DialTimeout}
		opts.dial = d.DialContext
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Proxy{opts: opts, log: log}, nil
}

// Stats is what one task sent and received through the proxy, and how often it was refused.
type Stats struct {
	BytesOut int64 `json:"bytesOut"`
	BytesIn  int64 `json:"bytesIn"`
	Denied   int64 `json:"denied"`
}

// Session is one task's listener.
type Session struct {
	p      *Proxy
	task   string
	tenant string
	ln     net.Listener
	out    atomic.Int64
	in     atomic.Int64
	denied atomic.Int64
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Open starts task's listener on 127.0.0.1 (an ephemeral port). Close it when the task ends.
func (p *Proxy) Open(task, tenant string) (*Session, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("egress: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Session{p: p, task: task, tenant: tenant, ln: ln, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Port is the session's port on 127.0.0.1.
func (s *Session) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Stats returns the counters so far.
func (s *Session) Stats() Stats {
	return Stats{BytesOut: s.out.Load(), BytesIn: s.in.Load(), Denied: s.denied.Load()}
}

// Close stops the listener, cuts every connection and returns when all are gone.
func (s *Session) Close() {
	s.cancel()
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Session) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if len(s.conns) >= s.p.opts.MaxConns || s.ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer s.forget(c)
			s.handle(c)
		}()
	}
}

func (s *Session) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Session) forget(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// handle serves one request: CONNECT opens a tunnel, an absolute-form http:// request is
// forwarded once (Connection: close), anything else is a 400.
func (s *Session) handle(c net.Conn) {
	lr := &io.LimitedReader{R: c, N: maxRequestHeader}
	br := bufio.NewReaderSize(lr, 4096)
	_ = c.SetReadDeadline(time.Now().Add(headerTimeout))
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	lr.N = 1 << 62 // the header is read; the body and the tunnel are not bounded here

	var target string
	switch {
	case req.Method == http.MethodConnect:
		target = req.RequestURI
	case req.URL.IsAbs() && req.URL.Scheme == "http" && req.URL.Host != "":
		target = req.URL.Host
		if req.URL.Port() == "" {
			target = net.JoinHostPort(req.URL.Hostname(), "80")
		}
	default:
		writeStatus(c, http.StatusBadRequest, "flowgate egress: send CONNECT host:port, or an absolute http:// URL\n")
		return
	}
	up, reason := s.dial(target)
	if up == nil {
		s.deny(c, target, reason)
		return
	}
	if !s.track(up) {
		up.Close()
		return
	}
	defer s.forget(up)

	if req.Method == http.MethodConnect {
		if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			return
		}
		// Bytes the client sent behind the CONNECT (a TLS ClientHello) are already buffered.
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			if _, err := up.Write(b); err != nil {
				return
			}
			s.count(int64(n), 0)
		}
		s.pipe(c, up)
		return
	}
	for _, h := range []string{"Proxy-Authorization", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Upgrade"} {
		req.Header.Del(h)
	}
	req.RequestURI = ""
	req.Close = true // one request per upstream connection: the next may be for another host
	req.Body = http.MaxBytesReader(nil, req.Body, 64<<20)
	cw := &countWriter{w: up}
	if err := req.Write(cw); err != nil {
		s.count(cw.n, 0)
		return
	}
	s.count(cw.n, 0)
	n, _ := io.Copy(c, up)
	s.count(0, n)
}

// pipe copies both ways until either side ends, then cuts both.
func (s *Session) pipe(client, up net.Conn) {
	done := make(chan struct{}, 2)
	go func() {
		n, _ := io.Copy(up, client)
		s.count(n, 0)
		done <- struct{}{}
	}()
	go func() {
		n, _ := io.Copy(client, up)
		s.count(0, n)
		done <- struct{}{}
	}()
	<-done
	client.Close()
	up.Close()
	<-done
}

func (s *Session) count(out, in int64) {
	if out > 0 {
		s.out.Add(out)
	}
	if in > 0 {
		s.in.Add(in)
	}
	if m := s.p.opts.Metrics; m != nil && (out > 0 || in > 0) {
		m.EgressBytes(out, in)
	}
}

// dial checks target against the policy, resolves it itself and connects to a checked
// address (never to the name again: a second lookup could answer differently).
func (s *Session) dial(target string) (net.Conn, string) {
	o := s.p.opts
	if !o.Policy.Allowed(target) {
		return nil, "not in engine.egress.allow"
	}
	host, port, _ := net.SplitHostPort(target)
	ctx, cancel := context.WithTimeout(s.ctx, o.DialTimeout)
	defer cancel()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		// A literal listed exactly: the operator named this address, whatever its class.
		addrs = []netip.Addr{a.Unmap()}
	} else {
		found, err := o.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(found) == 0 {
			return nil, "name does not resolve"
		}
		hp, _ := normalize(target)
		for _, a := range found {
			// A listed name must lead to the public Internet (DNS rebinding, a poisoned
			// resolver): a loopback, private or metadata address needs its own entry.
			if ok, why := o.Policy.reachable(hp, a, port); !ok {
				return nil, "name resolves to a " + why + " address"
			}
		}
		addrs = found
	}
	var last error
	for _, a := range addrs {
		c, err := o.dial(ctx, "tcp", net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, ""
		}
		last = err
	}
	s.p.log.Debug("egress: destination unreachable", "task", s.task, "destination", target, "err", last)
	return nil, "unreachable"
}

func (s *Session) deny(c net.Conn, target, reason string) {
	status := http.StatusForbidden
	if reason == "unreachable" {
		status = http.StatusBadGateway
	} else {
		n := s.denied.Add(1)
		if m := s.p.opts.Metrics; m != nil {
			m.EgressDenied(reason)
		}
		if f := s.p.opts.OnDenied; f != nil && n <= int64(s.p.opts.ReportsPerSession) {
			f(Denial{Task: s.task, Tenant: s.tenant, Destination: truncate(target, 300), Reason: reason})
		}
	}
	writeStatus(c, status, "flowgate egress: "+truncate(target, 300)+": "+reason+"\n")
}

func writeStatus(c net.Conn, status int, body string) {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "HTTP/1.1 "+strconv.Itoa(status)+" "+http.StatusText(status)+
		"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
