package deploycheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/internal/tlstest"
)

var (
	logFormatRE   = regexp.MustCompile(`(?s)log_format\s+(\S+)\s+(.*?);`)
	accessLogRE   = regexp.MustCompile(`(?m)^\s*access_log\s+([^;]+);`)
	readTimeoutRE = regexp.MustCompile(`proxy_read_timeout\s+(\d+)s;`)
	// Variables that carry the query string: $request_uri, $args, $query_string, $arg_*, and
	// $request (the whole request line), but not $request_method / $request_time / $request_id.
	queryVarRE = regexp.MustCompile(`\$(request_uri|args|query_string|arg_[a-z_]+|request)([^a-z_]|$)`)
)

func nginxConfs() []string {
	return []string{"deploy/nginx/flowgate.conf", "deploy/compose/nginx.conf"}
}

func TestNginxConfigs(t *testing.T) {
	for _, f := range nginxConfs() {
		t.Run(f, func(t *testing.T) {
			conf := string(readFile(t, f))
			// Comments are not configuration.
			var b strings.Builder
			for _, l := range strings.Split(conf, "\n") {
				if i := strings.Index(l, "#"); i >= 0 {
					l = l[:i]
				}
				b.WriteString(l + "\n")
			}
			conf = b.String()

			formats := map[string]bool{}
			for _, m := range logFormatRE.FindAllStringSubmatch(conf, -1) {
				if queryVarRE.MatchString(m[2]) {
					t.Errorf("log_format %s logs the query string (token): %s", m[1], m[2])
				}
				if !strings.Contains(m[2], "$uri") {
					t.Errorf("log_format %s does not log $uri", m[1])
				}
				formats[m[1]] = true
			}
			logs := accessLogRE.FindAllStringSubmatch(conf, -1)
			if len(logs) == 0 {
				t.Error("no access_log")
			}
			for _, m := range logs {
				f := strings.Fields(m[1])
				if f[0] != "off" && (len(f) < 2 || !formats[f[1]]) {
					t.Errorf("access_log %s does not use a query-free log_format", m[1])
				}
			}
			for _, l := range regexp.MustCompile(`(?m)^\s*error_log\s+([^;]+);`).FindAllStringSubmatch(conf, -1) {
				if f := strings.Fields(l[1]); len(f) < 2 || (f[1] != "crit" && f[1] != "alert" && f[1] != "emerg") {
					t.Errorf("error_log %s: the request line (with ?token=) is logged at error level", l[1])
				}
			}
			m := readTimeoutRE.FindStringSubmatch(conf)
			if m == nil {
				t.Fatal("no proxy_read_timeout")
			}
			// Pings every 25s, pong timeout 60s: the proxy must not cut a quiet, healthy socket.
			if n, _ := strconv.Atoi(m[1]); n < 75 {
				t.Errorf("proxy_read_timeout %ss < 75s", m[1])
			}
			for _, want := range []string{
				"proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
				"proxy_set_header Connection $flowgate_connection;", "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
				"location = /metrics { return 404; }", "location ^~ /debug/ { return 404; }", "ssl_certificate ",
			} {
				if !strings.Contains(conf, want) {
					t.Errorf("lacks %q", want)
				}
			}
			if strings.Contains(conf, "ip_hash") || strings.Contains(conf, "sticky") {
				t.Error("sticky sessions are not needed (DESIGN §12)")
			}
			if strings.Contains(conf, ":9090") {
				t.Error("proxies the ops port")
			}
		})
	}
}

// nginx -t on deploy/nginx/flowgate.conf, where nginx is installed.
func TestNginxSyntax(t *testing.T) {
	ngx := tool(t, "nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx")
	dir := t.TempDir()
	tlstest.WriteSelfSigned(t, filepath.Join(dir, "flowgate.crt"), filepath.Join(dir, "flowgate.key"))
	site := strings.NewReplacer("/etc/nginx/tls", dir, "/var/log/nginx", dir).Replace(string(readFile(t, "deploy/nginx/flowgate.conf")))
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	main := "pid " + dir + "/nginx.pid;\nerror_log " + dir + "/error.log;\nevents {}\nhttp {\n include " + dir + "/site.conf;\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ngx, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}
