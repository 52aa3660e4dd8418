package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// readRSS returns VmRSS of pid in KiB, from /proc/<pid>/status.
func readRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status: VmRSS: %w", pid, err)
		}
		return kb, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

// rssSampler records the peak VmRSS of a process while a run lasts.
type rssSampler struct {
	pid  int
	stop chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	peak int64
}

func startRSSSampler(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{})}
	s.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	})
	return s
}

func (s *rssSampler) sample() {
	if kb, err := readRSS(s.pid); err == nil {
		s.mu.Lock()
		s.peak = max(s.peak, kb)
		s.mu.Unlock()
	}
}

// Stop ends sampling and returns the peak seen.
func (s *rssSampler) Stop() int64 {
	close(s.stop)
	s.wg.Wait()
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// rssReport is the server's memory around a run, in KiB.
type rssReport struct {
	PID       int   `json:"pid"`
	BeforeKiB int64 `json:"beforeKiB"`
	PeakKiB   int64 `json:"peakKiB"`
	AfterKiB  int64 `json:"afterKiB"`
	// idle only: after the handshakes and --settle, and after --hold.
	LoadedKiB        int64   `json:"loadedKiB,omitempty"`
	PerConnBytes     float64 `json:"perConnBytes,omitempty"`
	PerConnBytesHeld float64 `json:"perConnBytesHeld,omitempty"`
}
