package anthropicmock

import "testing"

// New starts a Server for a test and closes it in tb.Cleanup. A nil opts.Logf logs through
// tb.Logf, which is safe because Close waits for every handler before the test ends.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	s, err := Start(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}
