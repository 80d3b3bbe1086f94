/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Trimmed CO-RE header for gen's probes: only the kernel types the programs touch, instead
 * of the whole generated vmlinux.h (134k lines). Fields carry preserve_access_index, so the
 * loader relocates their offsets against the running kernel's BTF.
 */
#ifndef GEN_VMLINUX_H
#define GEN_VMLINUX_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <asm/ptrace.h> /* struct pt_regs for the kprobe fallback (uapi layout) */

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

/* The destination, read once per connect (both inside anonymous unions in the kernel). */
struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
};

/* Otherwise an opaque key, or cast to tcp_sock. */
struct sock {
	struct sock_common __sk_common;
};

struct sk_buff;
struct msghdr;

struct tcp_sock {
	__u32 srtt_us; /* smoothed RTT << 3, in µs */
};

#pragma clang attribute pop

#endif
