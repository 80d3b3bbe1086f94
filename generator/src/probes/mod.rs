//! Kernel probes (optional at run time): load gen's eBPF programs (`generator-ebpf`) for this
//! process, open the measured window when the engine starts the clock, and turn what the
//! kernel recorded into HDR histograms for the report.
//!
//! The programs filter on this process's id, so a loaded set belongs to the whole process:
//! it is kept in one process-wide slot ([`start`] fills it, [`measure_from`] is the engine's
//! hook at the start of the clock, [`finish`] empties it). See `docs/probes.md`.

use std::sync::Mutex;
use std::time::Instant;

use generator_ebpf::{KernelStats, ProbeError, Probes};

use crate::measure::Hist;

/// `--probes`: whether to load the kernel probes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeMode {
    /// Load them when this process may; otherwise run without and say why in one line.
    #[default]
    Auto,
    /// Load them or fail (exit 2).
    On,
    /// Do not load them.
    Off,
}

/// What became of the probes for a run, as the report shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum KernelStatus {
    /// `--probes off`.
    Off,
    /// Requested (auto) but not possible here; the reason is one line.
    Unavailable(String),
    /// Loaded; the figures of the measured window.
    Measured(Box<KernelFigures>),
}

/// Figures recorded in the kernel for this process's sockets over the measured window.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelFigures {
    /// How sends and data-ready were observed (`tracepoint`, `fentry`, `kprobe`).
    pub attach: &'static str,
    /// Kernel latency: request sent -> response data ready, µs.
    pub latency: Hist,
    /// TCP connect time, SYN_SENT -> ESTABLISHED, µs (every connect, like the engine's).
    pub connect: Hist,
    /// Smoothed RTT, one sample per incoming segment, µs.
    pub srtt: Hist,
    /// Retransmitted segments.
    pub retransmits: u64,
    /// Sockets the generator opened while the probes ran.
    pub sockets: u64,
}

/// The loaded probes of this process (see the module docs for why it is one slot).
static SESSION: Mutex<Option<Probes>> = Mutex::new(None);

/// Why `--probes on` cannot be honoured.
#[derive(Debug, thiserror::Error)]
#[error("--probes on: kernel probes unavailable: {0}")]
pub struct Required(#[source] pub ProbeError);

/// Loads the probes per `mode`. `Ok(None)` when off; `Ok(Some(reason))` when auto could
/// not load them (the run goes on without); `Err` when `on` could not.
pub fn start(mode: ProbeMode) -> Result<Option<String>, Required> {
    if mode == ProbeMode::Off {
        return Ok(None);
    }
    match Probes::load(std::process::id()) {
        Ok(p) => {
            *SESSION.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
            Ok(None)
        }
        Err(e) if mode == ProbeMode::On => Err(Required(e)),
        Err(e) => Ok(Some(e.to_string())),
    }
}

/// Engine hook: the measured window starts at `from` (after warm-up). No-op without probes.
pub fn measure_from(from: Instant) {
    if let Some(p) = SESSION.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        // A failed map write leaves the gate closed: the report then shows no kernel samples
        // rather than warm-up ones.
        let _ = p.measure_from(from);
    }
}

/// Reads and unloads the probes. `mode` and the reason from [`start`] decide what a run
/// without figures shows.
pub fn finish(mode: ProbeMode, unavailable: Option<String>) -> KernelStatus {
    let session = SESSION.lock().unwrap_or_else(|e| e.into_inner()).take();
    match (session, unavailable) {
        (Some(p), _) => match p.read() {
            Ok(stats) => KernelStatus::Measured(Box::new(figures(p.method().as_str(), &stats))),
            Err(e) => KernelStatus::Unavailable(format!("reading the probes failed: {e}")),
        },
        (None, Some(reason)) => KernelStatus::Unavailable(reason),
        (None, None) if mode == ProbeMode::Off => KernelStatus::Off,
        (None, None) => KernelStatus::Unavailable("probes were not loaded".into()),
    }
}

/// Connections to these addresses are not load (a worker's coordinator): the probes never
/// register them. IPv6 addresses are ignored (the probes key IPv4 destinations only).
pub fn skip_destinations(addrs: &[std::net::SocketAddr]) {
    if let Some(p) = SESSION.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        for a in addrs {
            if let std::net::SocketAddr::V4(v4) = a {
                // A full map only means a few heartbeats get timed too.
                let _ = p.skip_destination(*v4);
            }
        }
    }
}

/// How the loaded probes observe sends and data-ready (`None` when none are loaded).
pub fn attach_method() -> Option<&'static str> {
    SESSION
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|p| p.method().as_str())
}

/// The probes' cumulative figures now, without unloading them (`None` when none are loaded
/// or reading fails): a long-running worker reads them once per interval.
pub fn read_now() -> Option<KernelStats> {
    SESSION
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|p| p.read().ok())
}

/// What was recorded between two cumulative reads `prev` and `cur` (bucket by bucket, so the
/// intervals of a run add up exactly to its totals).
pub fn since(prev: &KernelStats, cur: &KernelStats) -> KernelStats {
    fn sub(prev: &[(u64, u64, u64)], cur: &[(u64, u64, u64)]) -> Vec<(u64, u64, u64)> {
        cur.iter()
            .filter_map(|&(lo, w, n)| {
                let before = prev.iter().find(|b| b.0 == lo).map_or(0, |b| b.2);
                let d = n.saturating_sub(before);
                (d > 0).then_some((lo, w, d))
            })
            .collect()
    }
    KernelStats {
        latency_ns: sub(&prev.latency_ns, &cur.latency_ns),
        connect_ns: sub(&prev.connect_ns, &cur.connect_ns),
        srtt_us: sub(&prev.srtt_us, &cur.srtt_us),
        registered: cur.registered.saturating_sub(prev.registered),
        retransmits: cur.retransmits.saturating_sub(prev.retransmits),
        unpaired: cur.unpaired.saturating_sub(prev.unpaired),
        sends: cur.sends.saturating_sub(prev.sends),
        ring_lost: cur.ring_lost.saturating_sub(prev.ring_lost),
    }
}

/// Converts the kernel's buckets into HDR histograms.
pub fn figures(attach: &'static str, s: &KernelStats) -> KernelFigures {
    KernelFigures {
        attach,
        latency: hist(&s.latency_ns, 1_000),
        connect: hist(&s.connect_ns, 1_000),
        srtt: hist(&s.srtt_us, 1),
        retransmits: s.retransmits,
        sockets: s.registered,
    }
}

/// Each bucket's count at its midpoint (relative error <= 0.2%), in µs; `per_us` is how many
/// bucket units make a µs. Truncated to whole µs like the engine's own histograms.
fn hist(buckets: &[(u64, u64, u64)], per_us: u64) -> Hist {
    let mut h = Hist::new();
    for &(lo, width, n) in buckets {
        h.record_us_n((lo + width / 2) / per_us, n);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_between_reads_add_up_to_the_totals() {
        let a = KernelStats {
            latency_ns: vec![(1000, 10, 3), (5000, 50, 1)],
            retransmits: 2,
            registered: 4,
            ..Default::default()
        };
        let b = KernelStats {
            latency_ns: vec![(1000, 10, 5), (2000, 20, 7), (5000, 50, 1)],
            retransmits: 3,
            registered: 4,
            ..Default::default()
        };
        let d = since(&a, &b);
        assert_eq!(d.latency_ns, [(1000, 10, 2), (2000, 20, 7)]);
        assert_eq!((d.retransmits, d.registered), (1, 0));
        assert_eq!(since(&KernelStats::default(), &a), a);
    }
    use generator_ebpf::{bucket_bounds, bucket_of};

    /// Values through the kernel's bucket layout and back land within 0.3% (+1 µs for the
    /// truncation to whole µs) of where they started.
    #[test]
    fn kernel_buckets_become_hdr_within_a_third_of_a_percent() {
        for ns in [
            1_500u64,
            20_000,
            155_000,
            2_000_000,
            2_000_100,
            47_000_000,
            3_000_000_000,
        ] {
            let (r, c) = bucket_of(ns);
            let (lo, w) = bucket_bounds(r, c);
            let h = hist(&[(lo, w, 7)], 1_000);
            assert_eq!(h.count(), 7);
            let got = h.value_at_quantile(0.5) as f64;
            let want = ns as f64 / 1_000.0;
            assert!(
                (got - want).abs() <= want * 0.003 + 1.0,
                "{ns} ns -> {got} µs"
            );
        }
    }

    #[test]
    fn figures_keep_counts_and_units() {
        let stats = KernelStats {
            latency_ns: vec![(2_097_152, 16_384, 10)],
            connect_ns: vec![(163_840, 1_024, 2)],
            srtt_us: vec![(21, 1, 3)],
            registered: 2,
            retransmits: 1,
            unpaired: 0,
            sends: 10,
            ring_lost: 0,
        };
        let f = figures("tracepoint", &stats);
        assert_eq!(f.latency.count(), 10);
        assert_eq!(f.latency.value_at_quantile(0.5), 2_105);
        assert_eq!(f.connect.value_at_quantile(0.5), 164);
        assert_eq!(f.srtt.value_at_quantile(0.5), 21);
        assert_eq!((f.retransmits, f.sockets, f.attach), (1, 2, "tracepoint"));
    }

    #[test]
    fn off_and_unavailable_need_no_kernel() {
        assert_eq!(start(ProbeMode::Off).unwrap(), None);
        assert_eq!(finish(ProbeMode::Off, None), KernelStatus::Off);
        assert_eq!(
            finish(ProbeMode::Auto, Some("no BTF".into())),
            KernelStatus::Unavailable("no BTF".into())
        );
        // Without a session the engine hook does nothing.
        measure_from(Instant::now());
    }
}
