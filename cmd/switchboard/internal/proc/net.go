package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// UDPRcvbufErrors returns the kernel's count of UDP datagrams dropped for a
// full receive buffer, from /proc/net/snmp (this network namespace).
func UDPRcvbufErrors() (uint64, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, fmt.Errorf("proc: udp stats: %w", err)
	}
	v, err := parseSNMP(b, "Udp", "RcvbufErrors")
	if err != nil {
		return 0, fmt.Errorf("proc: /proc/net/snmp: %w", err)
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

// BacklogDrops returns the packets dropped for a full per-CPU input backlog,
// summed over CPUs, from /proc/net/softnet_stat.
func BacklogDrops() (uint64, error) {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0, fmt.Errorf("proc: softnet stats: %w", err)
	}
	v, err := parseSoftnet(b)
	if err != nil {
		return 0, fmt.Errorf("proc: /proc/net/softnet_stat: %w", err)
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

// SocketDrops returns, per socket inode, the datagrams dropped so far at
// the receive buffers of process pid's UDP sockets (IPv4 and IPv6): the
// "drops" column of /proc/net/udp{,6} for the socket inodes in
// /proc/<pid>/fd. It tells whose buffers overflowed, where the machine-wide
// counters cannot.
func SocketDrops(pid int) (map[uint64]uint64, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("proc: socket drops: %w", err)
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
			return nil, fmt.Errorf("proc: socket drops: %w", err)
		}
		if err := parseUDPDrops(b, inodes, drops); err != nil {
			return nil, fmt.Errorf("proc: %s: %w", f, err)
		}
	}
	return drops, nil
}

// DropsSince sums, over the sockets in after, the drops added since before.
// Sockets opened in between count from zero; sockets closed in between are
// left out (their last drops were not observed).
func DropsSince(before, after map[uint64]uint64) uint64 {
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
