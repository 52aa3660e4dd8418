package server

import (
	"io"
	"net"
	"sync"
	"testing"
)

func TestBatchConnGathersWrites(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	c := &batchConn{Conn: a}
	var got []byte
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		n, _ := b.Read(buf) // one read sees every batched write: they arrive in one Write
		got = append(got, buf[:n]...)
	}()
	c.Batch()
	for _, s := range []string{"one ", "two ", "three"} {
		if n, err := c.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if string(got) != "one two three" {
		t.Fatalf("peer read %q in one read", got)
	}
	// Outside a batch, writes go straight through.
	go func() { _, _ = c.Write([]byte("direct")) }()
	buf := make([]byte, 16)
	n, err := io.ReadAtLeast(b, buf, 6)
	if err != nil || string(buf[:n]) != "direct" {
		t.Fatalf("direct write: %q %v", buf[:n], err)
	}
}

func TestBatchConnReportsWriteErrorsAtFlush(t *testing.T) {
	a, b := net.Pipe()
	b.Close()
	c := &batchConn{Conn: a}
	c.Batch()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("buffered write failed early: %v", err)
	}
	if err := c.Flush(); err == nil {
		t.Fatal("Flush to a closed peer succeeded")
	}
}
