package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

const sessionsUsage = `usage: flowgate sessions list --url U --tenant T [--json]
       flowgate sessions end  --url U --tenant T --session ID
each also takes --token-file F (or $FLOWGATE_TOKEN): a tenant:admin or platform:admin token

Live sessions are held by the running gateway, so these ask its admin API
(GET/DELETE /v1/admin/tenants/{id}/sessions): --url is its public base URL, for example
http://127.0.0.1:8080. An ended session is closed with 1008 session_terminated and audited.`

// maxSessionsAnswer bounds what the CLI reads of an answer (1,000 sessions fit).
const maxSessionsAnswer = 4 << 20

func runSessions(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stdout, sessionsUsage)
		return nil
	}
	if len(args) == 0 || (args[0] != "list" && args[0] != "end") {
		fmt.Fprintln(stderr, sessionsUsage)
		return usageError("sessions: want list or end")
	}
	sub := args[0]
	fs := newFlagSet("sessions "+sub, stderr)
	var f swarmFlags
	var base, tenant, sid string
	var asJSON bool
	fs.StringVar(&base, "url", "", "the gateway's public base URL, e.g. http://127.0.0.1:8080 (required)")
	fs.StringVar(&tenant, "tenant", "", "tenant id (required)")
	fs.StringVar(&f.tokenFile, "token-file", "", "read the admin token from this file (else $FLOWGATE_TOKEN)")
	if sub == "list" {
		fs.BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	} else {
		fs.StringVar(&sid, "session", "", "the session id to end (required)")
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if base == "" || tenant == "" || (sub == "end" && sid == "") || fs.NArg() > 0 {
		return usageError("sessions %s needs --url and --tenant%s", sub, map[bool]string{true: " and --session", false: ""}[sub == "end"])
	}
	api, err := newAPIClient(base, f, getenv, stderr)
	if err != nil {
		return err
	}
	path := "/v1/admin/tenants/" + url.PathEscape(tenant) + "/sessions"
	method := http.MethodGet
	if sub == "end" {
		method, path = http.MethodDelete, path+"/"+url.PathEscape(sid)
	}
	body, err := api.call(ctx, method, path)
	if err != nil {
		return err
	}
	if sub == "end" {
		_, err := fmt.Fprintf(stdout, "session %s ended\n", sid)
		return err
	}
	var a struct {
		Sessions []struct {
			SessionID, Sub, IP, ConnectedAt, Node string
			Subscriptions                         int
		}
		Complete bool
	}
	if done, err := printOrDecode(body, asJSON, stdout, &a); done || err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSUB\tIP\tCONNECTED\tSUBSCRIPTIONS\tNODE")
	for _, s := range a.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", s.SessionID, s.Sub, s.IP, s.ConnectedAt, s.Subscriptions, s.Node)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !a.Complete {
		fmt.Fprintln(stderr, "flowgate: warning: a replica did not answer in time; its sessions are not listed")
	}
	return nil
}

// apiClient calls the running gateway's admin API, for the commands about what only the
// server holds (live sessions, every user's tasks): the store has none of it.
type apiClient struct{ base, token string }

// newAPIClient checks --url and picks the token (--token-file or $FLOWGATE_TOKEN).
func newAPIClient(base string, f swarmFlags, getenv func(string) string, stderr io.Writer) (apiClient, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return apiClient{}, usageError("--url %q is not an http(s) URL", base)
	}
	token, err := swarmToken(f, getenv, stderr)
	if err != nil {
		return apiClient{}, err
	}
	return apiClient{base: strings.TrimRight(u.String(), "/"), token: token}, nil
}

// printOrDecode prints the API's answer as it is with --json (done), or decodes it into v.
func printOrDecode(body []byte, asJSON bool, stdout io.Writer, v any) (done bool, err error) {
	if asJSON {
		_, err := stdout.Write(append(body, '\n'))
		return true, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return false, fmt.Errorf("the answer is not the API's: %w", err)
	}
	return false, nil
}

// call sends method path and returns the body of a 2xx answer; any other answer is an error
// carrying the problem's code and detail (never the token).
func (c apiClient) call(ctx context.Context, method, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxSessionsAnswer))
	if err != nil {
		return nil, err
	}
	if res.StatusCode/100 != 2 {
		var p struct{ Code, Detail string }
		_ = json.Unmarshal(body, &p)
		return nil, fmt.Errorf("%s %s: HTTP %d %s: %s", method, req.URL.Path, res.StatusCode, p.Code, p.Detail)
	}
	return body, nil
}
