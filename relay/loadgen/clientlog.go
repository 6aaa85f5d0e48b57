package loadgen

import (
	"io"
	"strings"
	"sync/atomic"

	"github.com/pion/logging"
)

// quietLoggers silences pion (for the test server and the readiness probe).
func quietLoggers() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	f.Writer = io.Discard
	return f
}

// clientEvents counts the two pion client warnings that matter to a load
// run and drops every other log line: formatting them per packet would
// cost more than the packets.
type clientEvents struct {
	// queueDrops: "Receive buffer full", the client's 1024-packet receive
	// queue overflowed, a loss on the generator's side, not the server's.
	queueDrops atomic.Uint64
	// bindFailures: a ChannelBind failed, so that allocation sends Send
	// indications instead of ChannelData.
	bindFailures atomic.Uint64
}

func (e *clientEvents) NewLogger(string) logging.LeveledLogger { return clientLogger{e} }

type clientLogger struct{ e *clientEvents }

func (clientLogger) Trace(string) {}

func (clientLogger) Tracef(string, ...any) {}

func (clientLogger) Debug(string) {}

func (clientLogger) Debugf(string, ...any) {}

func (clientLogger) Info(string) {}

func (clientLogger) Infof(string, ...any) {}

func (clientLogger) Warn(string) {}

func (clientLogger) Error(string) {}

func (clientLogger) Errorf(string, ...any) {}

func (l clientLogger) Warnf(format string, _ ...any) {
	switch {
	case format == "Receive buffer full":
		l.e.queueDrops.Add(1)
	case strings.HasPrefix(format, "Failed to bind channel"):
		l.e.bindFailures.Add(1)
	}
}
