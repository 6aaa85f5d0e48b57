//go:build !linux

package offload

import (
	"fmt"
	"runtime"

	"github.com/switchboard-rtc/switchboard/relay"
)

// Offloader is not available on this platform.
type Offloader struct{}

var _ relay.Offloader = (*Offloader)(nil)

// Attach fails: the fast path needs Linux eBPF.
func Attach(Config) (*Offloader, error) {
	return nil, fmt.Errorf("offload: not supported on %s (needs Linux eBPF)", runtime.GOOS)
}

func (*Offloader) Add(relay.Flow) error { return errNotSupported }
func (*Offloader) Remove(relay.Flow) (relay.FlowCounts, error) {
	return relay.FlowCounts{}, errNotSupported
}
func (*Offloader) Counts(relay.Flow) (relay.FlowCounts, bool) { return relay.FlowCounts{}, false }
func (*Offloader) Stats() (Stats, error)                      { return Stats{}, errNotSupported }
func (*Offloader) Close() error                               { return nil }

var errNotSupported = fmt.Errorf("offload: not supported on %s", runtime.GOOS)
