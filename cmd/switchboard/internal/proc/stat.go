package loadgen

import (
	"bytes"
	"context"
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
		return 0, fmt.Errorf("loadgen: server cpu: %w", err)
	}
	d, err := parseProcStat(b)
	if err != nil {
		return 0, fmt.Errorf("loadgen: /proc/%d/stat: %w", pid, err)
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

// selfCPU is this process's user+system CPU time (all threads, not children).
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("loadgen: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// machineBusy returns non-idle CPU time summed over all CPUs since boot and
// the number of CPUs, from /proc/stat.
func machineBusy() (time.Duration, int, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("loadgen: machine cpu: %w", err)
	}
	d, n, err := parseProcStatTotal(b)
	if err != nil {
		return 0, 0, fmt.Errorf("loadgen: /proc/stat: %w", err)
	}
	return d, n, nil
}

// parseProcStatTotal sums the aggregate "cpu" line of /proc/stat except idle
// and iowait (fields 4 and 5), and counts the "cpuN" lines. guest and
// guest_nice are already included in user and nice, so they are skipped.
func parseProcStatTotal(b []byte) (time.Duration, int, error) {
	var busy uint64
	found, cpus := false, 0
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			cpus++
			continue
		}
		if len(f) < 8 {
			return 0, 0, fmt.Errorf("cpu line has %d fields, want at least 8", len(f))
		}
		for i, s := range f[1:min(len(f), 9)] {
			v, err := strconv.ParseUint(s, 10, 63)
			if err != nil {
				return 0, 0, fmt.Errorf("cpu ticks %q: %w", s, err)
			}
			if i == 3 || i == 4 { // idle, iowait
				continue
			}
			if busy+v < busy {
				return 0, 0, errors.New("cpu ticks overflow")
			}
			busy += v
		}
		found = true
	}
	if !found {
		return 0, 0, errors.New("no aggregate cpu line")
	}
	d, err := ticksToDuration(busy)
	return d, max(cpus, 1), err
}

// udpRcvbufErrors returns the kernel's count of UDP datagrams dropped for a
// full receive buffer, from /proc/net/snmp (this network namespace).
func udpRcvbufErrors() (uint64, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, fmt.Errorf("loadgen: udp stats: %w", err)
	}
	v, err := parseSNMP(b, "Udp", "RcvbufErrors")
	if err != nil {
		return 0, fmt.Errorf("loadgen: /proc/net/snmp: %w", err)
	}
	return v, nil
}

// parseSNMP finds a counter in /proc/net/snmp, whose protocols each take
// two lines: "Proto: Name1 Name2 ..." then "Proto: value1 value2 ...".
func parseSNMP(b []byte, proto, name string) (uint64, error) {
	prefix := proto + ":"
	var header []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != prefix {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		if len(f) != len(header) {
			return 0, fmt.Errorf("%s has %d names but %d values", proto, len(header), len(f))
		}
		for i, h := range header {
			if h == name {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("%s %s %q: %w", proto, name, f[i], err)
				}
				return v, nil
			}
		}
		return 0, fmt.Errorf("%s has no %s", proto, name)
	}
	return 0, fmt.Errorf("no %s lines", proto)
}

// backlogDrops returns the packets dropped for a full per-CPU input backlog,
// summed over CPUs, from /proc/net/softnet_stat.
func backlogDrops() (uint64, error) {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0, fmt.Errorf("loadgen: softnet stats: %w", err)
	}
	v, err := parseSoftnet(b)
	if err != nil {
		return 0, fmt.Errorf("loadgen: /proc/net/softnet_stat: %w", err)
	}
	return v, nil
}

// parseSoftnet sums the second column (dropped) of softnet_stat, one line
// per CPU of hexadecimal counters.
func parseSoftnet(b []byte) (uint64, error) {
	var sum uint64
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return 0, fmt.Errorf("line %q has %d fields, want at least 2", line, len(f))
		}
		v, err := strconv.ParseUint(f[1], 16, 32) // the kernel prints each as %08x of a u32
		if err != nil {
			return 0, fmt.Errorf("dropped %q: %w", f[1], err)
		}
		sum += v
	}
	return sum, nil
}

// socketDrops returns, per socket inode, the datagrams dropped so far at
// the receive buffers of process pid's UDP sockets (IPv4 and IPv6): the
// "drops" column of /proc/net/udp{,6} for the socket inodes in
// /proc/<pid>/fd. It tells whose buffers overflowed, where the machine-wide
// counters cannot.
func socketDrops(pid int) (map[uint64]uint64, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loadgen: socket drops: %w", err)
	}
	inodes := make(map[uint64]bool, len(ents))
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed since ReadDir
		}
		if s, ok := strings.CutPrefix(link, "socket:["); ok {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				inodes[ino] = true
			}
		}
	}
	drops := make(map[uint64]uint64)
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return nil, fmt.Errorf("loadgen: socket drops: %w", err)
		}
		if err := parseUDPDrops(b, inodes, drops); err != nil {
			return nil, fmt.Errorf("loadgen: %s: %w", f, err)
		}
	}
	return drops, nil
}

// dropsSince sums, over the sockets in after, the drops added since before.
// Sockets opened in between count from zero; sockets closed in between are
// left out (their last drops were not observed).
func dropsSince(before, after map[uint64]uint64) uint64 {
	var sum uint64
	for ino, d := range after {
		if d > before[ino] {
			sum += d - before[ino]
		}
	}
	return sum
}

// parseUDPDrops records in drops the drops (13th column) of the
// /proc/net/udp rows whose inode (10th column) is in inodes. The first line
// is a header.
func parseUDPDrops(b []byte, inodes map[uint64]bool, drops map[uint64]uint64) error {
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 {
			continue
		}
		if len(f) < 13 {
			return fmt.Errorf("row %d has %d fields, want at least 13", i, len(f))
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return fmt.Errorf("row %d inode %q: %w", i, f[9], err)
		}
		if !inodes[ino] {
			continue
		}
		d, err := strconv.ParseUint(f[12], 10, 64)
		if err != nil {
			return fmt.Errorf("row %d drops %q: %w", i, f[12], err)
		}
		drops[ino] = d
	}
	return nil
}

// WaitIdle waits until the machine's CPUs were at most maxBusy busy (0-1,
// all CPUs together) over a 500ms sample, so that a run on a shared machine
// starts in a quiet moment. It gives up after timeout and reports whether
// it saw one.
func WaitIdle(ctx context.Context, maxBusy float64, timeout time.Duration) (bool, error) {
	const sample = 500 * time.Millisecond // long enough to average over scheduler ticks
	deadline := time.Now().Add(timeout)
	for {
		before, cpus, err := machineBusy()
		if err != nil {
			return false, err
		}
		t := time.NewTimer(sample)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		after, _, err := machineBusy()
		if err != nil {
			return false, err
		}
		if (after-before).Seconds()/(sample.Seconds()*float64(cpus)) <= maxBusy {
			return true, nil
		}
		if !time.Now().Before(deadline) {
			return false, nil
		}
	}
}
