package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/apitest"
	"github.com/flowgate/flowgate/internal/client"
)

// binary is the flowgate binary built once for the whole package; hostileBinary is the
// hostile test engine (./hostile).
var binary, hostileBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flowgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "flowgate")
	hostileBinary = filepath.Join(dir, "hostile")
	// flowgate-init next to the binary is the sandbox init the gateway prefers (tests of the
	// fallback to the flowgate binary itself live in cmd/flowgate).
	// The init is built without the race detector: it is not what these tests examine, and a
	// race-built process lingers a second at exit.
	for _, b := range []struct{ out, pkg, race string }{
		{binary, "github.com/flowgate/flowgate/cmd/flowgate", "-race"},
		{filepath.Join(dir, "flowgate-init"), "github.com/flowgate/flowgate/cmd/flowgate-init", "-race=false"},
		{hostileBinary, "github.com/flowgate/flowgate/internal/e2e/hostile", "-race=false"},
	} {
		build := exec.Command("go", "build", b.race, "-o", b.out, b.pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b.pkg+":", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gateway is a running `flowgate serve --dev`.
type gateway struct {
	t          *testing.T
	cmd        *exec.Cmd
	dataDir    string
	URL        string // ws://host:port/ws
	HTTP       string // http://host:port
	Ops        string // http://host:port of the ops listener
	UserToken  string
	AdminToken string

	// storeEnv is the gateway's FLOWGATE_STORE_* environment: the CLI must use the same store
	// (a cluster's PostgreSQL, not --dev's SQLite).
	storeEnv []string

	mu     sync.Mutex
	logs   strings.Builder
	exited chan struct{}
	err    error
}

type gwOptions struct {
	env     map[string]string
	dataDir string
	// inCwd runs `serve --dev` with no --data-dir, in dataDir as its working directory: the
	// README's first command, whose state lands in ./data.
	inCwd bool
	// args are extra serve flags (--config FILE).
	args []string
}

// startGateway runs the binary with --dev on random loopback ports and waits for the
// scripting contract's lines on stdout.
func startGateway(t *testing.T, opts gwOptions) *gateway {
	t.Helper()
	dataDir := opts.dataDir
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	g := &gateway{t: t, dataDir: dataDir, exited: make(chan struct{})}
	cmd := exec.Command(binary, append([]string{"serve", "--dev", "--data-dir", dataDir}, opts.args...)...)
	if opts.inCwd {
		cmd = exec.Command(binary, append([]string{"serve", "--dev"}, opts.args...)...)
		cmd.Dir = dataDir
		g.dataDir = filepath.Join(dataDir, "data")
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dataDir,
		// The race-built engine (engine-sim is this binary) would otherwise linger a second
		// at every exit; engine.env passes GORACE through to it.
		"GORACE=halt_on_error=1 atexit_sleep_ms=0", "FLOWGATE_ENGINE_ENV=GORACE",
		"FLOWGATE_SERVER_ADDR=127.0.0.1:0", "FLOWGATE_OPS_ADDR=127.0.0.1:0",
		"FLOWGATE_LOG_FORMAT=json", "FLOWGATE_LOG_LEVEL=debug",
	}
	for k, v := range opts.env {
		env = append(env, k+"="+v)
		if strings.HasPrefix(k, "FLOWGATE_STORE_") {
			g.storeEnv = append(g.storeEnv, k+"="+v)
		}
	}
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.logs.Len() < 64<<20 {
			g.logs.Write(p)
		}
		return len(p), nil
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.cmd = cmd
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() {
		g.err = cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("gateway log:\n%s", tail(g.Logs(), 200))
		}
	})
	deadline := time.After(60 * time.Second)
	for g.URL == "" || g.UserToken == "" || g.AdminToken == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("gateway exited before it was ready: %v\n%s", g.err, g.Logs())
			}
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "url":
				g.URL = v
				g.HTTP = "http://" + strings.TrimSuffix(strings.TrimPrefix(v, "ws://"), "/ws")
			case "user-token":
				g.UserToken = v
			case "admin-token":
				g.AdminToken = v
			}
		case <-deadline:
			t.Fatalf("gateway not ready after 60s\n%s", g.Logs())
		}
	}
	go func() {
		for range lines {
		}
	}()
	g.Ops = "http://" + g.opsAddr(t)
	return g
}

// opsAddr finds the ops listener's address in the "listening" log line.
func (g *gateway) opsAddr(t *testing.T) string {
	t.Helper()
	for i := 0; i < 100; i++ {
		for _, line := range strings.Split(g.Logs(), "\n") {
			if strings.Contains(line, `"msg":"listening"`) {
				if _, after, ok := strings.Cut(line, `"ops":"`); ok {
					addr, _, _ := strings.Cut(after, `"`)
					return addr
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no listening line in the log")
	return ""
}

// Logs is everything the gateway wrote to stderr.
func (g *gateway) Logs() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.logs.String()
}

// waitLog waits until the gateway's log contains s. Lines reach the harness through the
// stderr pipe a moment after the server wrote them: even a line written before a reply the
// client already holds is waited for, not assumed.
func (g *gateway) waitLog(t *testing.T, what, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(g.Logs(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the gateway log has no %s after 30s", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// janitorPass waits until the server's housekeeping (the janitor: every 2 s it reloads the
// revocations from the store, then polls the tenant changes) has run a whole pass that began
// after the call. Each pass logs the tenants changed since the last (debug level). A tenant
// created now shows in the first pass whose poll read the store after it, but that pass's
// reload may have read before the call. So a second tenant, created once the first shows,
// shows in a later pass, begun after that one ended: its reload read everything written
// before the call.
func (g *gateway) janitorPass(t *testing.T) {
	t.Helper()
	for i := range 2 {
		id := fmt.Sprintf("janitor-%d-%d", time.Now().UnixNano(), i)
		if st, body, _ := g.do(t, "POST", "/v1/admin/tenants", g.AdminToken, `{"id":"`+id+`","name":"janitor pass"}`); st != http.StatusCreated {
			t.Fatalf("create tenant %s: %d %s", id, st, body)
		}
		g.waitLog(t, "janitor pass", `"msg":"tenant changed; caches invalidated","tenant":"`+id+`"`)
	}
}

// signal sends sig and waits up to d for the process to exit; it reports whether it did.
func (g *gateway) signal(sig syscall.Signal, d time.Duration) bool {
	_ = g.cmd.Process.Signal(sig)
	select {
	case <-g.exited:
		return true
	case <-time.After(d):
		return false
	}
}

func (g *gateway) stop() {
	select {
	case <-g.exited:
		return
	default:
	}
	if !g.signal(syscall.SIGTERM, 40*time.Second) {
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
}

// token mints a token with the gateway's own CLI, as an operator would.
func (g *gateway) token(t *testing.T, tenant, sub string, ttl string, perms ...string) string {
	t.Helper()
	args := []string{"token", "issue", "--dev", "--data-dir", g.dataDir, "--tenant", tenant, "--sub", sub, "--ttl", ttl}
	for _, p := range perms {
		args = append(args, "--perm", p)
	}
	out, err := g.cli(t, "", args...)
	if err != nil {
		t.Fatalf("token issue: %v\n%s", err, out)
	}
	return strings.TrimSpace(out)
}

// cli runs the binary with args against the gateway's data dir.
func (g *gateway) cli(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + g.dataDir, "FLOWGATE_LOG_LEVEL=error"}, g.storeEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

// dial connects with the user token in the Authorization header.
func (g *gateway) dial(t *testing.T, token string) *client.Conn {
	t.Helper()
	return g.dialWith(t, client.Options{Token: token})
}

func (g *gateway) dialWith(t *testing.T, opts client.Options) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, g.URL, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tryDial dials with opts and returns the connection (closed at cleanup) or the handshake's
// refusal; any other failure fails the test.
func (g *gateway) tryDial(t *testing.T, opts client.Options) (*client.Conn, *client.HandshakeError) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, g.URL, opts)
	if err == nil {
		t.Cleanup(func() { c.Close() })
		return c, nil
	}
	var he *client.HandshakeError
	if !errors.As(err, &he) {
		t.Fatalf("dial: %v", err)
	}
	return nil, he
}

// dialErr is the refusal of a handshake with token, or nil when it is accepted (the
// connection is closed at once).
func (g *gateway) dialErr(t *testing.T, token string) *client.HandshakeError {
	t.Helper()
	c, he := g.tryDial(t, client.Options{Token: token})
	if c != nil {
		c.Close()
	}
	return he
}

// refusal is the refusal of a handshake that must be refused.
func (g *gateway) refusal(t *testing.T, opts client.Options) *client.HandshakeError {
	t.Helper()
	c, he := g.tryDial(t, opts)
	if c != nil {
		c.Close()
		t.Fatal("handshake accepted")
	}
	return he
}

// do sends a request to the gateway's public listener: a JSON body when body is set, the
// bearer token when token is, and hdr as name, value pairs. It returns the status, the body
// (at most 16 MiB) and the response headers.
func (g *gateway) do(t *testing.T, method, path, token, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	r := apitest.Do(t, http.DefaultClient, method, g.HTTP+path, token, body, hdr...)
	return r.Status, r.Body, r.Header
}

func (g *gateway) get(t *testing.T, url, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(body)
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// rawHandshake sends a WebSocket upgrade by hand, to see what a WebSocket client hides of a
// refusal: the HTTP status, headers and problem body.
func rawHandshake(t *testing.T, ctx context.Context, wsURL, authorization string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Scheme = "http"
	req.Header.Set("Authorization", authorization)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
