package loadgen

import "time"

// Result is what one run measured. Counts cover the measured phase only.
type Result struct {
	Allocations int
	PayloadSize int
	PayloadMax  int // 0: every packet PayloadSize bytes
	Rate        int // offered packets/s, 0 for closed loop
	// Elapsed is the measured sending phase; a short drain after it lets
	// packets in flight arrive, and its CPU is included.
	Elapsed time.Duration

	Sent         uint64 // data packets the clients wrote toward the server
	SendErrors   uint64 // client writes that failed
	PeerReceived uint64 // packets relayed client→peer that arrived at a peer
	Echoed       uint64 // packets the peers sent back toward the relay
	Received     uint64 // packets relayed peer→client that arrived at a client

	// Usage is what Config.Meter measured over the measured phase and drain.
	Usage
	// GeneratorDrops counts packets relayed back that the generator's TURN
	// clients dropped because their receive queue was full: loss on this
	// side, not the server's.
	GeneratorDrops uint64
	// BindFailures counts ChannelBinds that failed during the run; nonzero
	// means some traffic went as Send/Data indications, not ChannelData.
	BindFailures uint64
	// Latency is the one-way delay of the packets relayed in the measured
	// phase and drain, both directions: client→peer measured at the peer,
	// peer→client at the client, from a send time in the payload (one
	// clock: the generator is both ends). Empty with payloads under 12 bytes.
	Latency Latencies
}

// LatencyP50 and LatencyP99 are percentiles of Latency; 0 without samples.
func (r Result) LatencyP50() time.Duration { return r.Latency.Quantile(0.50) }

func (r Result) LatencyP99() time.Duration { return r.Latency.Quantile(0.99) }

// A Meter starts a measurement of the machine and returns the function
// that ends it.
type Meter func() (end func() (Usage, error), err error)

// Usage is what a Meter measured over a run's measured phase and drain.
type Usage struct {
	// ServerCPU is the server process's user+system CPU during the measured
	// phase and drain; ServerMeasured says whether it was read at all.
	ServerCPU      time.Duration
	ServerMeasured bool
	// GeneratorCPU is this process's CPU over the same interval. When the
	// server runs in this process (tests), it includes the server.
	GeneratorCPU time.Duration
	// MachineBusy is non-idle CPU time summed over all CPUs (from /proc/stat),
	// which also counts softirq work the kernel does not charge to a process.
	MachineBusy time.Duration
	// MachineSoftIRQ is the part of MachineBusy spent in softirq: the
	// kernel's packet receive path, and any kernel fast path (eBPF) that
	// forwards packets there, charged to whoever happened to run.
	MachineSoftIRQ time.Duration
	CPUs           int
	// Wall is the time that really passed between the Meter's two readings:
	// the measured phase and the drain after it, which Result.Elapsed
	// leaves out. Busy CPU time is divided by it, not by Elapsed.
	Wall time.Duration
	// UDPRcvbufErrors is the machine-wide count of UDP datagrams dropped for a
	// full receive buffer during the run (/proc/net/snmp), whoever owned it.
	UDPRcvbufErrors uint64
	// BacklogDrops is the machine-wide count of packets the kernel dropped
	// because a CPU's input backlog (net.core.netdev_max_backlog) was full,
	// which loopback traffic hits in bursts (/proc/net/softnet_stat).
	BacklogDrops uint64
	// ServerSocketDrops counts datagrams dropped at the receive buffers of
	// the server's own sockets (listeners and relays): the server fell
	// behind. Measured only with ServerPID.
	ServerSocketDrops uint64
	// GeneratorSocketDrops counts datagrams dropped at the receive buffers
	// of this process's sockets (clients and peers): the generator fell behind.
	GeneratorSocketDrops uint64
}

// Relayed is the number of packets the server delivered, both directions.
func (r Result) Relayed() uint64 { return r.PeerReceived + r.Received }

// Offered is the number of packets handed to the server to relay, both directions.
func (r Result) Offered() uint64 { return r.Sent + r.Echoed }

// PPS is relayed packets per second.
func (r Result) PPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Relayed()) / r.Elapsed.Seconds()
}

// Loss is the fraction of offered packets that were not delivered.
func (r Result) Loss() float64 {
	if r.Offered() == 0 {
		return 0
	}
	lost := float64(r.Offered()) - float64(r.Relayed())
	if lost < 0 {
		lost = 0
	}
	return lost / float64(r.Offered())
}

// ServerCPUPerPacket is the server's CPU time per relayed packet in
// microseconds; 0 when not measured or nothing was relayed.
func (r Result) ServerCPUPerPacket() float64 { return perPacket(r.ServerCPU, r.Relayed()) }

// GeneratorCPUPerPacket is this process's CPU time per relayed packet in microseconds.
func (r Result) GeneratorCPUPerPacket() float64 { return perPacket(r.GeneratorCPU, r.Relayed()) }

// MachineCPUPerPacket is all CPUs' busy time per relayed packet in microseconds.
func (r Result) MachineCPUPerPacket() float64 { return perPacket(r.MachineBusy, r.Relayed()) }

// SoftIRQPerPacket is all CPUs' softirq time per relayed packet in microseconds.
func (r Result) SoftIRQPerPacket() float64 { return perPacket(r.MachineSoftIRQ, r.Relayed()) }

func perPacket(d time.Duration, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}
