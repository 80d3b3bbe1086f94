// SPDX-License-Identifier: GPL-2.0
/*
 * gen's kernel probes: per generator socket, kernel send -> data-ready latency, connect
 * time, smoothed RTT and retransmits, recorded in per-CPU log-linear histograms.
 *
 * Only the generator's own sockets count: a socket is registered when a thread of the
 * generator's process (tgid) moves it to SYN_SENT, and forgotten when it reaches CLOSE
 * (socket pointers are reused), unless its destination is in skip_dst (a worker's own
 * heartbeats to its coordinator are not load). Everything else is keyed by the socket pointer, never by
 * the current task: sk_data_ready runs in softirq, usually in the server's context.
 *
 * Pairing: one request is in flight per connection, so the send recorded on a socket
 * belongs to the next response that becomes readable on it. A send overwrites the
 * previous one (the remainder of a partial write moves the start a little later); a
 * data-ready without a send in flight is counted as unpaired and ignored.
 *
 * Send time: taken where the send starts (tcp:tcp_sendmsg_locked, Linux 6.12+, first
 * iteration of one sendmsg call), not where it returns (sock:sock_send_length). On
 * loopback the server receives the request inside the sender's sendmsg (the softirq runs
 * on local_bh_enable), and that call may go on to process other sockets' packets for tens
 * of microseconds before it returns: a send stamped at return could make the kernel
 * latency shorter than the server's own hold time. sock_send_length still ends the send
 * (and stamps it when the start tracepoint is missing).
 *
 * Histograms: values in ns (srtt in µs); 256 linear sub-buckets per power of two, so a
 * bucket is at most 1/256 (0.39%) of its value wide; the reader reports bucket midpoints
 * (error <= 0.2%). Row 0 holds values 0..255 exactly; row r >= 1 holds [2^(r+7), 2^(r+8)).
 *
 * Attach points: tp_btf tracepoints (Linux 6.3+ for sock_send_length and sk_data_ready);
 * fexit/fentry and kprobe variants of the two for older kernels, chosen by the loader.
 */
#include "gen_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7

#define SUB_BITS 8
#define SUB (1 << SUB_BITS)
#define ROWS 34 /* row 33 holds [2^40, 2^41): about 36 minutes in ns */
#define MAX_VALUE ((1ULL << 41) - 1)

/* Histogram kinds (rows KIND * ROWS .. KIND * ROWS + ROWS - 1). Keep in step with lib.rs. */
#define KIND_KERNEL 0  /* send -> data ready, ns */
#define KIND_CONNECT 1 /* SYN_SENT -> ESTABLISHED, ns */
#define KIND_SRTT 2    /* smoothed RTT per incoming segment, µs */
#define KINDS 3

/* Counters. Keep in step with lib.rs. */
#define CTR_REGISTERED 0 /* sockets registered (SYN_SENT by the generator) */
#define CTR_RETRANS 1    /* retransmitted segments on generator sockets */
#define CTR_UNPAIRED 2   /* data-ready without a send in flight */
#define CTR_SENDS 3      /* send events on generator sockets */
#define CTR_RB_LOST 4    /* kernel latencies the ring buffer had no room for (GEN_RINGBUF) */
#define CTRS 5

/* The generator's process id, set by the loader before the programs load. */
volatile const __u32 target_tgid = 0;

struct sock_state {
	__u64 send_ns;    /* kernel time of the request in flight, 0 when none */
	__u64 connect_ns; /* SYN_SENT time, 0 once connected */
	__u64 in_send;    /* 1 between a sendmsg's start and its end: send_ns is stamped */
};

struct row {
	__u64 b[SUB];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_state);
} socks SEC(".maps");

/* Destinations whose connections are not load: key daddr << 16 | dport, both as the kernel
 * stores them (network order). Filled by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u64);
	__type(value, __u8);
} skip_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KINDS * ROWS);
	__type(key, __u32);
	__type(value, struct row);
} hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CTRS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

#ifdef GEN_RINGBUF
/* The measured alternative (object gen_probes_ringbuf.bpf.o, built with -DGEN_RINGBUF, used
 * only when GEN_PROBES_TRANSPORT=ringbuf): each kernel latency goes to userspace as one 8-byte
 * event, which a reader thread puts into the same log-linear buckets. No wake-up per event
 * (BPF_RB_NO_WAKEUP): the reader drains on a timer, the cheapest way to run a ring buffer.
 * 1 MiB holds 65k events, 3 s at 20k req/s; a full ring counts CTR_RB_LOST. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");
#endif

/* [0]: requests sent before this kernel time (ns) are not recorded (warm-up); the loader
 * starts it at "never" and sets it when the measured window is known. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gate SEC(".maps");

static __always_inline __u32 ilog2(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

static __always_inline void record(__u32 kind, __u64 v)
{
	__u32 row, col;
	if (v > MAX_VALUE)
		v = MAX_VALUE;
	if (v < SUB) {
		row = 0;
		col = (__u32)v;
	} else {
		__u32 e = ilog2(v);
		row = e - (SUB_BITS - 1);
		col = (__u32)(v >> (e - SUB_BITS));
	}
	__u32 key = kind * ROWS + row;
	struct row *r = bpf_map_lookup_elem(&hist, &key);
	if (r)
		__sync_fetch_and_add(&r->b[col & (SUB - 1)], 1);
}

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &which);
	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline __u64 gate_ns(void)
{
	__u32 k = 0;
	__u64 *g = bpf_map_lookup_elem(&gate, &k);
	return g ? *g : ~0ULL;
}

static __always_inline struct sock_state *ours(const void *sk)
{
	__u64 key = (__u64)sk;
	return bpf_map_lookup_elem(&socks, &key);
}

/* A sendmsg call on the socket begins (called once per skb of the call: only the first
 * stamps). */
static __always_inline void send_starts(const void *sk)
{
	struct sock_state *st = ours(sk);
	if (!st || st->in_send)
		return;
	st->send_ns = bpf_ktime_get_ns();
	st->in_send = 1;
}

/* A sendmsg call returned `ret`; it is stamped here only when its start was not seen. */
static __always_inline void sent(const void *sk, long ret)
{
	struct sock_state *st = ours(sk);
	if (!st)
		return;
	int started = st->in_send;
	st->in_send = 0;
	if (ret <= 0)
		return;
	if (!started)
		st->send_ns = bpf_ktime_get_ns();
	count(CTR_SENDS);
}

static __always_inline void data_ready(const void *sk)
{
	struct sock_state *st = ours(sk);
	if (!st)
		return;
	__u64 start = st->send_ns;
	if (!start) {
		count(CTR_UNPAIRED);
		return;
	}
	st->send_ns = 0;
	if (start < gate_ns())
		return;
	__u64 v = bpf_ktime_get_ns() - start;
#ifdef GEN_RINGBUF
	if (bpf_ringbuf_output(&events, &v, sizeof(v), BPF_RB_NO_WAKEUP))
		count(CTR_RB_LOST);
#else
	record(KIND_KERNEL, v);
#endif
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(gen_state, const struct sock *sk, int oldstate, int newstate)
{
	__u64 key = (__u64)sk;
	if (newstate == TCP_SYN_SENT) {
		if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
			return 0;
		__u64 dst = ((__u64)sk->__sk_common.skc_daddr << 16) | sk->__sk_common.skc_dport;
		if (bpf_map_lookup_elem(&skip_dst, &dst))
			return 0;
		struct sock_state st = { .send_ns = 0, .connect_ns = bpf_ktime_get_ns(), .in_send = 0 };
		bpf_map_update_elem(&socks, &key, &st, BPF_ANY);
		count(CTR_REGISTERED);
	} else if (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_SENT) {
		struct sock_state *st = bpf_map_lookup_elem(&socks, &key);
		if (st && st->connect_ns) {
			record(KIND_CONNECT, bpf_ktime_get_ns() - st->connect_ns);
			st->connect_ns = 0;
		}
	} else if (newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&socks, &key);
	}
	return 0;
}

SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(gen_send_start, const struct sock *sk, const struct msghdr *msg, const void *skb,
	     int size_goal)
{
	send_starts(sk);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(gen_send, struct sock *sk, int ret, int flags)
{
	sent(sk, ret);
	return 0;
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(gen_ready, const struct sock *sk)
{
	data_ready(sk);
	return 0;
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(gen_probe, struct sock *sk, struct sk_buff *skb)
{
	if (!ours(sk) || bpf_ktime_get_ns() < gate_ns())
		return 0;
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	record(KIND_SRTT, BPF_CORE_READ(tp, srtt_us) >> 3);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(gen_retransmit, const struct sock *sk)
{
	if (ours(sk) && bpf_ktime_get_ns() >= gate_ns())
		count(CTR_RETRANS);
	return 0;
}

/* Older kernels (before 6.3) lack sock_send_length and sk_data_ready: the same events from
 * the functions that emit them. fexit sees tcp_sendmsg's result, like the tracepoint. */
SEC("fexit/tcp_sendmsg")
int BPF_PROG(gen_send_fexit, struct sock *sk, struct msghdr *msg, __u64 size, int ret)
{
	sent(sk, ret);
	return 0;
}

SEC("fentry/sock_def_readable")
int BPF_PROG(gen_ready_fentry, struct sock *sk)
{
	data_ready(sk);
	return 0;
}

/* Without BTF trampolines: kprobes (the send is then timed at tcp_sendmsg's entry). */
SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(gen_send_kprobe, struct sock *sk)
{
	sent(sk, 1);
	return 0;
}

SEC("kprobe/sock_def_readable")
int BPF_KPROBE(gen_ready_kprobe, struct sock *sk)
{
	data_ready(sk);
	return 0;
}
