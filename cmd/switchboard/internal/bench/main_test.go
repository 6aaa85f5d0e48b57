package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a benchmark starts (load generators, process waiters,
// scrapes) is gone when it returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
