package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flowgate/flowgate/internal/session"
)

// SessionHub is this node's live sessions (session.Hub), for questions from other nodes.
type SessionHub interface {
	Sessions(tenant string, limit int) []session.Info
	Terminate(tenant, id string) bool
}

var _ SessionHub = (*session.Hub)(nil)

// askTimeout bounds how long a question to every node waits for their answers: a node that
// does not answer by then (dying, or cut off from Redis) is left out and the answer says so.
const askTimeout = 2 * time.Second

// maxAnswerBytes bounds one node's answer (a session list of MaxSessionList entries fits).
const maxAnswerBytes = 1 << 20

// MaxSessionList bounds the sessions one node lists for a tenant.
const MaxSessionList = 1000

type sessionsAnswer struct {
	Node     string         `json:"node"`
	Sessions []session.Info `json:"sessions,omitempty"`
	Found    bool           `json:"found,omitempty"`
}

// askAll publishes m on the bus and collects one answer from every node that received it
// (PUBLISH counts them), this one included, or what arrived within askTimeout (complete is
// then false).
func (c *Cluster) askAll(ctx context.Context, m message) (answers []sessionsAnswer, complete bool, err error) {
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	m.Reply = "fg:reply:" + hex.EncodeToString(nonce[:])
	ps := c.rdb.Subscribe(ctx, m.Reply)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the subscription is in place before anyone can answer
		return nil, false, fmt.Errorf("cluster: subscribe for answers: %w", err)
	}
	ch := ps.Channel(redis.WithChannelSize(64))
	m.From = c.opts.Node
	data, err := json.Marshal(m)
	if err != nil {
		return nil, false, err
	}
	n, err := c.rdb.Publish(ctx, busChannel, data).Result()
	if err != nil {
		return nil, false, fmt.Errorf("cluster: publish %s: %w", m.Op, err)
	}
	timer := time.NewTimer(askTimeout)
	defer timer.Stop()
	for int64(len(answers)) < n {
		select {
		case <-ctx.Done():
			return answers, false, ctx.Err()
		case <-timer.C:
			c.log.Warn("cluster: not every node answered", "op", m.Op, "asked", n, "answered", len(answers))
			return answers, false, nil
		case msg, ok := <-ch:
			if !ok {
				return answers, false, nil
			}
			var a sessionsAnswer
			if len(msg.Payload) > maxAnswerBytes || json.Unmarshal([]byte(msg.Payload), &a) != nil {
				c.log.Warn("cluster: malformed answer dropped", "op", m.Op)
				continue
			}
			answers = append(answers, a)
		}
	}
	return answers, true, nil
}

// answer replies to a question from another node (or this one) on its reply channel.
func (c *Cluster) answer(ctx context.Context, m message) {
	if c.hs.Sessions == nil || m.Tenant == "" || !strings.HasPrefix(m.Reply, "fg:reply:") {
		return
	}
	a := sessionsAnswer{Node: c.opts.Node}
	switch m.Op {
	case "sessions":
		a.Sessions = c.hs.Sessions.Sessions(m.Tenant, MaxSessionList)
		for i := range a.Sessions {
			a.Sessions[i].Node = c.opts.Node
		}
	case "endsession":
		a.Found = m.Session != "" && c.hs.Sessions.Terminate(m.Tenant, m.Session)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return
	}
	if err := c.rdb.Publish(ctx, m.Reply, data).Err(); err != nil {
		c.log.Warn("cluster: answer not sent", "op", m.Op, "err", err)
	}
}

// ListSessions returns tenant's live sessions on every node, oldest first, at most limit;
// complete is false when a node did not answer in time.
func (c *Cluster) ListSessions(ctx context.Context, tenant string, limit int) ([]session.Info, bool, error) {
	answers, complete, err := c.askAll(ctx, message{Op: "sessions", Tenant: tenant})
	if err != nil {
		return nil, false, err
	}
	var all []session.Info
	for _, a := range answers {
		all = append(all, a.Sessions...)
	}
	slices.SortFunc(all, func(a, b session.Info) int {
		if d := a.ConnectedAt.Compare(b.ConnectedAt); d != 0 {
			return d
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(all) > limit {
		all = all[:limit]
	}
	return all, complete, nil
}

// TerminateSession closes tenant's session id on whichever node holds it (1008
// session_terminated) and reports whether one did.
func (c *Cluster) TerminateSession(ctx context.Context, tenant, id string) (bool, error) {
	answers, _, err := c.askAll(ctx, message{Op: "endsession", Tenant: tenant, Session: id})
	if err != nil {
		return false, err
	}
	for _, a := range answers {
		if a.Found {
			return true, nil
		}
	}
	return false, nil
}
