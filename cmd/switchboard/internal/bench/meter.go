// Package bench runs the `switchboard bench` load tests: it starts the
// servers under test, drives the load generators round by round, measures
// the machine and prints the figures.
package bench

import (
	"os"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/proc"
	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

// sample is one reading of the process and machine counters a TURN run
// compares before and after its measured phase.
type sample struct {
	server, self       time.Duration
	cpu                proc.CPUTimes // the machine, all CPUs
	rcvbuf, backlog    uint64
	srvDrops, genDrops map[uint64]uint64 // per socket inode
}

// meter measures a TURN run from /proc: the server process serverPID (0:
// not measured), this process and the whole machine.
func meter(serverPID int) loadgen.Meter {
	return func() (func() (loadgen.Usage, error), error) {
		before, err := read(serverPID)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		return func() (loadgen.Usage, error) {
			after, err := read(serverPID)
			if err != nil {
				return loadgen.Usage{}, err
			}
			return loadgen.Usage{
				Wall:                 time.Since(start),
				ServerCPU:            after.server - before.server,
				ServerMeasured:       serverPID > 0,
				GeneratorCPU:         after.self - before.self,
				MachineBusy:          after.cpu.Sub(before.cpu).Busy(),
				MachineSoftIRQ:       after.cpu.Sub(before.cpu).SoftIRQ,
				CPUs:                 after.cpu.CPUs,
				UDPRcvbufErrors:      after.rcvbuf - before.rcvbuf,
				BacklogDrops:         after.backlog - before.backlog,
				ServerSocketDrops:    proc.DropsSince(before.srvDrops, after.srvDrops),
				GeneratorSocketDrops: proc.DropsSince(before.genDrops, after.genDrops),
			}, nil
		}, nil
	}
}

// read takes a sample; serverPID 0 leaves the server's figures zero.
func read(serverPID int) (sample, error) {
	var s sample
	var err error
	if serverPID > 0 {
		if s.server, err = proc.ProcessCPU(serverPID); err != nil {
			return s, err
		}
		if s.srvDrops, err = proc.SocketDrops(serverPID); err != nil {
			return s, err
		}
	}
	if s.self, err = proc.SelfCPU(); err != nil {
		return s, err
	}
	if s.genDrops, err = proc.SocketDrops(os.Getpid()); err != nil {
		return s, err
	}
	if s.cpu, err = proc.ReadCPUTimes(); err != nil {
		return s, err
	}
	if s.rcvbuf, err = proc.UDPRcvbufErrors(); err != nil {
		return s, err
	}
	s.backlog, err = proc.BacklogDrops()
	return s, err
}
