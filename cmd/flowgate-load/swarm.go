package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/flowgate/flowgate/internal/client"
)

// swarmRun is one swarm as the client saw it.
type swarmRun struct {
	reqID      string
	taskID     string
	sent       time.Time
	created    time.Time
	firstEvent time.Time
	done       time.Time
	status     string // task_complete's status, "error:<code>", or "" while unfinished
	completed  bool   // task_complete arrived
	events     int64
	lastSeq    int64
	seqSeen    bool
	gaps       int64
}

// plan is what every connection of a swarm mode does.
type plan struct {
	objective string
	agents    int
	inflight  int
	warmup    time.Duration
	// Optional recorders; nil ones are skipped.
	latency, latencyWarmup *hist // engine→client, from emittedAtNs
	created, completed     *hist // swarm sent → task_created / task_complete
	firstEvent             *hist // swarm sent → the task's first engine event
}

type swarmMessage struct {
	Type      string       `json:"type"`
	Objective string       `json:"objective"`
	Options   swarmOptions `json:"options"`
	RequestID string       `json:"requestId"`
}

type swarmOptions struct {
	Agents int `json:"agents"`
}

// connStats is what one connection counted beyond its runs.
type connStats struct {
	stray int64 // frames naming a task this connection did not start
	err   error // why the connection ended early
}

// drive runs runs over one connection, p.inflight at a time, until each has completed or
// failed, or ctx ends. It is the connection's only reader and only writer. Replies are
// matched to swarms by the echoed requestId, or in order when the server echoes none (the
// seed answers a connection's swarms in the order they were sent).
func drive(ctx context.Context, c *client.Conn, p *plan, runs []*swarmRun, errs *errorLog) connStats {
	var st connStats
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()

	var (
		buf     = make([]byte, 0, 16<<10)
		fi      client.FrameInfo
		next    int
		pending []*swarmRun // sent, waiting for task_created
		live    = make(map[string]*swarmRun, p.inflight)
		ended   int
	)
	send := func() error {
		r := runs[next]
		next++
		r.reqID = "r" + strconv.Itoa(next)
		pending = append(pending, r)
		r.sent = time.Now()
		return c.Send(swarmMessage{Type: "swarm", Objective: p.objective, Options: swarmOptions{Agents: p.agents}, RequestID: r.reqID})
	}
	finish := func(r *swarmRun, now time.Time, status string) error {
		r.done, r.status = now, status
		ended++
		if next < len(runs) {
			return send()
		}
		return nil
	}
	takePending := func(reqID []byte) *swarmRun {
		for i, r := range pending {
			if len(reqID) == 0 || r.reqID == string(reqID) {
				pending = append(pending[:i], pending[i+1:]...)
				return r
			}
		}
		return nil
	}

	for next < len(runs) && next < p.inflight {
		if err := send(); err != nil {
			st.err = err
			return st
		}
	}
	for ended < len(runs) {
		var err error
		buf, _, err = c.ReadRaw(buf)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			st.err = err
			return st
		}
		now := time.Now()
		if err := client.ScanFrame(buf, &fi); err != nil {
			errs.add("bad_frame", err)
			continue
		}
		switch string(fi.Type) {
		case "task_created":
			r := takePending(fi.RequestID)
			if r == nil {
				errs.add("unexpected_task_created", nil)
				continue
			}
			r.created, r.taskID = now, string(fi.TaskID)
			live[r.taskID] = r
			if p.created != nil {
				p.created.record(now.Sub(r.sent))
			}
		case "task_complete":
			r := live[string(fi.TaskID)]
			if r == nil {
				st.stray++
				continue
			}
			r.checkSeq(&fi)
			delete(live, r.taskID)
			if p.completed != nil {
				p.completed.record(now.Sub(r.sent))
			}
			r.completed = true
			status := string(fi.Status)
			if status != "success" {
				errs.add("task_"+status, nil)
			}
			err = finish(r, now, status)
		case "error":
			code := string(fi.Code)
			if code == "" {
				code = "error"
			}
			var r *swarmRun
			if len(fi.TaskID) > 0 {
				if r = live[string(fi.TaskID)]; r != nil {
					delete(live, r.taskID)
				}
			} else {
				r = takePending(fi.RequestID)
			}
			// rate_limited and quota_exceeded are counted like any refusal, never retried:
			// a load run that needs retries has not raised the server's limits.
			errs.add(code, fmt.Errorf("%s", buf[:min(len(buf), 200)]))
			if r != nil {
				err = finish(r, now, "error:"+code)
			}
		case "connection", "pong", "status", "tasks", "reauthenticated", "task_cancelled":
		default:
			r := live[string(fi.TaskID)]
			if r == nil {
				st.stray++
				continue
			}
			r.events++
			if r.events == 1 {
				r.firstEvent = now
				if p.firstEvent != nil {
					p.firstEvent.record(now.Sub(r.sent))
				}
			}
			r.checkSeq(&fi)
			if fi.HasEmittedAt && p.latency != nil {
				lat := time.Duration(now.UnixNano() - fi.EmittedAtNs)
				if now.Sub(r.firstEvent) >= p.warmup {
					p.latency.record(lat)
				} else {
					p.latencyWarmup.record(lat)
				}
			}
		}
		if err != nil {
			st.err = err
			return st
		}
	}
	return st
}

// checkSeq counts a break in the task's seq: each frame must carry the previous seq + 1,
// starting at 1. Frames without seq (the seed's) are not checked.
func (r *swarmRun) checkSeq(fi *client.FrameInfo) {
	if !fi.HasSeq {
		return
	}
	want := r.lastSeq + 1
	if fi.Seq != want {
		r.gaps++
	}
	r.seqSeen, r.lastSeq = true, fi.Seq
}

// swarmTotals is what every swarm mode reports about its swarms.
type swarmTotals struct {
	Connected              int            `json:"connected"`
	ConnectMs              latency        `json:"connectMs"`
	Swarms                 int            `json:"swarms"`
	Completed              int            `json:"completed"` // task_complete received
	Succeeded              int            `json:"succeeded"`
	Failed                 int            `json:"failed"` // refused, not successful, or unfinished
	ByStatus               map[string]int `json:"byStatus"`
	ExpectedEventsPerSwarm int64          `json:"expectedEventsPerSwarm"` // the sim's: events + agents + 2
	Events                 int64          `json:"events"`                 // engine events received
	MissingEvents          int64          `json:"missingEvents"`          // expected − received, over completed swarms
	ExtraEvents            int64          `json:"extraEvents"`
	SeqChecked             bool           `json:"seqChecked"` // frames carried seq (flowgate; the seed has none)
	SeqGaps                int64          `json:"seqGaps"`
	StrayFrames            int64          `json:"strayFrames"`
	RSS                    *rssReport     `json:"rss,omitempty"`

	firstSent, firstEvent, lastDone time.Time
}

// runSwarms dials clients connections, splits runs over them and drives them all from
// one start signal, so connection setup is not in any figure.
func runSwarms(ctx context.Context, cfg *config, toks *tokens, errs *errorLog, p *plan, swarms int) (*swarmTotals, []*swarmRun) {
	tot := &swarmTotals{Swarms: swarms, ByStatus: map[string]int{}}
	var h hist
	all, _ := dialAll(ctx, cfg, toks, cfg.Clients, streamReadBuffer, errs, &h)
	defer closeAll(all, cfg.Dialers)
	var conns []*client.Conn
	for _, c := range all {
		if c != nil {
			conns = append(conns, c)
		}
	}
	tot.Connected, tot.ConnectMs = len(conns), h.summary()

	runs := make([]*swarmRun, swarms)
	for i := range runs {
		runs[i] = &swarmRun{}
	}
	// Live connection i gets runs i, i+n, i+2n, ... (none when no connection succeeded:
	// every run is then unfinished).
	perConn := make([][]*swarmRun, len(conns))
	for i, r := range runs {
		if len(conns) > 0 {
			perConn[i%len(conns)] = append(perConn[i%len(conns)], r)
		}
	}

	var sampler *rssSampler
	if cfg.ServerPID > 0 {
		before, err := readRSS(cfg.ServerPID)
		if err != nil {
			errs.add("rss", err)
		}
		tot.RSS = &rssReport{PID: cfg.ServerPID, BeforeKiB: before}
		sampler = startRSSSampler(cfg.ServerPID, 250*time.Millisecond)
	}
	startSignal := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, c := range conns {
		wg.Go(func() {
			<-startSignal
			st := drive(ctx, c, p, perConn[i], errs)
			mu.Lock()
			tot.StrayFrames += st.stray
			mu.Unlock()
			if st.err != nil {
				kind := "connection_ended"
				if errors.Is(st.err, context.DeadlineExceeded) {
					kind = "timeout"
				}
				errs.add(kind, st.err)
			}
		})
	}
	close(startSignal)
	wg.Wait()
	if sampler != nil {
		tot.RSS.PeakKiB = sampler.Stop()
		after, err := readRSS(cfg.ServerPID)
		if err != nil {
			errs.add("rss", err)
		}
		tot.RSS.AfterKiB = after
	}

	expected := int64(cfg.Events + cfg.Agents + 2)
	tot.ExpectedEventsPerSwarm = expected
	unfinished := 0
	for _, r := range runs {
		tot.Events += r.events
		tot.SeqGaps += r.gaps
		tot.SeqChecked = tot.SeqChecked || r.seqSeen
		if !r.sent.IsZero() && (tot.firstSent.IsZero() || r.sent.Before(tot.firstSent)) {
			tot.firstSent = r.sent
		}
		if !r.firstEvent.IsZero() && (tot.firstEvent.IsZero() || r.firstEvent.Before(tot.firstEvent)) {
			tot.firstEvent = r.firstEvent
		}
		switch {
		case r.status == "":
			unfinished++
			tot.ByStatus["unfinished"]++
			tot.Failed++
			continue
		case r.status == "success":
			tot.Succeeded++
		default:
			tot.Failed++
		}
		tot.ByStatus[r.status]++
		if r.done.After(tot.lastDone) {
			tot.lastDone = r.done
		}
		if r.completed {
			tot.Completed++
			if d := expected - r.events; d > 0 {
				tot.MissingEvents += d
			} else {
				tot.ExtraEvents -= d
			}
		}
	}
	errs.addN("unfinished", int64(unfinished), nil)
	if tot.MissingEvents > 0 {
		errs.addN("missing_events", tot.MissingEvents, nil)
	}
	if tot.SeqGaps > 0 {
		errs.addN("seq_gaps", tot.SeqGaps, nil)
	}
	return tot, runs
}

func (t *swarmTotals) ok() bool {
	return t.Connected > 0 && t.Succeeded == t.Swarms && t.MissingEvents == 0 && t.SeqGaps == 0 && t.StrayFrames == 0
}

func perSec(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(n/d.Seconds()*10) / 10
}

func objective(mode string, cfg *config, knobs string) string {
	o := "flowgate-load " + mode + " " + knobs
	if cfg.Directives != "" {
		o += " " + cfg.Directives
	}
	return o
}

// stream: C clients, one unpaced swarm each.
type streamResult struct {
	*swarmTotals
	EventsPerSec float64 `json:"eventsPerSec"` // all events / (first event → last task_complete)
	WindowMs     float64 `json:"windowMs"`
	PerClient    []int64 `json:"perClientEvents"`
}

func runStream(ctx context.Context, cfg *config, toks *tokens, errs *errorLog) (any, bool) {
	p := &plan{
		objective: objective("stream", cfg, fmt.Sprintf("sim:pace=0 sim:events=%d", cfg.Events)),
		agents:    cfg.Agents, inflight: 1,
	}
	tot, runs := runSwarms(ctx, cfg, toks, errs, p, cfg.Clients)
	res := &streamResult{swarmTotals: tot}
	for _, r := range runs {
		res.PerClient = append(res.PerClient, r.events)
	}
	if !tot.firstEvent.IsZero() && tot.lastDone.After(tot.firstEvent) {
		w := tot.lastDone.Sub(tot.firstEvent)
		res.WindowMs = ms(int64(w))
		res.EventsPerSec = perSec(float64(tot.Events), w)
	}
	return res, tot.ok()
}

// paced: C swarms, each at R events/s.
type pacedResult struct {
	*swarmTotals
	LatencyMs       latency `json:"latencyMs"`       // engine→client, after each swarm's warm-up
	LatencyWarmupMs latency `json:"latencyWarmupMs"` // events in each swarm's first --warmup
	// Swarm sent → its first engine event: a start queued by the gateway (engine.max_starting)
	// shows here, not in the latencies above, which start at the engine's write.
	FirstEventMs     latency `json:"firstEventMs"`
	ReceivedPerSec   float64 `json:"receivedPerSec"`   // all swarms together, first event → last task_complete
	TargetRatePerSec int     `json:"targetRatePerSec"` // clients × rate
}

func runPaced(ctx context.Context, cfg *config, toks *tokens, errs *errorLog) (any, bool) {
	p := &plan{
		objective: objective("paced", cfg, fmt.Sprintf("sim:rate=%d sim:events=%d", cfg.Rate, cfg.Events)),
		agents:    cfg.Agents, inflight: 1, warmup: cfg.warmup,
		latency: &hist{}, latencyWarmup: &hist{}, firstEvent: &hist{},
	}
	tot, _ := runSwarms(ctx, cfg, toks, errs, p, cfg.Clients)
	res := &pacedResult{swarmTotals: tot, LatencyMs: p.latency.summary(), LatencyWarmupMs: p.latencyWarmup.summary(),
		FirstEventMs: p.firstEvent.summary(), TargetRatePerSec: cfg.Clients * cfg.Rate}
	if !tot.firstEvent.IsZero() {
		res.ReceivedPerSec = perSec(float64(tot.Events), tot.lastDone.Sub(tot.firstEvent))
	}
	return res, tot.ok() && res.LatencyMs.Count > 0
}

// spawn: N short swarms over C clients.
type spawnResult struct {
	*swarmTotals
	SwarmsPerSec float64 `json:"swarmsPerSec"` // completed / (first swarm sent → last task_complete)
	WindowMs     float64 `json:"windowMs"`
	CreatedMs    latency `json:"createdMs"`  // swarm sent → task_created
	CompleteMs   latency `json:"completeMs"` // swarm sent → task_complete
}

func runSpawn(ctx context.Context, cfg *config, toks *tokens, errs *errorLog) (any, bool) {
	p := &plan{
		objective: objective("spawn", cfg, fmt.Sprintf("sim:pace=0 sim:events=%d", cfg.Events)),
		agents:    cfg.Agents, inflight: cfg.Inflight,
		created: &hist{}, completed: &hist{},
	}
	tot, _ := runSwarms(ctx, cfg, toks, errs, p, cfg.Swarms)
	res := &spawnResult{swarmTotals: tot, CreatedMs: p.created.summary(), CompleteMs: p.completed.summary()}
	if !tot.firstSent.IsZero() && tot.lastDone.After(tot.firstSent) {
		w := tot.lastDone.Sub(tot.firstSent)
		res.WindowMs = ms(int64(w))
		res.SwarmsPerSec = perSec(float64(tot.Completed), w)
	}
	return res, tot.ok()
}
