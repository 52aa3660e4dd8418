package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

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
	key, err := auth.LoadSigningKey(cfg.signingKey)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	signer, err := auth.NewSigner(auth.SignerOptions{
		Issuer: cfg.issuer, Audience: cfg.audience, Key: key, DefaultTTL: cfg.tokenTTL, MaxTTL: cfg.tokenTTL,
	})
	if err != nil {
		return nil, err
	}
	users := cfg.Users
	if conns := max(cfg.Conns, cfg.Clients); users == 0 || users > conns {
		users = conns
	}
	t.perUser = make([]string, users)
	for i := range t.perUser {
		iss, err := signer.Issue(auth.IssueRequest{
			Tenant: cfg.Tenant, Subject: cfg.subPrefix + strconv.Itoa(i),
			Permissions: []string{auth.PermSwarmExecute}, TTL: cfg.tokenTTL,
		})
		if err != nil {
			return nil, fmt.Errorf("mint token: %w", err)
		}
		t.perUser[i] = iss.Token
	}
	return t, nil
}

// options returns the Dial options of connection i.
func (t *tokens) options(i int) client.Options {
	o := client.Options{TokenSource: t.source, Token: t.shared}
	if len(t.perUser) > 0 {
		o.Token = t.perUser[i%len(t.perUser)]
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
