//! gen's kernel probes: the committed eBPF object (`bpf/gen_probes.bpf.o`, built from
//! `bpf/gen_probes.bpf.c` by `cargo xtask ebpf`), embedded in the binary and loaded with aya.
//!
//! What the programs record, per socket of the generator's own process (see the C source and
//! `docs/probes.md`): kernel latency (request send -> response data-ready), connect time
//! (SYN_SENT -> ESTABLISHED), smoothed RTT samples and retransmits. Latencies go into
//! per-CPU log-linear histograms in the kernel ([`ROWS`] rows of [`SUB`] buckets per kind);
//! [`Probes::read`] sums the CPUs and returns the non-empty buckets.
//!
//! Why in-kernel histograms rather than a ring buffer of per-request events: the per-event
//! cost stays one hash lookup and one per-CPU add (no reservation, no wake-up, no reader
//! thread competing with the engine for the generator's cores), the memory is fixed, and a
//! bucket is at most 0.39% wide (the reader uses midpoints: error <= 0.2%), inside the 1%
//! the report needs. The ring buffer is kept as [`Transport::RingBuf`] only to measure that
//! choice against (`cargo xtask bench --probes`; figures in `docs/benchmarks.md`).

use std::fmt;
use std::io;
use std::time::Instant;

use aya::maps::{Array, PerCpuArray};
use aya::programs::{BtfTracePoint, FEntry, FExit, KProbe};
use aya::{include_bytes_aligned, Btf, Ebpf, EbpfLoader};
use thiserror::Error;

mod hash;
pub use hash::{source_hash, SOURCE_FILES};

/// The compiled programs.
pub static OBJECT: &[u8] = include_bytes_aligned!("../bpf/gen_probes.bpf.o");
/// Sources of [`OBJECT`]; their hash is recorded when the object is built.
pub const SOURCES: [(&str, &[u8]); 2] = [
    (
        "gen_probes.bpf.c",
        include_bytes!("../bpf/gen_probes.bpf.c"),
    ),
    ("gen_vmlinux.h", include_bytes!("../bpf/gen_vmlinux.h")),
];
/// Hash of [`SOURCES`] when [`OBJECT`] was last built (`cargo xtask ebpf` writes it).
pub const RECORDED_SOURCE_HASH: &str = include_str!("../bpf/gen_probes.bpf.o.hash");
/// The same programs built with `-DGEN_RINGBUF`: kernel latencies leave the kernel as
/// per-request events through a ring buffer (see [`Transport`]). Built and hashed with
/// [`OBJECT`].
pub static RINGBUF_OBJECT: &[u8] = include_bytes_aligned!("../bpf/gen_probes_ringbuf.bpf.o");

/// Linear sub-buckets per power of two (must match `SUB` in the C source).
pub const SUB: usize = 256;
/// Rows per histogram kind (must match `ROWS` in the C source).
pub const ROWS: usize = 34;
const SUB_BITS: u32 = 8;
/// Histogram kinds, in map order (must match `KIND_*` in the C source).
const KINDS: usize = 3;
/// Counters (must match `CTR_*` in the C source).
const CTRS: u32 = 5;

/// Bucket of value `v` as (row, column): the same arithmetic as `record()` in the C source.
pub fn bucket_of(v: u64) -> (usize, usize) {
    let v = v.min((1u64 << 41) - 1);
    if v < SUB as u64 {
        (0, v as usize)
    } else {
        let e = 63 - v.leading_zeros();
        (
            (e - (SUB_BITS - 1)) as usize,
            ((v >> (e - SUB_BITS)) as usize) & (SUB - 1),
        )
    }
}

/// Lowest value and width of bucket (row, column).
pub fn bucket_bounds(row: usize, col: usize) -> (u64, u64) {
    if row == 0 {
        (col as u64, 1)
    } else {
        let shift = row as u32 - 1;
        (((SUB + col) as u64) << shift, 1u64 << shift)
    }
}

/// How the two events without a stable tracepoint before Linux 6.3 (request sent, response
/// readable) are observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMethod {
    /// `tp_btf` on `sock:sock_send_length` and `sock:sk_data_ready` (Linux 6.3+).
    Tracepoint,
    /// `fexit` on `tcp_sendmsg`, `fentry` on `sock_def_readable` (BTF trampolines, 5.5+).
    Fentry,
    /// `kprobe` on `tcp_sendmsg` (send timed at entry) and `sock_def_readable`.
    Kprobe,
}

impl AttachMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMethod::Tracepoint => "tracepoint",
            AttachMethod::Fentry => "fentry",
            AttachMethod::Kprobe => "kprobe",
        }
    }
}

impl fmt::Display for AttachMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The attach methods to try for the send and data-ready events on kernel `major.minor`,
/// best first; each later one is a fallback when the earlier cannot load or attach (fentry
/// is refused on some kernels, kprobes are compiled out of others). The other three events
/// (connect state, tcp_probe, retransmits) are `tp_btf` tracepoints everywhere, which needs
/// Linux 5.5.
pub fn attach_order(major: u32, minor: u32) -> Result<&'static [AttachMethod], ProbeError> {
    use AttachMethod::*;
    let v = (major, minor);
    if v >= (6, 3) {
        Ok(&[Tracepoint, Fentry, Kprobe])
    } else if v >= (5, 5) {
        Ok(&[Fentry, Kprobe])
    } else {
        Err(ProbeError::OldKernel { major, minor })
    }
}

/// `major.minor` of the running kernel (from `uname`).
pub fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: uname fills a plain struct.
    let uts = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        u
    };
    let release: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    parse_release(&String::from_utf8_lossy(&release))
}

/// `"6.18.44-foo"` -> `(6, 18)`.
pub fn parse_release(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Why the probes cannot run. Each message is one line a user can act on.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(
        "no permission to load eBPF programs (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)"
    )]
    Permission,
    #[error(
        "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing; needs CONFIG_DEBUG_INFO_BTF)"
    )]
    NoBtf,
    #[error("Linux {major}.{minor} is too old for BTF tracepoints (needs 5.5 or later)")]
    OldKernel { major: u32, minor: u32 },
    #[error("cannot load the eBPF programs: {0}")]
    Load(String),
}

impl ProbeError {
    /// Maps a load/attach failure: permission errors anywhere in the chain say so plainly.
    fn from_err(e: &(dyn std::error::Error + 'static)) -> ProbeError {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut text = e.to_string();
        while let Some(err) = cur {
            if let Some(io) = err.downcast_ref::<io::Error>() {
                if matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                    return ProbeError::Permission;
                }
            }
            cur = err.source();
            if let Some(s) = cur {
                text = format!("{text}: {s}");
            }
        }
        // Verifier logs are long; one line is enough here.
        ProbeError::Load(text.lines().next().unwrap_or("").to_string())
    }
}

/// Whether this process has the capabilities loading tracing programs needs: CAP_BPF and
/// CAP_PERFMON (Linux 5.8+), or CAP_SYS_ADMIN.
pub fn has_capabilities() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const V3: u32 = 0x2008_0522;
    let mut hdr = Header {
        version: V3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a v3 header and room for its two data words.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    let has = |cap: u32| data[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0;
    const SYS_ADMIN: u32 = 21;
    const PERFMON: u32 = 38;
    const BPF: u32 = 39;
    has(SYS_ADMIN) || (has(BPF) && has(PERFMON))
}

/// Everything the probes measured, summed over CPUs. Buckets are (lowest value, width,
/// count), non-empty only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelStats {
    /// Request send -> response data-ready, ns.
    pub latency_ns: Vec<(u64, u64, u64)>,
    /// SYN_SENT -> ESTABLISHED, ns.
    pub connect_ns: Vec<(u64, u64, u64)>,
    /// Smoothed RTT per incoming segment, µs.
    pub srtt_us: Vec<(u64, u64, u64)>,
    /// Sockets registered (connects started by this process).
    pub registered: u64,
    /// Retransmitted segments on them.
    pub retransmits: u64,
    /// Data-ready events with no send in flight (ignored).
    pub unpaired: u64,
    /// Send events on registered sockets.
    pub sends: u64,
    /// Kernel latencies the ring buffer had no room for ([`Transport::RingBuf`] only).
    pub ring_lost: u64,
}

/// How kernel latencies leave the kernel. [`Transport::Histogram`] is what gen uses; the ring
/// buffer is the alternative the issue asked to measure against, selected only by the
/// environment variable `GEN_PROBES_TRANSPORT=ringbuf` (`cargo xtask bench --probes` runs
/// both). Connect times, srtt and counters stay in maps either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Per-CPU log-linear histograms in the kernel, summed when read.
    Histogram,
    /// One 8-byte event per request through a `BPF_MAP_TYPE_RINGBUF`, drained every
    /// [`RING_DRAIN_EVERY`] by a reader thread into the same buckets.
    RingBuf,
}

/// How often the ring-buffer reader drains (the programs never wake it).
pub const RING_DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

impl Transport {
    /// `GEN_PROBES_TRANSPORT`: unset, `histogram` or `ringbuf`.
    pub fn from_env() -> Res<Transport> {
        match std::env::var("GEN_PROBES_TRANSPORT") {
            Err(_) => Ok(Transport::Histogram),
            Ok(v) if v == "histogram" => Ok(Transport::Histogram),
            Ok(v) if v == "ringbuf" => Ok(Transport::RingBuf),
            Ok(v) => Err(ProbeError::Load(format!(
                "GEN_PROBES_TRANSPORT={v:?}: expected histogram or ringbuf"
            ))),
        }
    }
}

/// The ring-buffer reader: a thread that drains the events into log-linear buckets every
/// [`RING_DRAIN_EVERY`]; [`RingReader::read`] drains what is left first, so a read sees
/// every event output before it.
struct RingReader {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    state: std::sync::Arc<std::sync::Mutex<RingState>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct RingState {
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    buckets: Vec<u64>,
}

impl RingState {
    fn drain(&mut self) {
        while let Some(item) = self.ring.next() {
            if let Ok(b) = <[u8; 8]>::try_from(&*item) {
                let (row, col) = bucket_of(u64::from_ne_bytes(b));
                self.buckets[row * SUB + col] += 1;
            }
        }
    }
}

impl RingReader {
    fn start(ring: aya::maps::RingBuf<aya::maps::MapData>) -> Res<RingReader> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(RingState {
            ring,
            buckets: vec![0u64; ROWS * SUB],
        }));
        let (stop2, state2) = (Arc::clone(&stop), Arc::clone(&state));
        let thread = std::thread::Builder::new()
            .name("gen-probes-ring".into())
            .spawn(move || {
                while !stop2.load(Ordering::Acquire) {
                    state2.lock().unwrap_or_else(|e| e.into_inner()).drain();
                    std::thread::sleep(RING_DRAIN_EVERY);
                }
            })
            .map_err(|e| ProbeError::Load(format!("starting the ring-buffer reader: {e}")))?;
        Ok(RingReader {
            stop,
            state,
            thread: Some(thread),
        })
    }

    /// Every event so far, as (lowest value, width, count) buckets.
    fn read(&self) -> Vec<(u64, u64, u64)> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.drain();
        let mut out = Vec::new();
        for (i, &n) in st.buckets.iter().enumerate() {
            if n > 0 {
                let (lo, w) = bucket_bounds(i / SUB, i % SUB);
                out.push((lo, w, n));
            }
        }
        out
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Loaded and attached probes; detached when dropped.
pub struct Probes {
    ebpf: Ebpf,
    method: AttachMethod,
    /// Set with [`Transport::RingBuf`].
    ring: Option<RingReader>,
}

impl fmt::Debug for Probes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probes")
            .field("method", &self.method)
            .finish()
    }
}

type Res<T> = Result<T, ProbeError>;

fn err(e: impl std::error::Error + 'static) -> ProbeError {
    ProbeError::from_err(&e)
}

impl Probes {
    /// Checks privileges and BTF, loads the programs for process `tgid`, attaches them with
    /// the first method of [`attach_order`] that works. Takes 0.1-0.3 s.
    pub fn load(tgid: u32) -> Res<Probes> {
        Probes::load_with(tgid, Transport::from_env()?)
    }

    /// [`Probes::load`] with the kernel latencies leaving the kernel by `transport`.
    pub fn load_with(tgid: u32, transport: Transport) -> Res<Probes> {
        if !has_capabilities() {
            return Err(ProbeError::Permission);
        }
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err(ProbeError::NoBtf);
        }
        let (major, minor) = kernel_version().unwrap_or((0, 0));
        let order = attach_order(major, minor)?;
        let btf = Btf::from_sys_fs().map_err(|_| ProbeError::NoBtf)?;
        let object = match transport {
            Transport::Histogram => OBJECT,
            Transport::RingBuf => RINGBUF_OBJECT,
        };
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("target_tgid", &tgid, true)
            .load(object)
            .map_err(err)?;
        // Nothing is recorded until the measured window is known (see `measure_from`).
        let mut gate: Array<_, u64> =
            Array::try_from(ebpf.map_mut("gate").ok_or_else(|| missing("gate"))?).map_err(err)?;
        gate.set(0, u64::MAX, 0).map_err(err)?;
        for (prog, tp) in [
            ("gen_state", "inet_sock_set_state"),
            ("gen_probe", "tcp_probe"),
            ("gen_retransmit", "tcp_retransmit_skb"),
        ] {
            attach_tp(&mut ebpf, &btf, prog, tp)?;
        }
        let ring = match transport {
            Transport::Histogram => None,
            Transport::RingBuf => {
                let map = ebpf.take_map("events").ok_or_else(|| missing("events"))?;
                Some(RingReader::start(
                    aya::maps::RingBuf::try_from(map).map_err(err)?,
                )?)
            }
        };
        let mut last = None;
        for &method in order {
            match attach_pair(&mut ebpf, &btf, method) {
                Ok(()) => return Ok(Probes { ebpf, method, ring }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ProbeError::Load("no attach method".into())))
    }

    /// Which method observes sends and data-ready.
    pub fn method(&self) -> AttachMethod {
        self.method
    }

    /// Connections to `dst` are not load (a worker's heartbeats to its coordinator): never
    /// register them. Only IPv4 destinations can be skipped.
    pub fn skip_destination(&mut self, dst: std::net::SocketAddrV4) -> Res<()> {
        let mut skip: aya::maps::HashMap<_, u64, u8> = aya::maps::HashMap::try_from(
            self.ebpf
                .map_mut("skip_dst")
                .ok_or_else(|| missing("skip_dst"))?,
        )
        .map_err(err)?;
        skip.insert(skip_key(dst), 1, 0).map_err(err)
    }

    /// Record only requests sent at or after `from` (the end of warm-up); connect times are
    /// always recorded, like the engine's own.
    pub fn measure_from(&mut self, from: Instant) -> Res<()> {
        let ns = monotonic_ns(from);
        let mut gate: Array<_, u64> =
            Array::try_from(self.ebpf.map_mut("gate").ok_or_else(|| missing("gate"))?)
                .map_err(err)?;
        gate.set(0, ns, 0).map_err(err)
    }

    /// Sums the per-CPU histograms and counters.
    pub fn read(&self) -> Res<KernelStats> {
        let hist: PerCpuArray<_, [u64; SUB]> =
            PerCpuArray::try_from(self.ebpf.map("hist").ok_or_else(|| missing("hist"))?)
                .map_err(err)?;
        let mut kinds: [Vec<(u64, u64, u64)>; KINDS] = Default::default();
        for (kind, out) in kinds.iter_mut().enumerate() {
            for row in 0..ROWS {
                let per_cpu = hist.get(&((kind * ROWS + row) as u32), 0).map_err(err)?;
                let mut sum = [0u64; SUB];
                for cpu in per_cpu.iter() {
                    for (s, v) in sum.iter_mut().zip(cpu.iter()) {
                        *s += v;
                    }
                }
                for (col, &n) in sum.iter().enumerate() {
                    if n > 0 {
                        let (lo, w) = bucket_bounds(row, col);
                        out.push((lo, w, n));
                    }
                }
            }
        }
        let ctrs: PerCpuArray<_, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("counters")
                .ok_or_else(|| missing("counters"))?,
        )
        .map_err(err)?;
        let mut c = [0u64; CTRS as usize];
        for (i, slot) in c.iter_mut().enumerate() {
            *slot = ctrs.get(&(i as u32), 0).map_err(err)?.iter().sum();
        }
        let [mut latency_ns, connect_ns, srtt_us] = kinds;
        if let Some(ring) = &self.ring {
            latency_ns = ring.read();
        }
        Ok(KernelStats {
            latency_ns,
            connect_ns,
            srtt_us,
            registered: c[0],
            retransmits: c[1],
            unpaired: c[2],
            sends: c[3],
            ring_lost: c[4],
        })
    }
}

/// The `skip_dst` key of a destination: address and port as the kernel stores them
/// (network byte order) read as native integers, `daddr << 16 | dport`.
pub fn skip_key(dst: std::net::SocketAddrV4) -> u64 {
    let daddr = u32::from_ne_bytes(dst.ip().octets()) as u64;
    let dport = u16::from_ne_bytes(dst.port().to_be_bytes()) as u64;
    (daddr << 16) | dport
}

fn missing(name: &str) -> ProbeError {
    ProbeError::Load(format!("map {name} missing from the object"))
}

fn attach_tp(ebpf: &mut Ebpf, btf: &Btf, prog: &str, tp: &str) -> Res<()> {
    let p: &mut BtfTracePoint = ebpf
        .program_mut(prog)
        .ok_or_else(|| missing(prog))?
        .try_into()
        .map_err(err)?;
    p.load(tp, btf).map_err(err)?;
    p.attach().map_err(err)?;
    Ok(())
}

fn attach_pair(ebpf: &mut Ebpf, btf: &Btf, method: AttachMethod) -> Res<()> {
    match method {
        AttachMethod::Tracepoint => {
            // Stamps sends where they start (Linux 6.12+); without it sock_send_length stamps
            // them where they return, up to tens of µs late under load (see the .bpf.c).
            let _ = attach_tp(ebpf, btf, "gen_send_start", "tcp_sendmsg_locked");
            attach_tp(ebpf, btf, "gen_send", "sock_send_length")?;
            attach_tp(ebpf, btf, "gen_ready", "sk_data_ready")
        }
        AttachMethod::Fentry => {
            let p: &mut FExit = ebpf
                .program_mut("gen_send_fexit")
                .ok_or_else(|| missing("gen_send_fexit"))?
                .try_into()
                .map_err(err)?;
            p.load("tcp_sendmsg", btf).map_err(err)?;
            p.attach().map_err(err)?;
            let p: &mut FEntry = ebpf
                .program_mut("gen_ready_fentry")
                .ok_or_else(|| missing("gen_ready_fentry"))?
                .try_into()
                .map_err(err)?;
            p.load("sock_def_readable", btf).map_err(err)?;
            p.attach().map_err(err)?;
            Ok(())
        }
        AttachMethod::Kprobe => {
            for (prog, func) in [
                ("gen_send_kprobe", "tcp_sendmsg"),
                ("gen_ready_kprobe", "sock_def_readable"),
            ] {
                let p: &mut KProbe = ebpf
                    .program_mut(prog)
                    .ok_or_else(|| missing(prog))?
                    .try_into()
                    .map_err(err)?;
                p.load().map_err(err)?;
                p.attach(func, 0).map_err(err)?;
            }
            Ok(())
        }
    }
}

/// CLOCK_MONOTONIC nanoseconds of `t` (the clock of `bpf_ktime_get_ns` and of `Instant`).
pub fn monotonic_ns(t: Instant) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let now = Instant::now();
    // SAFETY: clock_gettime fills a plain struct.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mono = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
    let delta = if t >= now {
        (t - now).as_nanos() as i128
    } else {
        -((now - t).as_nanos() as i128)
    };
    (mono + delta).max(0) as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn skip_keys_use_the_kernels_byte_order() {
        let k = super::skip_key("127.0.0.1:8089".parse().unwrap());
        // In memory the kernel holds 7f 00 00 01 and 1f 99 (network order).
        let daddr = (k >> 16) as u32;
        let dport = (k & 0xffff) as u16;
        assert_eq!(daddr.to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!(dport.to_ne_bytes(), [0x1f, 0x99]);
    }

    use super::*;

    /// CI's check that the committed object matches its sources: fails when a `.bpf.c` or the
    /// header changed and `cargo xtask ebpf` was not run.
    #[test]
    fn object_is_built_from_these_sources() {
        assert_eq!(
            RECORDED_SOURCE_HASH.trim(),
            source_hash(&SOURCES),
            "generator-ebpf/bpf sources changed without rebuilding the object: run `cargo xtask ebpf`"
        );
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        let names: Vec<&str> = SOURCES.iter().map(|s| s.0).collect();
        assert_eq!(names, SOURCE_FILES, "xtask hashes the same files");
    }

    #[test]
    fn hash_sees_every_byte_and_name() {
        let a = source_hash(&[("a", b"x")]);
        assert_ne!(a, source_hash(&[("a", b"y")]));
        assert_ne!(a, source_hash(&[("b", b"x")]));
        assert_ne!(source_hash(&[("a", b"xy")]), source_hash(&[("ax", b"y")]));
    }

    #[test]
    fn buckets_match_the_c_layout_and_stay_within_half_a_percent() {
        assert_eq!(bucket_of(0), (0, 0));
        assert_eq!(bucket_of(255), (0, 255));
        assert_eq!(bucket_of(256), (1, 0));
        assert_eq!(bucket_of(511), (1, 255));
        assert_eq!(bucket_of(512), (2, 0));
        assert_eq!(bucket_of(u64::MAX), (ROWS - 1, SUB - 1));
        for v in (0..2_000_000u64)
            .step_by(997)
            .chain([2_000_000, 123_456_789, 1 << 40])
        {
            let (r, c) = bucket_of(v);
            assert!(r < ROWS && c < SUB);
            let (lo, w) = bucket_bounds(r, c);
            assert!(lo <= v && v < lo + w, "{v} not in [{lo}, {})", lo + w);
            if v >= SUB as u64 {
                assert!(w as f64 / lo as f64 <= 1.0 / 256.0 + 1e-12, "{v}: {w}/{lo}");
            }
        }
    }

    #[test]
    fn attach_choice_per_kernel() {
        use AttachMethod::*;
        assert_eq!(attach_order(6, 18).unwrap(), [Tracepoint, Fentry, Kprobe]);
        assert_eq!(attach_order(6, 3).unwrap(), [Tracepoint, Fentry, Kprobe]);
        assert_eq!(attach_order(6, 2).unwrap(), [Fentry, Kprobe]);
        assert_eq!(attach_order(6, 1).unwrap(), [Fentry, Kprobe]);
        assert_eq!(attach_order(5, 15).unwrap(), [Fentry, Kprobe]);
        assert_eq!(attach_order(5, 5).unwrap(), [Fentry, Kprobe]);
        let e = attach_order(5, 4).unwrap_err().to_string();
        assert!(e.contains("5.4"), "{e}");
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_release("6.1"), Some((6, 1)));
        assert_eq!(parse_release("garbage"), None);
        assert!(kernel_version().is_some());
    }

    #[test]
    fn permission_errors_are_recognised_in_the_chain() {
        #[derive(Debug, Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        let e = Outer(io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(ProbeError::from_err(&e), ProbeError::Permission));
        let e = Outer(io::Error::from_raw_os_error(libc::EINVAL));
        match ProbeError::from_err(&e) {
            ProbeError::Load(s) => assert!(s.starts_with("outer: "), "{s}"),
            other => panic!("{other:?}"),
        }
    }
}
