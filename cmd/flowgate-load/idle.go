package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

type idleResult struct {
	Requested         int        `json:"requested"`
	Connected         int        `json:"connected"`
	Failed            int        `json:"failed"`
	DialPhaseMs       float64    `json:"dialPhaseMs"`
	ConnectRate       float64    `json:"connectRatePerSec"` // successful handshakes per second of the dial phase
	ConnectMs         latency    `json:"connectMs"`
	HeldMs            float64    `json:"heldMs"`
	DroppedDuringHold int64      `json:"droppedDuringHold"` // closed by the server or the network before we closed
	FramesDuringHold  int64      `json:"framesDuringHold"`  // data frames while idle (pings are control frames)
	RSS               *rssReport `json:"rss,omitempty"`
	Probe             *probe     `json:"probe,omitempty"`
}

// probe is idle --probe: one swarm on one more connection while the others are held, to
// show the gateway still answers promptly under them (issue 21: task_created < 50 ms).
type probe struct {
	ConnectMs      float64 `json:"connectMs"`      // TCP connect through the welcome frame
	TaskCreatedMs  float64 `json:"taskCreatedMs"`  // swarm sent → task_created
	FirstEventMs   float64 `json:"firstEventMs"`   // swarm sent → first engine event (engine start-up included)
	TaskCompleteMs float64 `json:"taskCompleteMs"` // swarm sent → task_complete
	Status         string  `json:"status"`         // task_complete's status, error:<code>, or unfinished
	Events         int64   `json:"events"`
	ExpectedEvents int64   `json:"expectedEvents"`
}

// The probe's swarm: short, unpaced, so its figures are the gateway's and the engine
// start-up's, not the stream's.
const (
	probeEvents  = 20
	probeAgents  = 1
	probeTimeout = time.Minute
)

func runProbe(ctx context.Context, cfg *config, toks *tokens, errs *errorLog) *probe {
	pr := &probe{Status: "unfinished", ExpectedEvents: probeEvents + probeAgents + 2}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	dialer := &websocket.Dialer{HandshakeTimeout: handshakeTimeout, ReadBufferSize: streamReadBuffer, WriteBufferSize: 1 << 10}
	t0 := time.Now()
	// Address index cfg.Conns, the first no held connection uses: the probe must not share
	// a per-IP cap with them.
	c, err := dialOne(ctx, cfg, toks.probeOptions(), cfg.Conns, dialer)
	if err != nil {
		errs.add("probe_"+dialErrorKind(err), err)
		return pr
	}
	defer c.Close()
	pr.ConnectMs = ms(int64(time.Since(t0)))
	p := &plan{
		objective: objective("idle-probe", cfg, fmt.Sprintf("sim:pace=0 sim:events=%d", probeEvents)),
		agents:    probeAgents, inflight: 1,
	}
	r := &swarmRun{}
	st := drive(ctx, c, p, []*swarmRun{r}, errs)
	if st.err != nil {
		kind := "probe_connection_ended"
		if errors.Is(st.err, context.DeadlineExceeded) {
			kind = "probe_timeout"
		}
		errs.add(kind, st.err)
	}
	since := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return ms(int64(t.Sub(r.sent)))
	}
	pr.TaskCreatedMs, pr.FirstEventMs, pr.TaskCompleteMs = since(r.created), since(r.firstEvent), since(r.done)
	if r.status != "" {
		pr.Status = r.status
	}
	pr.Events = r.events
	if r.completed && r.events != pr.ExpectedEvents {
		errs.add("probe_events", fmt.Errorf("probe swarm: %d events, want %d", r.events, pr.ExpectedEvents))
	}
	if st.stray > 0 {
		errs.addN("probe_stray_frames", st.stray, nil)
	}
	return pr
}

func runIdle(ctx context.Context, cfg *config, toks *tokens, errs *errorLog) (any, bool) {
	res := &idleResult{Requested: cfg.Conns}
	var before int64
	if cfg.ServerPID > 0 {
		kb, err := readRSS(cfg.ServerPID)
		if err != nil {
			errs.add("rss", err)
		}
		before = kb
	}
	var h hist
	conns, elapsed := dialAll(ctx, cfg, toks, cfg.Conns, idleReadBuffer, errs, &h)
	res.Connected = countLive(conns)
	res.Failed = cfg.Conns - res.Connected
	res.DialPhaseMs = ms(int64(elapsed))
	if elapsed > 0 {
		res.ConnectRate = math.Round(float64(res.Connected)/elapsed.Seconds()*10) / 10
	}
	res.ConnectMs = h.summary()

	// Every connection needs a reader: it answers the server's pings and notices a close.
	var closing atomic.Bool
	var dropped, frames atomic.Int64
	var readers sync.WaitGroup
	for _, c := range conns {
		if c == nil {
			continue
		}
		readers.Go(func() {
			buf := make([]byte, 0, 256)
			for {
				var err error
				buf, _, err = c.ReadRaw(buf)
				if err != nil {
					if !closing.Load() {
						dropped.Add(1)
						errs.add("dropped", err)
					}
					return
				}
				frames.Add(1)
			}
		})
	}

	heldFrom := time.Now()
	wait := func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	wait(cfg.settle)
	if cfg.ServerPID > 0 {
		loaded, err := readRSS(cfg.ServerPID)
		if err != nil {
			errs.add("rss", err)
		}
		res.RSS = &rssReport{PID: cfg.ServerPID, BeforeKiB: before, LoadedKiB: loaded}
	}
	holdUntil := time.Now().Add(cfg.hold)
	if cfg.Probe {
		res.Probe = runProbe(ctx, cfg, toks, errs)
	}
	if d := time.Until(holdUntil); d > 0 {
		wait(d)
	}
	if res.RSS != nil {
		after, err := readRSS(cfg.ServerPID)
		if err != nil {
			errs.add("rss", err)
		}
		res.RSS.AfterKiB = after
		res.RSS.PeakKiB = max(res.RSS.LoadedKiB, after)
		if res.Connected > 0 {
			res.RSS.PerConnBytes = math.Round(float64(res.RSS.LoadedKiB-before) * 1024 / float64(res.Connected))
			res.RSS.PerConnBytesHeld = math.Round(float64(after-before) * 1024 / float64(res.Connected))
		}
	}
	res.HeldMs = ms(int64(time.Since(heldFrom)))
	if ctx.Err() != nil {
		errs.add("timeout", ctx.Err())
	}
	closing.Store(true)
	closeAll(conns, cfg.Dialers)
	readers.Wait()
	res.DroppedDuringHold = dropped.Load()
	res.FramesDuringHold = frames.Load()
	ok := res.Connected == cfg.Conns && res.DroppedDuringHold == 0
	if res.Probe != nil {
		ok = ok && res.Probe.Status == "success" && res.Probe.Events == res.Probe.ExpectedEvents
	}
	return res, ok
}
