//! The engine: pinned worker threads, each with its own driver (io_uring, or epoll: see
//! [`select`]), connections and recorder.
//!
//! [`run`] starts one worker per thread, pins each to a CPU, lets every worker open its
//! connections, then starts all of them at one common instant so that the global schedule
//! (request `i` due at `start + i / rate`, thread `t` taking `i ≡ t mod T`) holds across
//! threads. Workers send a snapshot of their recorder once a second; this thread merges
//! them exactly into the per-second series and the run totals.

pub mod conn;
pub mod control;
pub mod driver;
pub mod epoll;
pub mod select;
pub mod uring;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::RunConfig;
use crate::export::{Cpu, SeriesPoint};
use crate::measure::Snapshot;
pub use control::Control;
use driver::Driver;
use epoll::Epoll;
use select::DriverKind;
use uring::Uring;
use worker::{Interval, Shared, Worker, WorkerEnd};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("io_uring setup failed on worker {thread}: {source}")]
    Ring {
        thread: usize,
        source: std::io::Error,
    },
    #[error("worker {thread} failed: {source}")]
    Worker {
        thread: usize,
        source: std::io::Error,
    },
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub totals: Snapshot,
    /// Per-second figures from the end of warm-up, merged across threads. (Whole
    /// snapshots are about 1 MiB each; a long run keeps only these points.)
    pub series: Vec<SeriesPoint>,
    pub measured_s: f64,
    pub cpu: Cpu,
    pub driver: &'static str,
    /// Connections open when the clock started, over all threads.
    pub connected: usize,
    /// Scenario runs: per completed second (index after warm-up), the requests per name then
    /// the aggregate (see [`crate::export::current_rps`]).
    pub second_counts: Vec<(u64, Vec<u64>)>,
}

/// Run the configured load; `on_second` sees each completed second (index, merged
/// snapshot) as it arrives, for the live display.
pub fn run(cfg: &RunConfig, on_second: impl FnMut(u64, &Snapshot)) -> Result<Outcome, EngineError> {
    run_with(cfg, &Control::new(), on_second)
}

/// [`run`], steered by `control`: the clock starts at its start instant (when given and the
/// connections are open by then), it can stop the run early and replace the plan mid-run.
pub fn run_with(
    cfg: &RunConfig,
    control: &Control,
    mut on_second: impl FnMut(u64, &Snapshot),
) -> Result<Outcome, EngineError> {
    let threads = cfg.threads;
    let (kind, fallback) = select::choose(cfg.io);
    if let Some(why) = fallback {
        // Said once per run; the report names the driver too.
        eprintln!("gen: io_uring is unavailable ({why}); using the epoll driver");
    }
    let cpus = allowed_cpus();
    let shared = Shared {
        plan: &cfg.plan,
        request: &cfg.request,
        head_request: cfg.head_request,
        addr: cfg.addr.into(),
        no_address: cfg.unresolved.is_some(),
        timeout_ns: cfg.timeout.as_nanos() as u64,
        max_queue: cfg.max_queue,
        threads,
        resolution_ns: cfg.resolution.as_nanos() as u64,
        control,
        tls: cfg.tls.clone(),
        scenario: cfg.scenario.as_ref(),
        seed: cfg.seed,
        first_user: cfg.first_user,
    };
    let barrier = Barrier::new(threads + 1);
    let start_at: Mutex<Option<Instant>> = Mutex::new(None);
    let (tx, rx) = mpsc::channel::<Interval>();

    let mut totals = Snapshot::empty();
    let mut series: Vec<SeriesPoint> = Vec::new();
    // Seconds still waiting for some thread's snapshot: (merged so far, threads reported).
    let mut open_seconds: BTreeMap<u64, (Snapshot, usize)> = BTreeMap::new();
    let mut cpu_start = rusage();
    let mut early: Vec<Interval> = Vec::new();
    let names = cfg.scenario.as_ref().map_or(0, |s| s.names.len());
    let mut second_counts: Vec<(u64, Vec<u64>)> = Vec::new();

    let results: Vec<Result<(WorkerEnd, &'static str), EngineError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let tx = tx.clone();
                let (shared, barrier, start_at) = (&shared, &barrier, &start_at);
                let cpu = cpus.get(t % cpus.len().max(1)).copied();
                let conns = crate::plan::slots_of_thread(cfg.connections, t, threads);
                std::thread::Builder::new()
                    .name(format!("gen-worker-{t}"))
                    .spawn_scoped(s, move || {
                        worker_thread(t, cpu, conns, kind, shared, barrier, start_at, &tx)
                    })
                    .expect("spawning a worker thread")
            })
            .collect();
        drop(tx);
        barrier.wait(); // every worker has opened its connections
        if let Some(at) = control.start_at() {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        let start = Instant::now();
        crate::probes::measure_from(start + cfg.plan.warmup);
        cpu_start = rusage();
        *start_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(start);
        barrier.wait();
        // CPU is charged from the end of warm-up, like every other figure.
        let warm_end = start + cfg.plan.warmup;
        if !cfg.plan.warmup.is_zero() {
            while Instant::now() < warm_end {
                match rx.recv_timeout(warm_end - Instant::now()) {
                    Ok(iv) => early.push(iv),
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            cpu_start = rusage();
        }
        for iv in early.drain(..).chain(rx) {
            totals.merge(&iv.snapshot);
            let entry = open_seconds
                .entry(iv.index)
                .or_insert_with(|| (Snapshot::empty(), 0));
            entry.0.merge(&iv.snapshot);
            entry.1 += 1;
            if entry.1 == threads {
                let (snap, _) = open_seconds.remove(&iv.index).unwrap_or_default();
                on_second(iv.index, &snap);
                series.push(point(&snap, iv.index));
                if names > 0 {
                    let counts = crate::export::endpoints_second_counts(&snap, names);
                    second_counts.push((iv.index, counts));
                }
            }
        }
        // Threads that ended early report their last second under a smaller index.
        for (index, (snap, _)) in std::mem::take(&mut open_seconds) {
            series.push(point(&snap, index));
            if names > 0 {
                let counts = crate::export::endpoints_second_counts(&snap, names);
                second_counts.push((index, counts));
            }
        }
        series.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let cpu_end = rusage();

    let mut connected = 0;
    let mut last_ns = 0;
    let mut last_sent_ns = 0;
    let mut driver = "io_uring";
    for r in results {
        let (end, name) = r?;
        connected += end.connected_at_start;
        last_ns = last_ns.max(end.last_ns);
        last_sent_ns = last_sent_ns.max(end.last_sent_ns);
        driver = name;
    }
    let since_warm =
        |ns: u64| Duration::from_nanos(ns.saturating_sub(cfg.plan.warmup_ns())).as_secs_f64();
    let measured_s = match cfg.plan.duration {
        // Stopped early (--abort-on-fail, the cluster's stop): the time it really ran.
        _ if control.stopped() => since_warm(last_ns.max(last_sent_ns)).max(1e-6),
        // The planned window, or longer when the generator fell behind and sent late.
        Some(d) => d.as_secs_f64().max(since_warm(last_sent_ns)),
        None => since_warm(last_ns).max(1e-6),
    };
    Ok(Outcome {
        totals,
        series,
        measured_s,
        cpu: Cpu {
            user_s: cpu_end.0 - cpu_start.0,
            system_s: cpu_end.1 - cpu_start.1,
        },
        driver,
        connected,
        second_counts,
    })
}

fn point(s: &Snapshot, index: u64) -> SeriesPoint {
    SeriesPoint::from_snapshot(s, index as f64, 1.0)
}

#[allow(clippy::too_many_arguments)]
fn worker_thread(
    t: usize,
    cpu: Option<usize>,
    conns: usize,
    kind: DriverKind,
    shared: &Shared<'_>,
    barrier: &Barrier,
    start_at: &Mutex<Option<Instant>>,
    tx: &mpsc::Sender<Interval>,
) -> Result<(WorkerEnd, &'static str), EngineError> {
    if let Some(cpu) = cpu {
        pin_to(cpu);
    }
    // The default 50 µs timer slack would make every paced wake-up up to 50 µs late.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
    // The driver is created on this thread: SINGLE_ISSUER binds a ring to its creator.
    match kind {
        DriverKind::Uring => {
            let d = Uring::new(conns).map_err(|source| EngineError::Ring { thread: t, source });
            drive(t, d, conns, shared, barrier, start_at, tx)
        }
        DriverKind::Epoll => {
            let d = Epoll::new(conns).map_err(|source| EngineError::Worker { thread: t, source });
            drive(t, d, conns, shared, barrier, start_at, tx)
        }
    }
}

/// The rest of a worker's life, the same for every driver.
fn drive<D: Driver>(
    t: usize,
    driver: Result<D, EngineError>,
    conns: usize,
    shared: &Shared<'_>,
    barrier: &Barrier,
    start_at: &Mutex<Option<Instant>>,
    tx: &mpsc::Sender<Interval>,
) -> Result<(WorkerEnd, &'static str), EngineError> {
    let prepared = driver.and_then(|driver| {
        let mut w = Worker::new(t, shared, driver, conns);
        w.connect_all()
            .map_err(|source| EngineError::Worker { thread: t, source })?;
        Ok(w)
    });
    // Always meet the barriers, even after a failure, so the other threads are not stuck.
    barrier.wait();
    barrier.wait();
    let w = prepared?;
    let name = w.driver_name();
    let start = start_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_else(Instant::now);
    let end = w
        .run(start, tx)
        .map_err(|source| EngineError::Worker { thread: t, source })?;
    Ok((end, name))
}

/// Default worker threads: one per CPU this process may use, and no more than its CPU
/// quota allows (a container limited to 2 CPUs on a 64-core node runs 2 threads, not 64
/// throttled ones). The standard library reads the affinity mask and the cgroup v1/v2 quota.
pub fn default_threads() -> usize {
    let allowed = allowed_cpus().len().max(1);
    std::thread::available_parallelism().map_or(allowed, |n| n.get().min(allowed))
}

/// CPUs this process may run on (respects `taskset` and cgroup cpusets).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: as above; failure to pin is harmless (the thread just floats).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// (user, system) CPU seconds of the whole process so far.
pub fn rusage() -> (f64, f64) {
    // SAFETY: getrusage fills a plain struct.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}
