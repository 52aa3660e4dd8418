package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

const busChannel = "fg:bus"

func nodeChannel(node string) string { return "fg:node:" + node }

// message is what travels on the bus (changes every node applies) and on a node's own
// channel (commands for the node running a task).
type message struct {
	Op     string    `json:"op"` // revoke | tenant | key | cancel | hold | sessions | endsession
	Tenant string    `json:"tenant,omitempty"`
	JTI    string    `json:"jti,omitempty"`
	Exp    time.Time `json:"exp,omitzero"`
	Task   string    `json:"task,omitempty"`
	Cancel bool      `json:"cancel,omitempty"` // revoke: cancel the token's tasks too
	// Session and Reply: a question every node answers on the Reply channel (sessions.go).
	Session string `json:"session,omitempty"`
	Reply   string `json:"reply,omitempty"`
	From    string `json:"from"`
}

func (c *Cluster) send(ctx context.Context, channel string, m message) error {
	m.From = c.opts.Node
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := c.rdb.Publish(ctx, channel, data).Err(); err != nil {
		return fmt.Errorf("cluster: publish %s: %w", m.Op, err)
	}
	return nil
}

// Revoked announces a revocation to every node (this one has applied it already).
func (c *Cluster) Revoked(ctx context.Context, tenant, jti string, exp time.Time, cancelTasks bool) error {
	return c.send(ctx, busChannel, message{Op: "revoke", Tenant: tenant, JTI: jti, Exp: exp, Cancel: cancelTasks})
}

// TenantChanged announces a tenant update (suspension, limits) to every node.
func (c *Cluster) TenantChanged(ctx context.Context, tenant string) error {
	return c.send(ctx, busChannel, message{Op: "tenant", Tenant: tenant})
}

// KeyChanged announces a key change so every node drops its cached key.
func (c *Cluster) KeyChanged(ctx context.Context, tenant string) error {
	return c.send(ctx, busChannel, message{Op: "key", Tenant: tenant})
}

// Cancel implements task.Cluster.
func (c *Cluster) Cancel(ctx context.Context, node, taskID string) error {
	if node == c.opts.Node && c.local != nil {
		c.local.CancelLocal(taskID)
		return nil
	}
	return c.send(ctx, nodeChannel(node), message{Op: "cancel", Task: taskID})
}

// Hold implements task.Cluster.
func (c *Cluster) Hold(ctx context.Context, node, taskID string) error {
	if node == c.opts.Node && c.local != nil {
		c.local.HoldLocal(taskID)
		return nil
	}
	return c.send(ctx, nodeChannel(node), message{Op: "hold", Task: taskID})
}

// listen applies bus messages and this node's commands until ctx ends. go-redis
// resubscribes by itself after a Redis restart.
func (c *Cluster) listen(ctx context.Context) {
	ps := c.rdb.Subscribe(ctx, busChannel, nodeChannel(c.opts.Node))
	defer ps.Close()
	ch := ps.Channel(redis.WithChannelSize(1024))
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			var m message
			if len(msg.Payload) > 4096 || json.Unmarshal([]byte(msg.Payload), &m) != nil {
				c.log.Warn("cluster: malformed bus message dropped", "channel", msg.Channel)
				continue
			}
			c.apply(ctx, m)
		}
	}
}

func (c *Cluster) apply(ctx context.Context, m message) {
	switch m.Op {
	case "revoke":
		if c.hs.Revoked != nil && m.JTI != "" {
			c.hs.Revoked(ctx, m.Tenant, m.JTI, m.Exp, m.Cancel)
		}
	case "tenant":
		if c.hs.TenantChanged != nil && m.Tenant != "" {
			c.hs.TenantChanged(ctx, m.Tenant)
		}
	case "key":
		if c.hs.KeyChanged != nil && m.Tenant != "" {
			c.hs.KeyChanged(ctx, m.Tenant)
		}
	case "cancel":
		if c.local != nil && m.Task != "" {
			c.local.CancelLocal(m.Task)
		}
	case "hold":
		if c.local != nil && m.Task != "" {
			c.local.HoldLocal(m.Task)
		}
	case "sessions", "endsession":
		c.answer(ctx, m)
	}
}
