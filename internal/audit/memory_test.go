package audit_test

import (
	"testing"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/audit/audittest"
)

func TestAuditMemory(t *testing.T) {
	audittest.Run(t, func(t *testing.T) audittest.Env {
		m := audittest.NewMemory()
		return audittest.Env{Storage: m, Tamper: m}
	})
}

func BenchmarkRecordMemory(b *testing.B) {
	audittest.Bench(b, audittest.NewMemory(), audit.Options{})
}
