package routertest

import (
	"testing"

	"github.com/switchboard-rtc/switchboard/signaling"
)

// TestLocalRouter: the exported contract holds for the in-process router.
func TestLocalRouter(t *testing.T) {
	Contract(t, []signaling.Router{signaling.NewLocalRouter()})
}
