// Package proc reads the process and machine counters of Linux's /proc and starts
// and stops the server processes a benchmark measures.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of CPU times in /proc: USER_HZ, which Linux fixes at
// 100 for every userspace ABI whatever the kernel's internal HZ.
const userHZ = 100

// ProcessCPU returns the user+system CPU time consumed so far by every
// thread of process pid, from /proc/<pid>/stat (10ms resolution).
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("proc: cpu time: %w", err)
	}
	d, err := parseProcStat(b)
	if err != nil {
		return 0, fmt.Errorf("proc: /proc/%d/stat: %w", pid, err)
	}
	return d, nil
}

// parseProcStat reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseProcStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so utime (14) is f[11] and stime (15) f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after command name, want at least 13", len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 63)
		if err != nil {
			return 0, fmt.Errorf("cpu ticks %q: %w", s, err)
		}
		ticks += v
	}
	return ticksToDuration(ticks)
}

func ticksToDuration(ticks uint64) (time.Duration, error) {
	// 2^63 ns is 292 years; a count beyond that is garbage, not a process.
	if ticks > uint64(1<<63-1)/uint64(time.Second/userHZ) {
		return 0, fmt.Errorf("%d ticks out of range", ticks)
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// SelfCPU is this process's user+system CPU time (all threads, not children).
func SelfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("proc: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// MachineBusy returns non-idle CPU time summed over all CPUs since boot and
// the number of CPUs, from /proc/stat (CPUTimes.Busy).
func MachineBusy() (time.Duration, int, error) {
	c, err := ReadCPUTimes()
	if err != nil {
		return 0, 0, err
	}
	return c.Busy(), c.CPUs, nil
}

// CPUTimes is the aggregate "cpu" line of /proc/stat: time all CPUs spent
// in each state since boot, and the number of CPUs ("cpuN" lines). Two
// readings subtracted (Sub) give what the machine did in between, which
// includes work no process is charged for: softirq (packet forwarding on
// the receive path, an XDP/TC program) runs in whatever context the
// kernel is in, so a kernel fast path shows up here and not in the server
// process's /proc/<pid>/stat.
type CPUTimes struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal time.Duration
	CPUs                                                  int
}

// Busy is the time the CPUs did work for this machine: user, nice, system,
// irq and softirq. Idle and iowait are idle time; steal is time the
// hypervisor gave to other guests, not work done here; guest and
// guest_nice are already inside user and nice.
func (c CPUTimes) Busy() time.Duration {
	return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ
}

// Sub is c minus an earlier reading prev, field by field. A field that went
// backwards reads 0: Linux's iowait is documented to decrease at times,
// and a delta is never negative time.
func (c CPUTimes) Sub(prev CPUTimes) CPUTimes {
	d := func(a, b time.Duration) time.Duration { return max(0, a-b) }
	return CPUTimes{
		User: d(c.User, prev.User), Nice: d(c.Nice, prev.Nice), System: d(c.System, prev.System),
		Idle: d(c.Idle, prev.Idle), IOWait: d(c.IOWait, prev.IOWait), IRQ: d(c.IRQ, prev.IRQ),
		SoftIRQ: d(c.SoftIRQ, prev.SoftIRQ), Steal: d(c.Steal, prev.Steal), CPUs: c.CPUs,
	}
}

// ReadCPUTimes reads /proc/stat.
func ReadCPUTimes() (CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, fmt.Errorf("proc: machine cpu: %w", err)
	}
	c, err := parseCPUTimes(b)
	if err != nil {
		return CPUTimes{}, fmt.Errorf("proc: /proc/stat: %w", err)
	}
	return c, nil
}

// parseCPUTimes reads the aggregate "cpu" line of /proc/stat (user nice
// system idle iowait irq softirq steal ...; kernels before 2.6.11 stop at
// 7 fields, steal then reads 0) and counts the "cpuN" lines.
func parseCPUTimes(b []byte) (CPUTimes, error) {
	var c CPUTimes
	found := false
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			c.CPUs++
			continue
		}
		if found {
			return CPUTimes{}, errors.New("two aggregate cpu lines")
		}
		if len(f) < 8 {
			return CPUTimes{}, fmt.Errorf("cpu line has %d fields, want at least 8", len(f))
		}
		fields := []*time.Duration{&c.User, &c.Nice, &c.System, &c.Idle, &c.IOWait, &c.IRQ, &c.SoftIRQ, &c.Steal}
		for i, s := range f[1:min(len(f), 9)] {
			v, err := strconv.ParseUint(s, 10, 63)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("cpu ticks %q: %w", s, err)
			}
			if *fields[i], err = ticksToDuration(v); err != nil {
				return CPUTimes{}, err
			}
		}
		found = true
	}
	if !found {
		return CPUTimes{}, errors.New("no aggregate cpu line")
	}
	// The sum must fit too: Busy adds five fields (and a caller may add all).
	var sum uint64
	for _, d := range []time.Duration{c.User, c.Nice, c.System, c.Idle, c.IOWait, c.IRQ, c.SoftIRQ, c.Steal} {
		if sum+uint64(d) < sum || sum+uint64(d) > 1<<63-1 {
			return CPUTimes{}, errors.New("cpu ticks overflow")
		}
		sum += uint64(d)
	}
	c.CPUs = max(c.CPUs, 1)
	return c, nil
}

// RSS returns the resident set size of process pid in bytes, from the
// VmRSS line of /proc/<pid>/status.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("proc: rss: %w", err)
	}
	n, err := parseStatusRSS(b)
	if err != nil {
		return 0, fmt.Errorf("proc: /proc/%d/status: %w", pid, err)
	}
	return n, nil
}

// parseStatusRSS reads the "VmRSS:    1234 kB" line of a /proc/<pid>/status.
func parseStatusRSS(b []byte) (int64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS %q: want \"<n> kB\"", strings.TrimSpace(v))
		}
		// 2^53 kB is far beyond any machine; the bound keeps the shift from overflowing.
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<53 {
			return 0, fmt.Errorf("VmRSS %q: not a size in kB", f[0])
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line")
}

// LoadAvg is the 1/5/15-minute load average from /proc/loadavg, "?" if unknown.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Nice is this process's nice value, "?" if unknown. Child processes inherit it.
func Nice() string {
	// The raw getpriority syscall returns 20 - nice on Linux.
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		return "?"
	}
	return strconv.Itoa(20 - p)
}

// FDLimit is this process's limit on open file descriptors (RLIMIT_NOFILE).
func FDLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("proc: getrlimit: %w", err)
	}
	// The Go runtime already raised the soft limit to the hard one at start.
	return l.Cur, nil
}

// OpenFileLimit is the soft limit on open files of process pid, from the
// "Max open files" line of /proc/<pid>/limits; 0 means unlimited. A child
// does not get this process's limit: the Go runtime raises its own soft
// limit at start but restores the original for the processes it starts,
// so a server's limit is read from the server.
func OpenFileLimit(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0, fmt.Errorf("proc: limits: %w", err)
	}
	n, err := parseOpenFileLimit(b)
	if err != nil {
		return 0, fmt.Errorf("proc: /proc/%d/limits: %w", pid, err)
	}
	return n, nil
}

// parseOpenFileLimit reads "Max open files  <soft>  <hard>  files".
func parseOpenFileLimit(b []byte) (uint64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 2 {
			return 0, fmt.Errorf("Max open files %q: want soft and hard limits", strings.TrimSpace(v))
		}
		if f[0] == "unlimited" {
			return 0, nil
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("Max open files %q: %w", f[0], err)
		}
		if n == 0 {
			return 0, errors.New("Max open files is 0")
		}
		return n, nil
	}
	return 0, errors.New("no Max open files line")
}
