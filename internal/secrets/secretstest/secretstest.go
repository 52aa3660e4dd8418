// Package secretstest holds what the key cache's tests share across providers: a stampede of
// concurrent callers against a held fetch.
package secretstest

import (
	"sync"
	"testing"
)

// Stampede starts n goroutines that each run call, waits until all have started, runs release
// (which lets the provider's held fetch go on), waits for every call and fails the test on the
// first error.
func Stampede(t testing.TB, n int, call func() error, release func()) {
	t.Helper()
	var started, done sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			errs <- call()
		}()
	}
	started.Wait()
	release()
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
