package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// A command that needs the configuration, given neither --config nor --dev, says how to start
// (exit 2) and leaves nothing behind: no ./data directory, no database.
func TestNoConfigurationSaysHowToStart(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, cmd := range [][]string{{"serve"}, {"tenant", "list"}, {"migrate", "up"}, {"audit", "verify"}, {"usage"}} {
		t.Run(strings.Join(cmd, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), append([]string{"flowgate"}, cmd...), func(string) string { return "" }, &out, &errb)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "--dev") || !strings.Contains(err.Error(), "--config") {
				t.Fatalf("flowgate %s = %v; want a usage error naming --dev and --config", strings.Join(cmd, " "), err)
			}
			if _, err := os.Stat("data"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("flowgate %s left ./data behind (%v)", strings.Join(cmd, " "), err)
			}
		})
	}
}
