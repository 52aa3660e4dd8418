package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// defaultOpsAddr is ops.addr's default (configs/flowgate.yaml).
const defaultOpsAddr = "127.0.0.1:9090"

// runHealthcheck GETs the ops listener's /healthz and exits 0 only on 200. It exists so a
// container HEALTHCHECK needs nothing but this binary (no curl, wget or node in the image).
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", stderr)
	rawURL := fs.String("url", "", "URL to GET (default: http://<FLOWGATE_OPS_ADDR or "+defaultOpsAddr+">/healthz; a wildcard host means loopback)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("healthcheck takes no arguments (got %q)", fs.Arg(0))
	}
	if *timeout <= 0 {
		return usageError("healthcheck: --timeout must be positive")
	}
	target := *rawURL
	if target == "" {
		var err error
		if target, err = healthURL(getenv("FLOWGATE_OPS_ADDR")); err != nil {
			return fmt.Errorf("healthcheck: FLOWGATE_OPS_ADDR: %w", err)
		}
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError("healthcheck: --url must be an http(s) URL")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	client := &http.Client{
		// A health endpoint never redirects; following one would check something else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("healthcheck: %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: status %d", u.Redacted(), resp.StatusCode)
	}
	fmt.Fprintf(stdout, "ok: %s\n", u.Redacted())
	return nil
}

// healthURL turns a listen address into the URL of its /healthz, reaching a wildcard
// listener through loopback.
func healthURL(addr string) (string, error) {
	if addr == "" {
		addr = defaultOpsAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" {
		return "", fmt.Errorf("%q is not host:port", addr)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	return (&url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/healthz"}).String(), nil
}
