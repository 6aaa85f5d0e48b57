// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// TC ingress fast path for TURN ChannelData (RFC 8656 §12). User space owns every
// decision: it adds a flow when a channel binding and its permission are both live and
// removes it when either ends. This program only forwards packets that match a flow
// exactly and hands on everything else (STUN, unbound channels, indications, fragments,
// IP options, IPv6 extension headers, GSO, ChannelData whose length does not fit)
// untouched, to the next TCX program or up the stack.
//
// Build: go generate ./relay/offload (bpf2go; needs clang, llvm-strip and libbpf-dev).
// The kernel lets only programs with a GPL-compatible license string call its GPL-only
// helpers; "Dual MIT/GPL" is one, and this file is offered under either licence (the
// project's is MIT).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define LO_IFINDEX 1
// PASS hands a packet on unchanged: to the next TCX program if any (TCX_NEXT), else up
// the stack. TC_ACT_OK would end the chain and hide the packet from programs after us.
#define PASS TC_ACT_UNSPEC
// NOMATCH: not a ChannelData packet of a bound client; try the peer direction.
#define NOMATCH -2
#define CD_HDR 4
#define TTL 64

// All addresses are 16 bytes: IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d).
struct addr {
	__u8 b[16];
};

// hop is where a forwarded packet leaves, as user space found it with a route lookup
// when it added the flow: out of ifindex towards the neighbour nh, or (local) to a socket
// on this host through lo.
struct hop {
	__u32 ifindex;
	__u32 local;
	// The layout of struct bpf_redir_neigh, without its union (which bpf2go cannot
	// express): nh_family, then the IPv4 address or all 16 bytes of the IPv6 one.
	__u32 nh_family;
	__u8 nh_addr[16];
};

// c2p: a ChannelData packet from a client to the listener.
struct c2p_key {
	struct addr client;
	__be16 client_port;
	__be16 server_port;
	__be16 channel;
	__u16 pad;
};

struct c2p_val {
	struct addr relay; // source address towards the peer
	struct addr peer;
	__be16 relay_port;
	__be16 peer_port;
	__u32 pad;
	struct hop hop;
	__u64 packets;
	__u64 bytes; // payload bytes
};

// p2c: a datagram from a bound peer to a relay port.
struct p2c_key {
	struct addr peer;
	__be16 peer_port;
	__be16 relay_port;
};

struct p2c_val {
	struct addr client;
	struct addr server; // source address towards the client
	__be16 client_port;
	__be16 server_port;
	__be16 channel;
	__u16 pad;
	struct hop hop;
	__u64 packets;
	__u64 bytes;
};

// max_entries is set by the loader.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct c2p_key);
	__type(value, struct c2p_val);
} c2p SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct p2c_key);
	__type(value, struct p2c_val);
} p2c SEC(".maps");

// Counters of what the program did with packets of bound flows (the Go side sums the
// CPUs): forwarded each way, or left to user space and why.
enum {
	STAT_TO_PEER,
	STAT_TO_CLIENT,
	STAT_PASS_LENGTH, // a ChannelData length that does not fit the datagram
	STAT_PASS_ROUTE,  // over the egress MTU, or local from a NIC
	STAT_PASS_CSUM,   // partial checksum that would leave the host (or IPv6 from lo)
	STAT_PASS_RESIZE, // bpf_skb_adjust_room failed
	STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&stats, &i);
	if (c)
		*c += 1;
}

static __always_inline __u16 fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

// sum16 adds n bytes (n even) as big-endian-agnostic 16-bit words.
static __always_inline __u64 sum_addr(const struct addr *a, int v6)
{
	const __u16 *w = (const __u16 *)a->b;
	__u64 s = 0;
	if (v6) {
#pragma unroll
		for (int i = 0; i < 8; i++)
			s += w[i];
	} else {
		s = w[6] + w[7];
	}
	return s;
}

static __always_inline int is_v4mapped(const struct addr *a)
{
	const __u32 *w = (const __u32 *)a->b;
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

struct pkt {
	int v6;
	__u32 l3; // offset of the IP header
	__u32 l4; // offset of the UDP header
	struct addr src, dst;
	__be16 sport, dport;
	__u16 ulen;   // UDP length (host order)
	__u16 check;  // UDP checksum as on the wire
	__be32 first; // first 4 payload bytes (ChannelData header), if present
};

// parse fills p for a plain UDP packet (no fragments, IPv4 options or IPv6 extension
// headers) and returns 0, or -1 for anything else.
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	struct udphdr *uh;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return -1;
		if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
			return -1;
		p->v6 = 0;
		__builtin_memset(&p->src, 0, sizeof(p->src));
		__builtin_memset(&p->dst, 0, sizeof(p->dst));
		p->src.b[10] = p->src.b[11] = 0xff;
		p->dst.b[10] = p->dst.b[11] = 0xff;
		__builtin_memcpy(&p->src.b[12], &ip->saddr, 4);
		__builtin_memcpy(&p->dst.b[12], &ip->daddr, 4);
		if (bpf_ntohs(ip->tot_len) != skb->len - sizeof(*eth))
			return -1; // trailing bytes after the IP packet (Ethernet padding)
		uh = (void *)(ip + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return -1;
		if (ip6->nexthdr != IPPROTO_UDP)
			return -1;
		p->v6 = 1;
		__builtin_memcpy(&p->src, &ip6->saddr, 16);
		__builtin_memcpy(&p->dst, &ip6->daddr, 16);
		if (bpf_ntohs(ip6->payload_len) != skb->len - sizeof(*eth) - sizeof(*ip6))
			return -1;
		uh = (void *)(ip6 + 1);
	} else {
		return -1;
	}
	if ((void *)(uh + 1) > end)
		return -1;
	p->l3 = sizeof(*eth);
	// A constant, not uh - data: turning a pointer difference into a number needs
	// CAP_PERFMON, which the program should not require.
	p->l4 = sizeof(*eth) + (p->v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr));
	p->sport = uh->source;
	p->dport = uh->dest;
	p->ulen = bpf_ntohs(uh->len);
	p->check = uh->check;
	if (p->ulen < sizeof(*uh) || p->l4 + p->ulen != skb->len)
		return -1;
	p->first = 0;
	if (p->ulen >= sizeof(*uh) + CD_HDR) {
		__be32 *f = (void *)(uh + 1);
		if ((void *)(f + 1) > end)
			return -1;
		p->first = *f;
	}
	return 0;
}

// partial reports whether the UDP checksum field holds only the pseudo-header sum, as a
// locally sent packet that still has CHECKSUM_PARTIAL does (veth, loopback, virtio). The
// kernel would finish such a checksum at an offset that moves when this program resizes
// the header, so such packets are only delivered locally (where nobody finishes it) or
// left to user space. A complete checksum equal to this value (1 in 65536) just costs one
// trip through user space.
static __always_inline int partial(const struct pkt *p)
{
	__u64 s = sum_addr(&p->src, p->v6) + sum_addr(&p->dst, p->v6) + bpf_htons(IPPROTO_UDP) +
		  bpf_htons(p->ulen);
	return p->check == fold(s);
}

// usable reports whether the packet, resized by diff, may take hop: a local socket only
// for packets that came in on lo (a packet from a NIC may carry CHECKSUM_COMPLETE state
// that a local receiver would check), and nothing over the egress MTU (user space then
// sends it and gets the error a too-big datagram deserves).
static __always_inline int usable(struct __sk_buff *skb, const struct hop *h, __s32 diff)
{
	if (h->local)
		return skb->ingress_ifindex == LO_IFINDEX;
	__u32 mtu = 0;
	return bpf_check_mtu(skb, h->ifindex, &mtu, diff, 0) == 0;
}

// rewrite writes the new L3/UDP headers (and the ChannelData header when cd is non-zero)
// after the resize and sends the packet on. The headers go through bpf_skb_store_bytes
// with BPF_F_RECOMPUTE_CSUM so that a CHECKSUM_COMPLETE skb keeps a valid skb->csum.
static __always_inline int rewrite(struct __sk_buff *skb, int v6, struct hop *r,
				   const struct addr *src, const struct addr *dst, __be16 sport,
				   __be16 dport, __u16 ulen, __u16 check, __be32 cd)
{
	struct udphdr uh = {.source = sport, .dest = dport, .len = bpf_htons(ulen), .check = check};
	if (v6) {
		struct {
			struct ipv6hdr ip;
			struct udphdr uh;
			__be32 cd;
		} h;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &h.ip, sizeof(h.ip)))
			return TC_ACT_SHOT;
		__builtin_memcpy(&h.ip.saddr, src, 16);
		__builtin_memcpy(&h.ip.daddr, dst, 16);
		h.ip.payload_len = bpf_htons(ulen);
		h.ip.hop_limit = TTL;
		h.uh = uh;
		h.cd = cd;
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, cd ? sizeof(h) : sizeof(h) - 4,
					BPF_F_RECOMPUTE_CSUM))
			return TC_ACT_SHOT;
	} else {
		struct {
			struct iphdr ip;
			struct udphdr uh;
			__be32 cd;
		} h;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &h.ip, sizeof(h.ip)))
			return TC_ACT_SHOT;
		__builtin_memcpy(&h.ip.saddr, &src->b[12], 4);
		__builtin_memcpy(&h.ip.daddr, &dst->b[12], 4);
		h.ip.tot_len = bpf_htons(ulen + sizeof(h.ip));
		h.ip.ttl = TTL;
		h.ip.check = 0;
		const __u16 *w = (const __u16 *)&h.ip;
		__u64 s = 0;
#pragma unroll
		for (int i = 0; i < 10; i++)
			s += w[i];
		h.ip.check = ~fold(s);
		h.uh = uh;
		h.cd = cd;
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, cd ? sizeof(h) : sizeof(h) - 4,
					BPF_F_RECOMPUTE_CSUM))
			return TC_ACT_SHOT;
	}
	// A packet that came in on lo still carries the route of the local sender's own
	// send (loopback_xmit keeps it): a local destination is delivered along it by
	// just going on up the stack. (A redirect would drop that route, and routing a
	// 127.0.0.0/8 source afresh makes it a martian.)
	if (r->local)
		return TC_ACT_OK;
	// The neighbour subsystem fills in the MAC addresses (and resolves them first if
	// needed), as for any packet the host sends.
	return bpf_redirect_neigh(r->ifindex, (struct bpf_redir_neigh *)&r->nh_family,
				  sizeof(struct bpf_redir_neigh), 0);
}

// newcheck returns the UDP checksum after the header change: incremental for a complete
// checksum (removed minus added terms), the new pseudo-header sum for a partial one, and
// zero (no checksum, IPv4 only) stays zero.
static __always_inline __u16 newcheck(const struct pkt *p, int part, const struct addr *src,
				      const struct addr *dst, __be16 sport, __be16 dport, __u16 ulen,
				      __be32 oldcd, __be32 newcd, __u64 removed)
{
	__u64 s;
	if (part) {
		// Delivered locally: the receiver trusts a partial checksum only while the
		// kernel's checksum start lies at or before the UDP header, which holds after
		// a push (peer to client) but not after a pop (client to peer). For IPv4 the
		// latter gets no checksum (0, allowed over IPv4 and useless on lo anyway);
		// the IPv6 case never gets here (see client_to_peer).
		if (oldcd)
			return 0;
		s = sum_addr(src, p->v6) + sum_addr(dst, p->v6) + bpf_htons(IPPROTO_UDP) + bpf_htons(ulen);
		return fold(s);
	}
	if (p->check == 0 && !p->v6)
		return 0;
	// ~new = ~old - oldterms + newterms (RFC 1624), in 16-bit words.
	__u64 add = sum_addr(src, p->v6) + sum_addr(dst, p->v6) + sport + dport +
		    2 * (__u64)bpf_htons(ulen) + (newcd & 0xffff) + (newcd >> 16);
	__u64 sub = sum_addr(&p->src, p->v6) + sum_addr(&p->dst, p->v6) + p->sport + p->dport +
		    2 * (__u64)bpf_htons(p->ulen) + (oldcd & 0xffff) + (oldcd >> 16) + removed;
	// Subtracting x in ones' complement is adding ~x (16-bit): fold sub first.
	__u16 subf = fold(sub);
	s = (__u16)~p->check + add + (__u16)~subf;
	__u16 c = ~fold(s);
	return c == 0 ? 0xffff : c;
}

static __attribute__((noinline)) int client_to_peer(struct __sk_buff *skb, struct pkt *p)
{
	__u16 ch = bpf_ntohl(p->first) >> 16;
	__u16 cdlen = bpf_ntohl(p->first) & 0xffff;
	if (ch < 0x4000 || ch > 0x4fff)
		return NOMATCH;
	struct c2p_key k = {};
	k.client = p->src;
	k.client_port = p->sport;
	k.server_port = p->dport;
	k.channel = bpf_htons(ch);
	struct c2p_val *v = bpf_map_lookup_elem(&c2p, &k);
	if (!v)
		return NOMATCH;
	// Padding (allowed, not needed, over UDP) or a short packet: user space decides.
	// Over UDP the sender may pad the message to a multiple of 4 (RFC 8656 §12.5;
	// pion does): up to 3 bytes after the data, which are not forwarded.
	__u32 pad = p->ulen - sizeof(struct udphdr) - CD_HDR - (__u32)cdlen;
	if ((__u32)cdlen + sizeof(struct udphdr) + CD_HDR > p->ulen || pad > 3) {
		count(STAT_PASS_LENGTH);
		return PASS;
	}
	// The padding's share of a complete UDP checksum: the last 4 bytes hold it, each
	// byte counted in the half of its 16-bit word that its offset in the datagram
	// gives (words as loaded raw, like every other term here).
	__u64 padsum = 0;
	if (pad) {
		__u8 tail[4];
		if (bpf_skb_load_bytes(skb, skb->len - 4, tail, 4))
			return PASS;
		__u32 off = skb->len - 4 - p->l4; // offset of tail[0] from the UDP header
#pragma unroll
		for (int i = 1; i < 4; i++) {
			if (i >= 4 - (int)pad)
				padsum += ((off + i) & 1) ? (__u64)tail[i] << 8 : tail[i];
		}
	}
	if (is_v4mapped(&v->peer) == p->v6)
		return PASS;

	struct addr src = v->relay, dst = v->peer;
	__be16 sport = v->relay_port, dport = v->peer_port;
	__u16 ulen = sizeof(struct udphdr) + cdlen;
	struct hop r = v->hop;
	if (!usable(skb, &r, -CD_HDR)) {
		count(STAT_PASS_ROUTE);
		return PASS;
	}
	int part = partial(p);
	if (part && (!r.local || p->v6)) {
		count(STAT_PASS_CSUM);
		return PASS;
	}
	__u16 check = newcheck(p, part, &src, &dst, sport, dport, ulen, p->first, 0, padsum);

	// Drop the 4 bytes right after the IP header; the UDP header is rewritten over what
	// was the old UDP length/checksum and the ChannelData header.
	if (bpf_skb_adjust_room(skb, -CD_HDR, BPF_ADJ_ROOM_NET, 0)) {
		count(STAT_PASS_RESIZE);
		return PASS;
	}
	if (pad && bpf_skb_change_tail(skb, skb->len - pad, 0))
		return TC_ACT_SHOT; // resized already: it cannot go up as it came
	count(STAT_TO_PEER);
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, cdlen);
	return rewrite(skb, p->v6, &r, &src, &dst, sport, dport, ulen, check, 0);
}

static __attribute__((noinline)) int peer_to_client(struct __sk_buff *skb, struct pkt *p)
{
	struct p2c_key k = {};
	k.peer = p->src;
	k.peer_port = p->sport;
	k.relay_port = p->dport;
	struct p2c_val *v = bpf_map_lookup_elem(&p2c, &k);
	if (!v)
		return PASS;
	if (is_v4mapped(&v->client) == p->v6)
		return PASS;

	__u16 paylen = p->ulen - sizeof(struct udphdr);
	struct addr src = v->server, dst = v->client;
	__be16 sport = v->server_port, dport = v->client_port;
	__u16 ulen = p->ulen + CD_HDR;
	if (ulen < p->ulen)
		return PASS;
	__be32 cd = bpf_htonl(((__u32)bpf_ntohs(v->channel) << 16) | paylen);
	struct hop r = v->hop;
	if (!usable(skb, &r, CD_HDR)) {
		count(STAT_PASS_ROUTE);
		return PASS;
	}
	int part = partial(p);
	if (part && !r.local) {
		count(STAT_PASS_CSUM);
		return PASS;
	}
	__u16 check = newcheck(p, part, &src, &dst, sport, dport, ulen, 0, cd, 0);

	if (bpf_skb_adjust_room(skb, CD_HDR, BPF_ADJ_ROOM_NET, 0)) {
		count(STAT_PASS_RESIZE);
		return PASS;
	}
	count(STAT_TO_CLIENT);
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, paylen);
	return rewrite(skb, p->v6, &r, &src, &dst, sport, dport, ulen, check, cd);
}

SEC("tc")
int channeldata(struct __sk_buff *skb)
{
	struct pkt p;
	if (skb->gso_size || parse(skb, &p))
		return PASS;
	if (p.first) {
		int rc = client_to_peer(skb, &p);
		if (rc != NOMATCH)
			return rc;
	}
	return peer_to_client(skb, &p);
}

char __license[] SEC("license") = "Dual MIT/GPL";
