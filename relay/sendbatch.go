package relay

import (
	"net"
	"net/netip"
)

// Relayed datagrams are sent in runs, not one by one. Each read loop (pion's loop for a
// listening socket, and its loop for each allocation's relay socket) reads a batch with
// one recvmmsg and hands pion one datagram at a time; what pion writes while handling the
// batch is copied aside and sent just before the loop reads again (udpSocket.flush), as a
// run per destination (udpSocket.sendSegments: one sendmsg with UDP GSO for a run of
// equal-sized datagrams). A datagram waits at most for the rest of its own batch, a few
// microseconds; order within a flow is kept, only different flows' datagrams interleave
// differently.
//
// Only the data path is deferred, and only writes the reading goroutine itself makes:
//   - client to peer: the listener's loop relays a ChannelData datagram's payload to the
//     allocation's relay socket (filterConn.serveChannelData): fanBatch, owned by the
//     listener. (Send indications go through pion, which sends a copy at once.)
//   - peer to client: an allocation's loop reads a peer datagram on a channel and adds it
//     as ChannelData for its client (relayConn.ReadFrom): outBatch, flushed by that
//     allocation's loop. A Data indication pion writes for the same client flushes what
//     waits first (filterConn.WriteTo), keeping the peer's datagrams in order.

// sendRuns sends the datagrams of one destination in order: runs of equal size, each closed
// by one shorter datagram if one follows (GSO's last segment may be short).
func sendRuns(sock *udpSocket, dst netip.AddrPort, buf []byte, sizes []int) (pkts, bytes int, err error) {
	off := 0
	for i := 0; i < len(sizes); {
		seg := sizes[i]
		j, end := i+1, off+seg
		for j < len(sizes) && sizes[j] == seg {
			end += seg
			j++
		}
		if j < len(sizes) && sizes[j] < seg {
			end += sizes[j]
			j++
		}
		p, b, e := sock.sendSegments(buf[off:end], seg, dst)
		pkts += p
		bytes += b
		if e != nil && err == nil {
			err = e
		}
		i, off = j, end
	}
	return pkts, bytes, err
}

// outBatch holds ChannelData for one allocation's client, written by the allocation's read
// loop and sent when that loop reads again. Owned by that loop: no lock. (A lock would not
// make a write from another goroutine safe anyway: it could wait unsent while the loop is
// parked. The race detector checks the ownership in the relay tests.)
type outBatch struct {
	sock *udpSocket     // the listening socket the client's allocation came in on
	dst  netip.AddrPort // the client
	key  *net.UDPAddr   // the address pion keeps in the allocation, the clients map's key

	buf   []byte // datagrams back to back
	sizes []int
}

func (b *outBatch) add(p []byte) {
	b.buf = append(b.buf, p...)
	b.sizes = append(b.sizes, len(p))
}

func (b *outBatch) flush() {
	if len(b.sizes) > 0 {
		_, _, _ = sendRuns(b.sock, b.dst, b.buf, b.sizes) // as pion's loop does: a failed send is not retried
		b.buf, b.sizes = b.buf[:0], b.sizes[:0]
	}
}

// fanBatch holds the datagrams a listening socket's loop wrote to relay sockets while
// handling one read batch. Owned by that loop: no lock.
type fanBatch struct {
	ents    []fanEntry
	buf     []byte
	scratch []byte
	sizes   []int
}

type fanEntry struct {
	rc       *relayConn
	dst      netip.AddrPort
	off, n   int
	finished bool
}

func (f *fanBatch) add(rc *relayConn, dst netip.AddrPort, p []byte) {
	f.ents = append(f.ents, fanEntry{rc: rc, dst: dst, off: len(f.buf), n: len(p)})
	f.buf = append(f.buf, p...)
}

// flush sends every destination's datagrams, in their order, and counts them.
func (f *fanBatch) flush(st *counters) {
	if len(f.ents) == 0 {
		return
	}
	var pkts, bytes int
	for i := range f.ents {
		e := &f.ents[i]
		if e.finished {
			continue
		}
		f.scratch, f.sizes = f.scratch[:0], f.sizes[:0]
		for j := i; j < len(f.ents); j++ {
			o := &f.ents[j]
			if o.finished || o.rc != e.rc || o.dst != e.dst {
				continue
			}
			o.finished = true
			f.scratch = append(f.scratch, f.buf[o.off:o.off+o.n]...)
			f.sizes = append(f.sizes, o.n)
		}
		p, b, _ := sendRuns(e.rc.sock, e.dst, f.scratch, f.sizes)
		pkts += p
		bytes += b
	}
	clear(f.ents) // drop the relayConn pointers
	f.ents, f.buf = f.ents[:0], f.buf[:0]
	if pkts > 0 {
		st.pktsToPeer.Add(uint64(pkts))
		st.bytesToPeer.Add(uint64(bytes))
	}
}
