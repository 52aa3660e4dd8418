package main

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
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
	if cfg.hold > 0 {
		wait(cfg.hold)
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
	return res, res.Connected == cfg.Conns && res.DroppedDuringHold == 0
}
