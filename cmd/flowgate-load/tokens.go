package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/client"
)

const maxTokenBytes = 8 << 10

// tokens hands every connection its credential: one minted per user (connection i speaks
// for user i mod users), one shared token, or none. All are minted before any timing starts.
type tokens struct {
	source  string
	shared  string
	perUser []string
	probe   string // idle --probe's own user: its swarm must not queue behind another's limits
}

func newTokens(cfg *config, getenv func(string) string) (*tokens, error) {
	t := &tokens{source: map[string]string{
		"header": client.TokenHeader, "subprotocol": client.TokenSubprotocol, "query": client.TokenQuery,
	}[cfg.TokenSource]}
	switch cfg.Auth {
	case "none":
		return t, nil
	case "token":
		tok := getenv("FLOWGATE_LOAD_TOKEN")
		if cfg.tokenFile != "" {
			b, err := readBounded(cfg.tokenFile, maxTokenBytes)
			if err != nil {
				return nil, fmt.Errorf("token file: %w", err)
			}
			tok = strings.TrimSpace(string(b))
		}
		if tok == "" {
			return nil, errors.New("the token is empty")
		}
		t.shared = tok
		return t, nil
	}
	mint, err := minter(cfg)
	if err != nil {
		return nil, err
	}
	users := cfg.Users
	if conns := max(cfg.Conns, cfg.Clients); users == 0 || users > conns {
		users = conns
	}
	t.perUser = make([]string, users)
	for i := range t.perUser {
		tok, err := mint(cfg.subPrefix + strconv.Itoa(i))
		if err != nil {
			return nil, fmt.Errorf("mint token: %w", err)
		}
		t.perUser[i] = tok
	}
	if cfg.Probe {
		// Not a number, so never one of the held connections' users.
		if t.probe, err = mint(cfg.subPrefix + "probe"); err != nil {
			return nil, fmt.Errorf("mint token: %w", err)
		}
	}
	return t, nil
}

// minter returns a function minting a token for a subject: Ed25519 with the gateway's own
// signing key, or HS256 with a shared secret of an issuer the gateway is configured to trust.
func minter(cfg *config) (func(sub string) (string, error), error) {
	if cfg.hs256Secret != "" {
		secret, err := auth.LoadVerificationKey(cfg.hs256Secret, auth.AlgHS256)
		if err != nil {
			return nil, fmt.Errorf("hs256 secret: %w", err)
		}
		return func(sub string) (string, error) {
			now := time.Now()
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
				"iss": cfg.issuer, "aud": cfg.audience, "sub": sub, "tenant": cfg.Tenant,
				"permissions": []string{auth.PermSwarmExecute}, "iat": now.Unix(),
				"exp": now.Add(cfg.tokenTTL).Unix(), "jti": strconv.FormatInt(now.UnixNano(), 36) + sub,
			})
			if cfg.kid != "" {
				tok.Header["kid"] = cfg.kid
			}
			return tok.SignedString(secret)
		}, nil
	}
	key, err := auth.LoadSigningKey(cfg.signingKey)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	signer, err := auth.NewSigner(auth.SignerOptions{
		Issuer: cfg.issuer, Audience: cfg.audience, TenantClaim: "tenant", Key: key, DefaultTTL: cfg.tokenTTL, MaxTTL: cfg.tokenTTL,
	})
	if err != nil {
		return nil, err
	}
	return func(sub string) (string, error) {
		iss, err := signer.Issue(auth.IssueRequest{
			Tenant: cfg.Tenant, Subject: sub, Permissions: []string{auth.PermSwarmExecute}, TTL: cfg.tokenTTL,
		})
		return iss.Token, err
	}, nil
}

// options returns the Dial options of connection i.
func (t *tokens) options(i int) client.Options {
	o := client.Options{TokenSource: t.source, Token: t.shared}
	if len(t.perUser) > 0 {
		o.Token = t.perUser[i%len(t.perUser)]
	}
	return o
}

// probeOptions returns the Dial options of idle --probe's connection.
func (t *tokens) probeOptions() client.Options {
	o := client.Options{TokenSource: t.source, Token: t.shared}
	if t.probe != "" {
		o.Token = t.probe
	}
	return o
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
