package cluster

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Observer receives the latency and outcome of Redis commands (the server's metrics).
type Observer interface {
	// Observe reports one command by its lower-case name: "script" for EVAL and EVALSHA,
	// "pipeline" for a pipeline or a MULTI/EXEC transaction, "dial" for a new connection.
	// err is nil on success and for an empty answer (redis.Nil). d is zero for a blocking
	// read (XREAD BLOCK), whose time is spent waiting for data, not on Redis.
	Observe(cmd string, d time.Duration, err error)
}

// observeHook reports every command, pipeline and dial of a client to an Observer.
type observeHook struct{ o Observer }

var _ redis.Hook = observeHook{}

func (h observeHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := time.Now()
		conn, err := next(ctx, network, addr)
		h.o.Observe("dial", time.Since(start), redisFailure(err))
		return conn, err
	}
}

func (h observeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := commandName(cmd)
		if connSetup(name) {
			return next(ctx, cmd)
		}
		start := time.Now()
		err := next(ctx, cmd)
		d := time.Since(start)
		if name == "xread" && blocking(cmd) {
			d = 0
		}
		h.o.Observe(name, d, redisFailure(err))
		return err
	}
}

func (h observeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if setupOnly(cmds) {
			return next(ctx, cmds)
		}
		start := time.Now()
		err := next(ctx, cmds)
		d := time.Since(start)
		// The pipeline's error is its first command's, redis.Nil included: look for a real one.
		var failed error
		if redisFailure(err) != nil {
			failed = err
		}
		for _, c := range cmds {
			if failed != nil {
				break
			}
			failed = redisFailure(c.Err())
		}
		h.o.Observe("pipeline", d, failed)
		return err
	}
}

// commandName is the command's lower-case name, with the script commands under one name.
func commandName(cmd redis.Cmder) string {
	switch name := cmd.Name(); name {
	case "eval", "evalsha", "eval_ro", "evalsha_ro":
		return "script"
	default:
		return name
	}
}

// connSetup reports whether a command is one the client sends on each new connection
// (HELLO, AUTH, SELECT, CLIENT SETNAME/SETINFO): part of the dial, not of flowgate's work,
// and CLIENT SETINFO fails by design on a Redis older than 7.2 (the client ignores that).
// flowgate itself sends none of them.
func connSetup(name string) bool {
	switch name {
	case "hello", "auth", "select", "client":
		return true
	}
	return false
}

// setupOnly reports whether a pipeline is a new connection's setup.
func setupOnly(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if !connSetup(c.Name()) {
			return false
		}
	}
	return len(cmds) > 0
}

// blocking reports whether a command carries a BLOCK argument.
func blocking(cmd redis.Cmder) bool {
	for _, a := range cmd.Args() {
		if s, ok := a.(string); ok && strings.EqualFold(s, "block") {
			return true
		}
	}
	return false
}

// redisFailure is err unless it is an answer rather than a failure: an empty reply
// (redis.Nil), a script not cached yet (NOSCRIPT, after which the client sends the script
// itself), or a caller that gave up.
func redisFailure(err error) error {
	switch {
	case err == nil, errors.Is(err, redis.Nil), errors.Is(err, context.Canceled),
		redis.HasErrorPrefix(err, "NOSCRIPT"):
		return nil
	}
	return err
}
