package executor

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
)

// readBufSize is the stdout read size: one syscall moves up to a full default pipe buffer.
// stderr carries little (diagnostics), so it reads in errReadBufSize pieces: a running task
// holds both buffers for its whole life. Lines longer than either are assembled by the
// splitter, so the size changes syscalls per byte, not what is delivered.
const (
	readBufSize    = 64 << 10
	errReadBufSize = 4 << 10
)

// budget is the per-task byte cap shared by stdout and stderr.
type budget struct {
	max      int64
	used     atomic.Int64
	exceeded atomic.Bool
	once     sync.Once
	ch       chan struct{} // closed when the cap is first exceeded
}

func newBudget(max int64) *budget { return &budget{max: max, ch: make(chan struct{})} }

// take accounts n bytes read and returns how many of them may still be delivered.
func (b *budget) take(n int) int {
	total := b.used.Add(int64(n))
	if total <= b.max {
		return n
	}
	b.exceeded.Store(true)
	b.once.Do(func() { close(b.ch) })
	return int(max(0, min(int64(n), b.max-(total-int64(n)))))
}

// lineSplitter turns a byte stream into lines of at most max bytes. A longer line is emitted
// as soon as its first max bytes are in (truncated) and the rest up to the newline is dropped,
// so a huge line neither buffers without bound nor holds back the lines after it. Lines that
// lie within one read are emitted straight from the read buffer, without copying.
type lineSplitter struct {
	max     int
	acc     []byte // a line spanning reads
	discard bool   // dropping the rest of a truncated line
	emit    func(line []byte, truncated bool)
}

func (s *lineSplitter) write(data []byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			s.partial(data)
			return
		}
		seg := data[:i]
		data = data[i+1:]
		if s.discard {
			s.discard = false
			continue
		}
		if len(s.acc) == 0 {
			if len(seg) > s.max {
				s.emit(seg[:s.max], true)
			} else {
				s.emit(seg, false)
			}
			continue
		}
		room := s.max - len(s.acc)
		if len(seg) > room {
			s.acc = append(s.acc, seg[:room]...)
			s.emit(s.acc, true)
		} else {
			s.acc = append(s.acc, seg...)
			s.emit(s.acc, false)
		}
		s.acc = s.acc[:0]
	}
}

// partial handles bytes of a line whose newline has not arrived yet.
func (s *lineSplitter) partial(data []byte) {
	if s.discard {
		return
	}
	room := s.max - len(s.acc)
	if len(data) <= room {
		s.acc = append(s.acc, data...)
		return
	}
	s.acc = append(s.acc, data[:room]...)
	s.emit(s.acc, true)
	s.acc = s.acc[:0]
	s.discard = true
}

// flush emits a last line that had no newline.
func (s *lineSplitter) flush() {
	if len(s.acc) > 0 && !s.discard {
		s.emit(s.acc, false)
	}
	s.acc = s.acc[:0]
	s.discard = false
}

// pump reads r to EOF (or error) and hands redacted lines to deliver. Once the budget is
// exhausted it keeps reading, so the writer never blocks on a full pipe, but delivers nothing.
func pump(r io.Reader, bufSize, maxLine int, red *Redactor, b *budget, deliver func([]byte, bool)) {
	buf := make([]byte, bufSize)
	var scratch []byte
	sp := &lineSplitter{max: maxLine}
	sp.emit = func(line []byte, truncated bool) {
		var out []byte
		var changed bool
		if truncated {
			out, changed = red.RedactTruncated(scratch, line)
		} else {
			out, changed = red.Redact(scratch, line)
		}
		deliver(out, truncated)
		if changed {
			scratch = out[:0]
		}
	}
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if ok := b.take(n); ok > 0 {
				sp.write(buf[:ok])
			}
		}
		if err != nil {
			if !b.exceeded.Load() {
				sp.flush()
			}
			return
		}
	}
}
