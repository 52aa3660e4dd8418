package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/client"
	"github.com/flowgate/flowgate/internal/proctest"
	"github.com/flowgate/flowgate/internal/tlstest"
)

// TestNginxFrontsGateway runs deploy/nginx/flowgate.conf, unchanged but for addresses and
// paths, in front of a real gateway: a seed-style client with ?token= runs a swarm over TLS and
// the WebSocket upgrade, /metrics is refused, and the token never reaches nginx's logs.
func TestNginxFrontsGateway(t *testing.T) {
	ngx, err := exec.LookPath("nginx")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/nginx"); e == nil {
			ngx, err = "/usr/sbin/nginx", nil
		}
	}
	if err != nil {
		if os.Getenv("FLOWGATE_TEST_REQUIRE_SERVICES") != "" {
			t.Fatal("nginx not installed (FLOWGATE_TEST_REQUIRE_SERVICES is set): " + err.Error())
		}
		t.Skip("nginx not installed (apt-get install nginx-light): " + err.Error())
	}
	g := startGateway(t, gwOptions{})
	upstream := strings.TrimPrefix(g.HTTP, "http://")

	dir := t.TempDir()
	tlstest.WriteSelfSigned(t, filepath.Join(dir, "flowgate.crt"), filepath.Join(dir, "flowgate.key"))
	httpPort, httpsPort := freePort(t), freePort(t)
	conf, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nginx", "flowgate.conf"))
	if err != nil {
		t.Fatal(err)
	}
	site := strings.NewReplacer(
		"server 127.0.0.1:8080 ", "server "+upstream+" ",
		"listen [::]:80;", "", "listen [::]:443 ssl;", "",
		"listen 80;", "listen 127.0.0.1:"+httpPort+";",
		"listen 443 ssl;", "listen 127.0.0.1:"+httpsPort+" ssl;",
		"/etc/nginx/tls", dir, "/var/log/nginx", dir,
	).Replace(string(conf))
	if !strings.Contains(site, "server "+upstream) || !strings.Contains(site, "127.0.0.1:"+httpsPort) {
		t.Fatal("could not point the configuration at the test gateway (did flowgate.conf change shape?)")
	}
	main := fmt.Sprintf("pid %[1]s/nginx.pid;\nerror_log %[1]s/main-error.log;\nworker_processes 1;\nevents {}\nhttp {\n include %[1]s/site.conf;\n}\n", dir)
	for name, data := range map[string]string{"site.conf": site, "nginx.conf": main} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(ngx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	exited := proctest.Start(t, cmd, os.Interrupt, 10*time.Second)
	waitListening(t, "127.0.0.1:"+httpsPort, exited, &out)

	tlsConf := &tls.Config{InsecureSkipVerify: true} // the test's own self-signed certificate
	httpc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	base := "https://127.0.0.1:" + httpsPort
	for path, want := range map[string]int{"/healthz": 200, "/metrics": 404, "/debug/pprof/": 404} {
		resp, err := httpc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if resp.StatusCode != want || (want == 404 && strings.Contains(string(body), "flowgate_")) {
			t.Errorf("GET %s through nginx: %d, want %d", path, resp.StatusCode, want)
		}
	}

	// A seed client: token in the URL, WebSocket on "/" through TLS.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	dialer := &websocket.Dialer{TLSClientConfig: tlsConf, HandshakeTimeout: 10 * time.Second}
	c, err := client.Dial(ctx, "wss://127.0.0.1:"+httpsPort+"/", client.Options{Token: g.UserToken, TokenSource: client.TokenQuery, Dialer: dialer})
	if err != nil {
		t.Fatalf("dial through nginx: %v\n%s", err, out.String())
	}
	defer c.Close()
	r := runSwarm(t, c, "haiku through the proxy", map[string]any{"agents": 1})
	if r.complete.Status != "success" {
		t.Fatalf("task_complete = %s", r.complete.Raw)
	}
	c.Close()
	// nginx writes a WebSocket's access line when the tunnel closes.
	accessLog := filepath.Join(dir, "flowgate.access.log")
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if data, _ := os.ReadFile(accessLog); strings.Contains(string(data), `"GET / HTTP/1.1" 101`) {
			break
		}
	}

	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	var access string
	for _, f := range logs {
		data, _ := os.ReadFile(f)
		if strings.Contains(string(data), g.UserToken[len(g.UserToken)-24:]) || strings.Contains(string(data), "token=") {
			t.Errorf("%s holds the query-string token:\n%s", filepath.Base(f), data)
		}
		if strings.HasSuffix(f, "flowgate.access.log") {
			access = string(data)
		}
	}
	if !strings.Contains(access, `"GET / HTTP/1.1" 101`) {
		t.Errorf("no upgraded request in the access log:\n%s", access)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

func waitListening(t *testing.T, addr string, exited <-chan struct{}, out fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("nginx exited:\n%s", out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nginx not listening on %s:\n%s", addr, out.String())
}
