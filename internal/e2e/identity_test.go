package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.yaml.in/yaml/v3"

	"github.com/flowgate/flowgate/configs"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/auth/authtest"
	"github.com/flowgate/flowgate/internal/client"
)

// Identity lifecycle (issue 6) from the outside: the real binary, real sockets.

// idPost sends a request to the gateway's public listener; hdr is name, value pairs.
func idPost(t *testing.T, g *gateway, path, token, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	return g.do(t, "POST", path, token, body, hdr...)
}

// idAlive checks that c still answers a ping.
func idAlive(t *testing.T, c *client.Conn) {
	t.Helper()
	id := fmt.Sprint("alive-", time.Now().UnixNano())
	if err := c.Send(map[string]any{"type": "ping", "requestId": id}); err != nil {
		t.Fatalf("send ping: %v", err)
	}
	readUntil(t, c, 10*time.Second, func(m client.Message) bool { return m.Type == "pong" && m.RequestID == id })
}

// jtiOf reads a token's jti without verifying it (the test minted it).
func idJTI(t *testing.T, tok string) (string, time.Time) {
	t.Helper()
	var c jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	jti, _ := c["jti"].(string)
	exp, _ := c.GetExpirationTime()
	if jti == "" || exp == nil {
		t.Fatalf("token without jti or exp: %v", c)
	}
	return jti, exp.Time
}

func idRevoke(t *testing.T, g *gateway, adminToken, jti string, exp time.Time) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"jti": jti, "expiresAt": exp.UTC().Format(time.RFC3339)})
	status, out, _ := idPost(t, g, "/v1/admin/tokens/revoke", adminToken, string(body))
	return status, out
}

// mintDev signs a token with the --dev signing key: the tests choose every claim.
func idMint(t *testing.T, g *gateway, sub string, ttl time.Duration, perms ...string) string {
	t.Helper()
	key := signingKey(t, g)
	now := time.Now()
	var j [16]byte
	_, _ = rand.Read(j[:])
	return authtest.Sign(t, jwt.SigningMethodEdDSA, auth.KeyID(key.Public().(ed25519.PublicKey)), key, jwt.MapClaims{
		"iss": "flowgate", "aud": "flowgate", "sub": sub, "tenant": "demo", "permissions": perms,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(), "jti": hex.EncodeToString(j[:]),
	}, nil)
}

func idCreateTenant(t *testing.T, g *gateway, id string) {
	t.Helper()
	if out, err := g.cli(t, "", "tenant", "create", "--dev", "--data-dir", g.dataDir, "--id", id); err != nil {
		t.Fatalf("tenant create %s: %v\n%s", id, err, out)
	}
}

// TestRevokeClosesLiveSession: a revoked token's live session is closed with 1008 within
// 5 s and the token cannot reconnect (401); a tenant admin's revocation never reaches
// another tenant's session; a platform admin's reaches every tenant.
func TestRevokeClosesLiveSession(t *testing.T) {
	g := startGateway(t, gwOptions{})
	idCreateTenant(t, g, "other")
	demoAdmin := g.token(t, "demo", "dana", "1h", "tenant:admin", "swarm:execute")
	otherAdmin := g.token(t, "other", "omar", "1h", "tenant:admin", "swarm:execute")
	rita := g.token(t, "demo", "rita", "1h", "swarm:execute")
	ritaJTI, ritaExp := idJTI(t, rita)
	c := g.dial(t, rita)
	id := startSwarm(t, c, "long revoke sim:pace=100ms sim:events=300", nil)

	// Another tenant's admin names rita's jti: recorded for "other" only; rita is untouched.
	if st, body := idRevoke(t, g, otherAdmin, ritaJTI, ritaExp); st != 200 || !strings.Contains(body, `"scope":"tenant"`) {
		t.Fatalf("other tenant's revoke: %d %s", st, body)
	}
	// Past the server's reload of the revocations from the store, she still connects: the
	// revocation is not hers in memory (which the session sweep consults too), and her
	// session lives.
	g.janitorPass(t)
	if c2, he := g.tryDial(t, client.Options{Token: rita}); he != nil {
		t.Fatalf("rita refused after another tenant's revocation: %+v", he)
	} else {
		c2.Close()
	}
	idAlive(t, c)

	// Her own tenant's admin revokes it: closed with 1008 within 5 s, no reconnect.
	start := time.Now()
	if st, body := idRevoke(t, g, demoAdmin, ritaJTI, ritaExp); st != 200 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	ce := waitClosed(t, nil, c, 5*time.Second)
	if ce.Code != 1008 || ce.Text != "token_revoked" {
		t.Fatalf("closed with %d %q; want 1008 token_revoked", ce.Code, ce.Text)
	}
	t.Logf("closed %v after the revoke call", time.Since(start).Round(time.Millisecond))
	if _, he := g.tryDial(t, client.Options{Token: rita}); he == nil || he.Status != 401 || !strings.Contains(he.Detail, "token_revoked") {
		t.Fatalf("revoked token reconnect: %+v; want 401 token_revoked", he)
	}
	// Nor through a ticket, nor the API.
	if st, _, _ := idPost(t, g, "/v1/ws-ticket", rita, ""); st != 401 {
		t.Fatalf("revoked token got a ticket: %d", st)
	}
	// Her task was detached, not killed: a fresh token of hers can pick it up.
	fresh := g.token(t, "demo", "rita", "1h", "swarm:execute")
	c3 := g.dial(t, fresh)
	if err := c3.Send(map[string]any{"type": "status", "taskId": id, "requestId": "st"}); err != nil {
		t.Fatal(err)
	}
	if m := readUntil(t, c3, 10*time.Second, func(m client.Message) bool { return m.RequestID == "st" }); m.Status != "running" {
		t.Fatalf("task after revocation: %s", m.Raw)
	}
	if err := c3.Send(map[string]any{"type": "cancel", "taskId": id}); err != nil { // spare the shutdown grace
		t.Fatal(err)
	}

	// A platform revocation reaches another tenant's session.
	olga := g.token(t, "other", "olga", "1h", "swarm:execute")
	olgaJTI, olgaExp := idJTI(t, olga)
	oc := g.dial(t, olga)
	if st, body := idRevoke(t, g, g.AdminToken, olgaJTI, olgaExp); st != 200 || !strings.Contains(body, `"scope":"platform"`) {
		t.Fatalf("platform revoke: %d %s", st, body)
	}
	if ce := waitClosed(t, nil, oc, 5*time.Second); ce.Code != 1008 || ce.Text != "token_revoked" {
		t.Fatalf("platform revoke closed with %d %q", ce.Code, ce.Text)
	}
	if !auditHas(t, g, "token.revoke") {
		t.Fatal("no token.revoke audit record")
	}
}

// TestRevocationSurvivesRestart: revocations are durable: a restarted gateway (or another
// replica on the same store) still refuses the token.
func TestRevocationSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, gwOptions{dataDir: dir})
	admin := g.token(t, "demo", "dana", "1h", "tenant:admin")
	rita := g.token(t, "demo", "rita", "1h", "swarm:execute")
	jti, exp := idJTI(t, rita)
	if st, body := idRevoke(t, g, admin, jti, exp); st != 200 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	g.stop()
	g2 := startGateway(t, gwOptions{dataDir: dir})
	if _, he := g2.tryDial(t, client.Options{Token: rita}); he == nil || he.Status != 401 {
		t.Fatalf("revoked token after restart: %+v; want 401", he)
	}
}

// TestTicketSingleUseAndExpiry: a ticket is bound to the principal that asked for it, works
// once, and expires after auth.ticket_ttl (2 s here; 30 s by default, see the auth unit test).
func TestTicketSingleUseAndExpiry(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{"FLOWGATE_AUTH_TICKET_TTL": "2s"}})
	tina := g.token(t, "demo", "tina", "1h", "swarm:execute")
	ticket := func() (string, time.Time) {
		t.Helper()
		st, body, _ := idPost(t, g, "/v1/ws-ticket", tina, "")
		var out struct{ Ticket, ExpiresAt string }
		_ = json.Unmarshal([]byte(body), &out)
		exp, err := time.Parse(time.RFC3339, out.ExpiresAt)
		if st != 201 || err != nil || !strings.HasPrefix(out.Ticket, "tk_") {
			t.Fatalf("ticket: %d %s", st, body)
		}
		if d := time.Until(exp); d > 2*time.Second+500*time.Millisecond {
			t.Fatalf("ticket valid for %v; configured 2s", d)
		}
		return out.Ticket, exp
	}
	tk, _ := ticket()
	c, he := g.tryDial(t, client.Options{Token: tk, TokenSource: client.TokenTicket})
	if he != nil {
		t.Fatalf("ticket refused: %+v", he)
	}
	if c.Welcome.Type != "connection" || !strings.Contains(string(c.Welcome.Raw), `"user":"tina"`) {
		t.Fatalf("ticket not bound to its principal: %s", c.Welcome.Raw)
	}
	if _, he := g.tryDial(t, client.Options{Token: tk, TokenSource: client.TokenTicket}); he == nil || he.Status != 401 {
		t.Fatalf("replay: %+v; want 401", he)
	}
	tk2, exp := ticket()
	time.Sleep(time.Until(exp) + 500*time.Millisecond)
	if _, he := g.tryDial(t, client.Options{Token: tk2, TokenSource: client.TokenTicket}); he == nil || he.Status != 401 || !strings.Contains(he.Detail, "bad_ticket") {
		t.Fatalf("expired ticket: %+v; want 401 bad_ticket", he)
	}
	// A ticket does not outlive a revocation of the token it stands for.
	tk3, _ := ticket()
	jti, texp := idJTI(t, tina)
	if st, body := idRevoke(t, g, g.AdminToken, jti, texp); st != 200 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	if _, he := g.tryDial(t, client.Options{Token: tk3, TokenSource: client.TokenTicket}); he == nil || he.Status != 401 {
		t.Fatalf("ticket of a revoked token: %+v; want 401", he)
	}
	for _, s := range []string{tk, tk2, tk3, tina} {
		if strings.Contains(g.Logs(), s) || strings.Contains(g.Logs(), s[len(s)-16:]) {
			t.Fatal("a ticket or token reached the log")
		}
	}
}

// TestReauth: reauth with the same tenant and subject answers reauthenticated{expiresAt} and
// keeps the session past the old token's expiry; an invalid or revoked token answers an
// error and the session stays; another subject (or tenant) closes the session with 1008.
func TestReauth(t *testing.T) {
	g := startGateway(t, gwOptions{})
	idCreateTenant(t, g, "other")
	reauth := func(c *client.Conn, tok, rid string) {
		t.Helper()
		if err := c.Send(map[string]any{"type": "reauth", "token": tok, "requestId": rid}); err != nil {
			t.Fatal(err)
		}
	}
	reply := func(c *client.Conn, rid string) client.Message {
		t.Helper()
		return readUntil(t, c, 10*time.Second, func(m client.Message) bool { return m.RequestID == rid })
	}

	short := idMint(t, g, "ray", 8*time.Second, "swarm:execute")
	_, shortExp := idJTI(t, short)
	c := g.dial(t, short)
	// A witness: a session whose token expires with the short one (or a second later: minted
	// after it) and is never reauthenticated.
	witness := g.dial(t, idMint(t, g, "ray", 8*time.Second, "swarm:execute"))
	long := g.token(t, "demo", "ray", "1h", "swarm:execute")
	_, longExp := idJTI(t, long)
	reauth(c, long, "r1")
	m := reply(c, "r1")
	if m.Type != "reauthenticated" || m.ExpiresAt == "" {
		t.Fatalf("reauth: %s", m.Raw)
	}
	if got, _ := time.Parse(time.RFC3339, m.ExpiresAt); !got.Equal(longExp) {
		t.Fatalf("expiresAt %s; want %s", m.ExpiresAt, longExp.UTC())
	}

	// Invalid and revoked tokens: an error reply, the session stays.
	reauth(c, "not-a-jwt", "r2")
	if m := reply(c, "r2"); m.Type != "error" || m.Code != "forbidden" {
		t.Fatalf("invalid reauth: %s", m.Raw)
	}
	revoked := g.token(t, "demo", "ray", "1h", "swarm:execute")
	rjti, rexp := idJTI(t, revoked)
	if st, body := idRevoke(t, g, g.AdminToken, rjti, rexp); st != 200 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	reauth(c, revoked, "r3")
	if m := reply(c, "r3"); m.Type != "error" || !strings.Contains(string(m.Raw), "token_revoked") {
		t.Fatalf("revoked reauth: %s", m.Raw)
	}
	// Past the first token's expiry the session lives on under the reauthenticated one. The
	// session sweep (every second) closes a session once its token has expired: the witness's
	// close shows a sweep S ran past shortExp. S may judge c after the witness, so wait for a
	// later sweep: the one that closes a session whose token expires after S ran. By then S
	// has judged c, and would have closed it had it still held the short token.
	if ce := waitClosed(t, nil, witness, time.Until(shortExp)+10*time.Second); ce.Code != 1008 || ce.Text != "token_expired" {
		t.Fatalf("the witness session closed with %d %q; want 1008 token_expired", ce.Code, ce.Text)
	}
	later := g.dial(t, idMint(t, g, "ray", 2*time.Second, "swarm:execute"))
	if ce := waitClosed(t, nil, later, 10*time.Second); ce.Code != 1008 || ce.Text != "token_expired" {
		t.Fatalf("the later witness closed with %d %q; want 1008 token_expired", ce.Code, ce.Text)
	}
	idAlive(t, c)

	// Another subject, or the same subject of another tenant: closed with 1008.
	for _, other := range []string{
		g.token(t, "demo", "mallory", "1h", "swarm:execute"),
		g.token(t, "other", "ray", "1h", "swarm:execute"),
	} {
		c := g.dial(t, g.token(t, "demo", "ray", "1h", "swarm:execute"))
		reauth(c, other, "rx")
		if ce := waitClosed(t, nil, c, 5*time.Second); ce.Code != 1008 || ce.Text != "reauth_mismatch" {
			t.Fatalf("reauth as someone else closed with %d %q; want 1008 reauth_mismatch", ce.Code, ce.Text)
		}
	}
}

// TestExpiryDetachesTask: at exp without reauth the session is closed with 1008
// token_expired within 5 s; its running task keeps running and a new session of the same user
// with a fresh token re-subscribes and sees every event, in order, to a successful end.
func TestExpiryDetachesTask(t *testing.T) {
	g := startGateway(t, gwOptions{})
	tok := idMint(t, g, "eve", 8*time.Second, "swarm:execute")
	_, exp := idJTI(t, tok)
	c := g.dial(t, tok)
	id := startSwarm(t, c, "outlive my token sim:pace=100ms sim:events=150", nil)
	var seen []int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Until(exp)+5*time.Second)
	defer cancel()
	var ce *client.CloseError
	for ce == nil {
		m, err := c.Read(ctx)
		if err != nil {
			var ok bool
			if ce, ok = client.IsClose(err); !ok {
				t.Fatalf("session not closed within 5 s of exp: %v", err)
			}
			break
		}
		if m.TaskID == id && m.Seq > 0 {
			seen = append(seen, m.Seq)
		}
		if m.Type == "task_complete" {
			t.Fatalf("task finished before the token expired; make it longer: %s", m.Raw)
		}
	}
	if ce.Code != 1008 || ce.Text != "token_expired" {
		t.Fatalf("closed with %d %q; want 1008 token_expired", ce.Code, ce.Text)
	}
	if early := time.Until(exp); early > time.Second {
		t.Fatalf("closed %v before the token expired", early)
	}

	c2 := g.dial(t, g.token(t, "demo", "eve", "1h", "swarm:execute"))
	last := int64(0)
	if len(seen) > 0 {
		last = seen[len(seen)-1]
	}
	if err := c2.Send(map[string]any{"type": "subscribe", "taskId": id, "afterSeq": last}); err != nil {
		t.Fatal(err)
	}
	done := readUntil(t, c2, 90*time.Second, func(m client.Message) bool {
		if m.Type == "error" {
			t.Fatalf("re-subscribe: %s", m.Raw)
		}
		if m.TaskID == id && m.Seq > 0 {
			seen = append(seen, m.Seq)
		}
		return m.Type == "task_complete" && m.TaskID == id
	})
	if done.Status != "success" {
		t.Fatalf("task after its session expired: %s", done.Raw)
	}
	for i, s := range seen {
		if s != int64(i+1) {
			t.Fatalf("seq %d at position %d: gap or duplicate", s, i)
		}
	}
}

// TestOriginPolicyE2E: with server.allowed_origins = https://app.example.com, a browser
// Origin not on the list is refused with 403 before the upgrade (and on the API); no Origin
// and the exact origin are allowed; null, a suffix trick and the wrong scheme are refused.
func TestOriginPolicyE2E(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{"FLOWGATE_SERVER_ALLOWED_ORIGINS": "https://app.example.com"}})
	tests := []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"https://app.example.com", true},
		{g.HTTP, true}, // the dashboard's own origin
		{"https://evil.example", false},
		{"null", false},
		{"http://app.example.com", false},
		{"https://app.example.com.evil.example", false},
		{"https://app.example.com:444", false},
		{"https://xapp.example.com", false},
	}
	for _, tt := range tests {
		t.Run(strings.NewReplacer("/", "_", ":", "_").Replace(tt.origin), func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			c, he := g.tryDial(t, client.Options{Token: g.UserToken, Header: h})
			switch {
			case tt.ok && he != nil:
				t.Fatalf("refused: %+v", he)
			case !tt.ok && (he == nil || he.Status != 403 || he.Code != "forbidden"):
				t.Fatalf("handshake: %+v; want 403 forbidden", he)
			}
			if c != nil {
				c.Close()
			}
			var hdr []string
			if tt.origin != "" {
				hdr = []string{"Origin", tt.origin}
			}
			st, _, _ := idPost(t, g, "/v1/ws-ticket", g.UserToken, "", hdr...)
			if (st == 201) != tt.ok {
				t.Fatalf("API answered %d", st)
			}
		})
	}
}

// TestQueryTokensNeverLogged: with query tokens on (--dev), neither a good nor a refused
// query token nor a ticket appears in any log line, and every HTTP answer carries
// Referrer-Policy: no-referrer. Turned off, a query token is refused.
func TestQueryTokensNeverLogged(t *testing.T) {
	g := startGateway(t, gwOptions{})
	canary := "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJxdWVyeS1jYW5hcnkifQ.cXVlcnktY2FuYXJ5LXNpZ25hdHVyZQ"
	if _, he := g.tryDial(t, client.Options{Token: g.UserToken, TokenSource: client.TokenQuery}); he != nil {
		t.Fatalf("query token refused in --dev: %+v", he)
	}
	if _, he := g.tryDial(t, client.Options{Token: canary, TokenSource: client.TokenQuery}); he == nil || he.Status != 401 {
		t.Fatalf("bad query token: %+v", he)
	}
	_, body, hdr := idPost(t, g, "/v1/ws-ticket", g.UserToken, "")
	var tk struct{ Ticket string }
	_ = json.Unmarshal([]byte(body), &tk)
	if _, he := g.tryDial(t, client.Options{Token: tk.Ticket, TokenSource: client.TokenTicket}); he != nil {
		t.Fatalf("ticket: %+v", he)
	}
	if hdr.Get("Referrer-Policy") != "no-referrer" {
		t.Fatal("ticket answer without Referrer-Policy")
	}
	for _, path := range []string{"/healthz", "/ws?token=" + canary, "/nope?token=" + canary, "/.well-known/jwks.json", "/ui/"} {
		resp, _ := g.get(t, g.HTTP+path, "")
		if resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: Referrer-Policy %q", strings.SplitN(path, "?", 2)[0], resp.Header.Get("Referrer-Policy"))
		}
	}
	// A refused handshake (401 problem) carries it too.
	req, _ := http.NewRequest("GET", g.HTTP+"/ws?token="+canary, nil)
	for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("refused handshake: %d, Referrer-Policy %q", resp.StatusCode, resp.Header.Get("Referrer-Policy"))
	}
	logs := g.Logs()
	for name, s := range map[string]string{"user token": g.UserToken, "canary": canary, "ticket": tk.Ticket} {
		if strings.Contains(logs, s) || strings.Contains(logs, s[len(s)-20:]) {
			t.Fatalf("the %s reached the log", name)
		}
	}
	if !strings.Contains(logs, `"path":"/ws"`) {
		t.Fatal("no access log lines for /ws: the check above proves nothing")
	}

	// Off: refused with a reason, before any verification.
	g2 := startGateway(t, gwOptions{env: map[string]string{"FLOWGATE_AUTH_ALLOW_QUERY_TOKEN": "false"}})
	if _, he := g2.tryDial(t, client.Options{Token: g2.UserToken, TokenSource: client.TokenQuery}); he == nil || he.Status != 401 || !strings.Contains(he.Detail, "query_token_disabled") {
		t.Fatalf("query token with allow_query_token=false: %+v", he)
	}
}

// TestIssuedTokensAPI: a tenant admin mints tokens for its own tenant with permissions it
// holds; another tenant, a permission it lacks and platform:admin are refused. The minted
// token connects.
func TestIssuedTokensAPI(t *testing.T) {
	g := startGateway(t, gwOptions{})
	idCreateTenant(t, g, "other")
	admin := g.token(t, "demo", "dana", "1h", "tenant:admin", "swarm:execute")
	mint := func(tenant, body string) (int, string) {
		st, out, _ := idPost(t, g, "/v1/admin/tenants/"+tenant+"/tokens", admin, body)
		return st, out
	}
	for _, tc := range []struct {
		name, tenant, body string
		want               int
	}{
		{"another tenant", "other", `{"sub":"x","permissions":["swarm:execute"],"ttl":"1h"}`, 404},
		{"permission it lacks", "demo", `{"sub":"x","permissions":["task:admin"],"ttl":"1h"}`, 403},
		{"platform:admin", "demo", `{"sub":"x","permissions":["platform:admin"],"ttl":"1h"}`, 403},
		{"ttl over max_ttl", "demo", `{"sub":"x","permissions":["swarm:execute"],"ttl":"48h"}`, 400},
	} {
		if st, out := mint(tc.tenant, tc.body); st != tc.want {
			t.Errorf("%s: %d %s; want %d", tc.name, st, out, tc.want)
		}
	}
	// The platform admin cannot mint platform:admin through the API either.
	if st, _, _ := idPost(t, g, "/v1/admin/tenants/demo/tokens", g.AdminToken, `{"sub":"x","permissions":["platform:admin"],"ttl":"1h"}`); st != 403 {
		t.Errorf("platform admin minted platform:admin: %d", st)
	}
	st, out := mint("demo", `{"sub":"newbie","permissions":["swarm:execute"],"ttl":"10m"}`)
	var issued struct{ Token, JTI, ExpiresAt string }
	if err := json.Unmarshal([]byte(out), &issued); st != 201 || err != nil || issued.Token == "" {
		t.Fatalf("mint: %d %s", st, out)
	}
	c := g.dial(t, issued.Token)
	if !strings.Contains(string(c.Welcome.Raw), `"user":"newbie"`) || !strings.Contains(string(c.Welcome.Raw), `"tenant":"demo"`) {
		t.Fatalf("welcome: %s", c.Welcome.Raw)
	}
	if jti, _ := idJTI(t, issued.Token); jti != issued.JTI {
		t.Fatalf("jti %s vs %s", jti, issued.JTI)
	}
	if strings.Contains(g.Logs(), issued.Token) {
		t.Fatal("the issued token reached the log")
	}
	if !auditHas(t, g, "token.issue") {
		t.Fatal("no token.issue record")
	}
}

// TestSigningKeyRotation: with auth.signing.previous_key_files set, a token signed by the
// previous key still verifies, and both kids are published at /.well-known/jwks.json.
func TestSigningKeyRotation(t *testing.T) {
	prevPath := filepath.Join(t.TempDir(), "previous.key")
	prev, _, err := auth.EnsureSigningKey(prevPath)
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, gwOptions{env: map[string]string{"FLOWGATE_AUTH_SIGNING_PREVIOUS_KEY_FILES": prevPath}})
	cur := signingKey(t, g)
	prevKID, curKID := auth.KeyID(prev.Public().(ed25519.PublicKey)), auth.KeyID(cur.Public().(ed25519.PublicKey))

	resp, body := g.get(t, g.HTTP+"/.well-known/jwks.json", "")
	var set struct {
		Keys []struct{ Kid, Kty, Crv, Alg, X string }
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil || resp.StatusCode != 200 {
		t.Fatalf("jwks: %d %s", resp.StatusCode, body)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Alg != "EdDSA" {
			t.Fatalf("published key %+v", k)
		}
	}
	if !slices.Contains(kids, prevKID) || !slices.Contains(kids, curKID) || len(kids) != 2 {
		t.Fatalf("kids %v; want current %s and previous %s", kids, curKID, prevKID)
	}
	if strings.Contains(body, `"d"`) {
		t.Fatal("private key material published")
	}
	// The published set verifies the tokens: a previous-key token connects.
	now := time.Now()
	s := authtest.Sign(t, jwt.SigningMethodEdDSA, prevKID, prev, jwt.MapClaims{
		"iss": "flowgate", "aud": "flowgate", "sub": "old-timer", "tenant": "demo", "permissions": []string{"swarm:execute"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "prev-key-token",
	}, nil)
	if c, he := g.tryDial(t, client.Options{Token: s}); he != nil || !strings.Contains(string(c.Welcome.Raw), "old-timer") {
		t.Fatalf("previous-key token: %+v", he)
	}
	// New tokens are signed with the current key.
	if hdr := strings.Split(g.UserToken, ".")[0]; !strings.Contains(idSegment(t, hdr), curKID) {
		t.Fatal("banner token not signed with the current key")
	}
}

func idSegment(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// idpServer is an identity provider's JWKS endpoint in the test process.
type idpServer struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	body     []byte
}

func newIDP(t *testing.T) *idpServer {
	t.Helper()
	s := &idpServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		body := s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *idpServer) publish(keys ...map[string]any) {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

func idB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestExternalIssuersFromConfig: an external issuer with an HS256 key file and one with a
// JWKS URL, configured in a YAML file. The clean way to run --dev with a file: the file
// replaces the embedded dev configuration, so the test starts from configs.Dev (what --dev
// would use), adds auth.issuers (lists of objects come only from a file, never from the
// environment) and passes it with --dev --config FILE.
func TestExternalIssuersFromConfig(t *testing.T) {
	dir := t.TempDir()
	secret := strings.Repeat("s3cr3t-", 6) // 42 bytes
	secretFile := filepath.Join(dir, "platform-hs-1.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	idp, trap := newIDP(t), newIDP(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecRaw, _ := ecKey.PublicKey.Bytes()
	rsaJWK := map[string]any{"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": idB64(rsaKey.N.Bytes()), "e": idB64(big.NewInt(int64(rsaKey.E)).Bytes())}
	ecJWK := map[string]any{"kty": "EC", "kid": "ec-2", "crv": "P-256", "x": idB64(ecRaw[1:33]), "y": idB64(ecRaw[33:])}
	idp.publish(rsaJWK)
	trap.publish(rsaJWK)

	cfgFile := devConfigWithIssuers(t, dir, []map[string]any{
		{"issuer": "https://platform.example/", "keys": []map[string]any{{"kid": "platform-hs-1", "alg": "HS256", "file": secretFile}}},
		{"issuer": "https://idp.example/", "audience": "flowgate-api", "jwks_url": idp.URL + "/.well-known/jwks.json", "jwks_refresh": "1s"},
	})
	g := startGateway(t, gwOptions{args: []string{"--config", cfgFile}})

	now := time.Now()
	claims := func(iss, aud, sub string) jwt.MapClaims {
		return jwt.MapClaims{"iss": iss, "aud": aud, "sub": sub, "tenant": "demo", "permissions": []string{"swarm:execute"},
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": sub + "-jti"}
	}
	hs := authtest.Sign(t, jwt.SigningMethodHS256, "platform-hs-1", []byte(secret), claims("https://platform.example/", "flowgate", "hs-user"), nil)
	rs := authtest.Sign(t, jwt.SigningMethodRS256, "rsa-1", rsaKey, claims("https://idp.example/", "flowgate-api", "rs-user"), nil)
	es := authtest.Sign(t, jwt.SigningMethodES256, "ec-2", ecKey, claims("https://idp.example/", "flowgate-api", "es-user"), nil)
	attacker, _ := rsa.GenerateKey(rand.Reader, 2048)
	tests := []struct {
		name, token string
		reason      string // "" = accepted
	}{
		{"HS256 key file", hs, ""},
		{"RS256 from the JWKS", rs, ""},
		{"JWKS kid presented with the HS issuer", authtest.Sign(t, jwt.SigningMethodRS256, "rsa-1", rsaKey, claims("https://platform.example/", "flowgate", "x"), nil), "unknown_key"},
		{"HS kid presented with the JWKS issuer", authtest.Sign(t, jwt.SigningMethodHS256, "platform-hs-1", []byte(secret), claims("https://idp.example/", "flowgate-api", "x"), nil), "unknown_key"},
		{"JWKS issuer, wrong audience", authtest.Sign(t, jwt.SigningMethodRS256, "rsa-1", rsaKey, claims("https://idp.example/", "flowgate", "x"), nil), "bad_audience"},
		{"jku/x5u/jwk headers pointing at the attacker", authtest.Sign(t, jwt.SigningMethodRS256, "attacker", attacker,
			claims("https://idp.example/", "flowgate-api", "x"), map[string]any{"jku": trap.URL + "/jwks", "x5u": trap.URL + "/x5u",
				"jwk": map[string]any{"kty": "RSA", "kid": "attacker", "n": idB64(attacker.N.Bytes()), "e": "AQAB"}}), "unknown_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, he := g.tryDial(t, client.Options{Token: tt.token})
			if tt.reason == "" {
				if he != nil {
					t.Fatalf("refused: %+v", he)
				}
				c.Close()
				return
			}
			if he == nil {
				t.Fatal("accepted")
			}
			if he.Status != 401 || (tt.reason != "" && !strings.Contains(he.Detail, tt.reason)) {
				t.Fatalf("refusal %+v; want 401 %s", he, tt.reason)
			}
		})
	}
	if n := trap.requests.Load(); n != 0 {
		t.Fatalf("%d requests reached URLs named in token headers", n)
	}
	// Rotation through the running binary: the provider adds the EC key; the refresher (1 s)
	// or the unknown-kid refresh picks it up.
	if _, he := g.tryDial(t, client.Options{Token: es}); he == nil {
		t.Fatal("a kid not yet published was accepted")
	}
	idp.publish(rsaJWK, ecJWK)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, he := g.tryDial(t, client.Options{Token: es})
		if he == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated key never accepted: %+v", he)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The old key leaves the set: its tokens stop verifying.
	idp.publish(ecJWK)
	deadline = time.Now().Add(20 * time.Second)
	for {
		c, he := g.tryDial(t, client.Options{Token: rs})
		if he != nil && he.Status == 401 {
			break
		}
		if c != nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("a key removed from the set still verifies")
		}
		time.Sleep(300 * time.Millisecond)
	}
	// A flood of made-up kids costs at most one fetch per refresh interval, on top of the
	// background refresh (1 s here): far fewer fetches than tokens.
	before := idp.requests.Load()
	start := time.Now()
	for i := range 40 {
		tok := authtest.Sign(t, jwt.SigningMethodRS256, fmt.Sprint("made-up-", i), attacker, claims("https://idp.example/", "flowgate-api", "x"), nil)
		if _, he := g.tryDial(t, client.Options{Token: tok}); he == nil {
			t.Fatal("made-up kid accepted")
		}
	}
	elapsed := time.Since(start)
	if n, limit := idp.requests.Load()-before, 2*int64(elapsed/time.Second)+3; n > limit {
		t.Fatalf("%d fetches for 40 unknown kids in %v; want at most %d", n, elapsed, limit)
	}
	if strings.Contains(g.Logs(), secret) {
		t.Fatal("the HS256 secret reached the log")
	}
}

// TestTokenCLI: `token issue` refuses an unknown tenant and prints {token, jti, expiresAt}
// with --json; `token revoke --jti` against a running server closes the session using the
// token within 5 s and refuses it afterwards.
func TestTokenCLI(t *testing.T) {
	g := startGateway(t, gwOptions{})
	if out, err := g.cli(t, "", "token", "issue", "--dev", "--data-dir", g.dataDir, "--tenant", "nosuch", "--sub", "x", "--perm", "swarm:execute"); err == nil || !strings.Contains(out, "tenant nosuch does not exist") {
		t.Fatalf("token for an unknown tenant: %v\n%s", err, out)
	}
	out, err := g.cli(t, "", "token", "issue", "--dev", "--data-dir", g.dataDir, "--tenant", "demo", "--sub", "tess", "--perm", "swarm:execute", "--ttl", "1h", "--json")
	if err != nil {
		t.Fatalf("token issue --json: %v\n%s", err, out)
	}
	var issued struct{ Token, JTI, ExpiresAt string }
	if err := json.Unmarshal([]byte(out), &issued); err != nil || issued.Token == "" || issued.JTI == "" || issued.ExpiresAt == "" {
		t.Fatalf("token issue --json printed %q (%v)", out, err)
	}
	if jti, _ := idJTI(t, issued.Token); jti != issued.JTI {
		t.Fatalf("jti %q, token's %q", issued.JTI, jti)
	}
	// token list names it (from the audit), so it can be revoked by jti alone.
	out, err = g.cli(t, "", "token", "list", "--dev", "--data-dir", g.dataDir, "--tenant", "demo")
	if err != nil || !regexp.MustCompile(issued.JTI+`\s+tess\s+swarm:execute\s.*\svalid\n`).MatchString(out) {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	c := g.dial(t, issued.Token)
	start := time.Now()
	if out, err := g.cli(t, "", "token", "revoke", "--dev", "--data-dir", g.dataDir, "--jti", issued.JTI, "--tenant", "demo"); err != nil {
		t.Fatalf("token revoke: %v\n%s", err, out)
	}
	ce := waitClosed(t, nil, c, 8*time.Second)
	if ce.Code != 1008 || ce.Text != "token_revoked" {
		t.Fatalf("closed with %d %q; want 1008 token_revoked", ce.Code, ce.Text)
	}
	t.Logf("closed %v after the CLI revoked it", time.Since(start).Round(time.Millisecond))
	if _, he := g.tryDial(t, client.Options{Token: issued.Token}); he == nil || he.Status != 401 || !strings.Contains(he.Detail, "token_revoked") {
		t.Fatalf("revoked token reconnect: %+v", he)
	}
	if out, err := g.cli(t, "", "token", "list", "--dev", "--data-dir", g.dataDir, "--tenant", "demo", "--json"); err != nil ||
		!strings.Contains(out, `"jti":"`+issued.JTI+`"`) || !strings.Contains(out, `"revoked":true`) {
		t.Fatalf("token list --json after the revocation: %v\n%s", err, out)
	}
}

// TestTicketsPerPrincipal: one token cannot take the ticket pool (auth.tickets_per_principal,
// 20): its 21st outstanding ticket is refused with 429 while another tenant's user still gets
// tickets, and a redeemed ticket frees a place.
func TestTicketsPerPrincipal(t *testing.T) {
	g := startGateway(t, gwOptions{})
	idCreateTenant(t, g, "other")
	hog := g.token(t, "demo", "hog", "1h", "swarm:execute")
	bea := g.token(t, "other", "bea", "1h", "swarm:execute")
	var first string
	for i := range 20 {
		st, body, _ := idPost(t, g, "/v1/ws-ticket", hog, "")
		if st != 201 {
			t.Fatalf("ticket %d: %d %s", i+1, st, body)
		}
		if i == 0 {
			var tk struct{ Ticket string }
			if err := json.Unmarshal([]byte(body), &tk); err != nil {
				t.Fatal(err)
			}
			first = tk.Ticket
		}
	}
	if st, body, _ := idPost(t, g, "/v1/ws-ticket", hog, ""); st != 429 || !strings.Contains(body, "rate_limited") {
		t.Fatalf("21st ticket: %d %s", st, body)
	}
	if st, body, _ := idPost(t, g, "/v1/ws-ticket", bea, ""); st != 201 {
		t.Fatalf("another tenant's user: %d %s", st, body)
	}
	c, he := g.tryDial(t, client.Options{Token: first, TokenSource: client.TokenTicket})
	if he != nil {
		t.Fatalf("redeeming the first ticket: %+v", he)
	}
	c.Close()
	if st, body, _ := idPost(t, g, "/v1/ws-ticket", hog, ""); st != 201 {
		t.Fatalf("after a redemption: %d %s", st, body)
	}
}

// devConfigWithIssuers writes what --dev uses (configs.Dev) plus auth.issuers into dir and
// returns the file: lists of objects come only from a file, never from the environment, and
// --dev --config FILE replaces the embedded dev configuration.
func devConfigWithIssuers(t *testing.T, dir string, issuers []map[string]any) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(configs.Dev, &doc); err != nil {
		t.Fatal(err)
	}
	authSection, _ := doc["auth"].(map[string]any)
	if authSection == nil {
		authSection = map[string]any{}
	}
	authSection["issuers"] = issuers
	doc["auth"] = authSection
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "flowgate.yaml")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgFile
}

// TestRevokeCancelsTasks: {"cancelTasks":true} in the revoke body (or
// auth.revoke_cancels_tasks) cancels the running tasks the token started: task_complete
// cancelled with error token_revoked, no engine process left; another token's task of the
// same user runs on; without it (the default) a revocation only detaches.
func TestRevokeCancelsTasks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    map[string]string
		body   string
		cancel bool
	}{
		{"body", nil, `"cancelTasks":true`, true},
		{"config", map[string]string{"FLOWGATE_AUTH_REVOKE_CANCELS_TASKS": "true"}, "", true},
		{"config overridden by the body", map[string]string{"FLOWGATE_AUTH_REVOKE_CANCELS_TASKS": "true"}, `"cancelTasks":false`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, gwOptions{env: tc.env})
			rita := g.token(t, "demo", "rita", "1h", "swarm:execute")
			other := g.token(t, "demo", "rita", "1h", "swarm:execute")
			jti, exp := idJTI(t, rita)
			c := g.dial(t, rita)
			id := startSwarm(t, c, "long revoke sim:pace=100ms sim:events=300", nil)
			c2 := g.dial(t, other)
			id2 := startSwarm(t, c2, "long keep sim:pace=100ms sim:events=300", nil)

			body := fmt.Sprintf(`{"jti":%q,"expiresAt":%q`, jti, exp.UTC().Format(time.RFC3339))
			if tc.body != "" {
				body += "," + tc.body
			}
			st, out, _ := idPost(t, g, "/v1/admin/tokens/revoke", g.AdminToken, body+"}")
			if st != 200 || !strings.Contains(out, fmt.Sprintf(`"cancelTasks":%t`, tc.cancel)) {
				t.Fatalf("revoke: %d %s", st, out)
			}
			status := func(id string) client.Message {
				t.Helper()
				if err := c2.Send(map[string]any{"type": "status", "taskId": id, "requestId": "st-" + id}); err != nil {
					t.Fatal(err)
				}
				return readUntil(t, c2, 10*time.Second, func(m client.Message) bool { return m.RequestID == "st-"+id })
			}
			t.Cleanup(func() { // spare the shutdown grace
				_ = c2.Send(map[string]any{"type": "cancel", "taskId": id})
				_ = c2.Send(map[string]any{"type": "cancel", "taskId": id2})
				waitFor(t, 10*time.Second, func() bool { return len(procsIn(t, filepath.Join(g.dataDir, "tasks"))) == 0 })
			})
			if !tc.cancel {
				// The revoke call has answered: a cancellation would have been asked for
				// already, and a cancelled engine stops writing at once. This one writes five
				// more events, and its task is running throughout.
				lastSeq := func(m client.Message) int64 {
					var st struct{ LastSeq int64 }
					_ = json.Unmarshal(m.Raw, &st)
					return st.LastSeq
				}
				from := lastSeq(status(id))
				waitFor(t, 20*time.Second, func() bool {
					m := status(id)
					if m.Status != "running" {
						t.Fatalf("task of a revoked token without cancelTasks: %s; want running (detached)", m.Raw)
					}
					return lastSeq(m) >= from+5
				})
				return
			}
			waitFor(t, 10*time.Second, func() bool { return status(id).Status == "cancelled" })
			if m := status(id2); m.Status != "running" {
				t.Fatalf("the same user's task under another token: %s; want running", m.Raw)
			}
			var rec struct {
				Reason  string
				Details struct{ Status string }
			}
			for _, line := range strings.Split(g.mustRun(t, &transcript{}, "", "audit", "export", "--tenant", "demo"), "\n") {
				if strings.Contains(line, `"action":"task.complete"`) && strings.Contains(line, id) {
					if err := json.Unmarshal([]byte(line), &rec); err != nil {
						t.Fatal(err)
					}
				}
			}
			if rec.Details.Status != "cancelled" || rec.Reason != "token_revoked" {
				t.Fatalf("task.complete of the revoked token's task: %+v; want cancelled, reason token_revoked", rec)
			}
			_ = c2.Send(map[string]any{"type": "cancel", "taskId": id2})
			waitFor(t, 10*time.Second, func() bool { return len(procsIn(t, filepath.Join(g.dataDir, "tasks"))) == 0 })
		})
	}
}
