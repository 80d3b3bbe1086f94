//! The real [`Executor`]: runs the engine on its own thread for each order the agent accepts.
//!
//! The order's load flags are parsed and validated exactly as a single-node run's; the plan is
//! then scaled by this worker's share schedule, and later share changes are published to the
//! running engine as a new plan (see [`Control`]).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::RunConfig;
use crate::engine::{self, Control};
use crate::export::prometheus::Metrics;
use crate::plan::Plan;

use super::agent::Executor;
use super::coordinator::{load_argv, load_config};
use super::wire::{share_at, Interval, KernelInterval, Order, ShareStep, UsersShare, WorkerState};

/// Name of the single endpoint of a run without named requests.
pub const DEFAULT_ENDPOINT: &str = "default";

#[derive(Debug, Default)]
struct Shared {
    intervals: Vec<Interval>,
    finished: bool,
    error: Option<String>,
}

struct Job {
    control: Arc<Control>,
    shares: Arc<Mutex<Vec<ShareStep>>>,
    base: Plan,
    start: Instant,
    shared: Arc<Mutex<Shared>>,
    handle: Option<JoinHandle<()>>,
}

/// Runs orders on the local engine and feeds the worker's `/metrics`.
pub struct EngineExecutor {
    threads: usize,
    /// The coordinator's addresses: heartbeats are not load, the probes skip them.
    coordinator: Vec<std::net::SocketAddr>,
    metrics: Metrics,
    job: Option<Job>,
    error: Option<String>,
}

impl EngineExecutor {
    pub fn new(metrics: Metrics, coordinator: &str) -> Self {
        use std::net::ToSocketAddrs;
        EngineExecutor {
            threads: engine::default_threads(),
            coordinator: coordinator
                .to_socket_addrs()
                .map_or(Vec::new(), |a| a.collect()),
            metrics,
            job: None,
            error: None,
        }
    }

    fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
        shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The base plan scaled by a share schedule.
pub fn plan_for_shares(base: &Plan, shares: &[ShareStep]) -> Plan {
    base.scaled(
        &shares
            .iter()
            .map(|s| (Duration::from_secs_f64(s.from_s.max(0.0)), s.share))
            .collect::<Vec<_>>(),
    )
}

/// The load narrowed to this worker's part of the users, numbered from its first user (for
/// `pick = "user"` CSV rows). With `--seed`, every worker would draw the same `{{user.id}}`
/// UUIDs (they come from the seeded RNG of each thread), so the seed is mixed with the
/// worker's first user number, unique in the cluster; the first worker keeps the seed as given.
fn users_config(cfg: RunConfig, u: &UsersShare) -> Result<RunConfig, String> {
    if cfg.plan.users().is_none() {
        return Err("order has users but its load is not the users model".into());
    }
    let users = usize::try_from(u.users)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("order with {} users", u.users))?;
    let mut cfg = cfg.with_users(users, u.spawn_rate);
    cfg.first_user = u.first_user;
    if u.first_user > 0 {
        cfg.seed ^= splitmix64(u.first_user);
    }
    Ok(cfg)
}

/// SplitMix64's finalizer: spreads a small integer over all 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Executor for EngineExecutor {
    fn start(&mut self, epoch: u64, order: &Order) -> Result<(), String> {
        // Never two engines on the same cores: the previous run drains first (bounded by its
        // request timeout).
        if let Some(mut job) = self.job.take() {
            job.control.stop();
            if let Some(h) = job.handle.take() {
                let _ = h.join();
            }
        }
        self.error = None;
        let result = (|| {
            let argv = load_argv(&order.load)?;
            let mut cfg: RunConfig = load_config(&argv)?;
            cfg.progress = false;
            if let Some(u) = order.users {
                cfg = users_config(cfg, &u)?;
            }
            let base = cfg.plan.clone();
            cfg.plan = plan_for_shares(&base, &order.shares);
            Ok::<_, String>((cfg, base))
        })();
        let (cfg, base) = match result {
            Ok(v) => v,
            Err(e) => {
                self.error = Some(e.clone());
                return Err(e);
            }
        };
        // The coordinator's wall-clock start, mapped once onto our monotonic clock.
        let ahead = order.start_unix_ms.saturating_sub(now_unix_ms());
        let start = Instant::now() + Duration::from_millis(ahead);
        let control = Arc::new(Control::starting_at(start));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let shares = std::sync::Arc::new(Mutex::new(order.shares.clone()));
        // Per request name in /metrics, as the coordinator's stats table.
        self.metrics.set_names(
            cfg.scenario
                .as_ref()
                .map_or(Vec::new(), |s| s.names.clone()),
        );
        let handle = {
            let shares_now = Arc::clone(&shares);
            let skip = self.coordinator.clone();
            let (control, shared, metrics) = (
                Arc::clone(&control),
                Arc::clone(&shared),
                self.metrics.clone(),
            );
            std::thread::Builder::new()
                .name("gen-run".into())
                .spawn(move || {
                    // Kernel probes load before the connections open, so every socket is
                    // registered; `auto` without privileges says why once and goes on.
                    let probes_off = match crate::probes::start(cfg.probes) {
                        Ok(why) => why,
                        Err(e) => {
                            let mut sh = Self::lock(&shared);
                            sh.error = Some(e.to_string());
                            sh.finished = true;
                            return;
                        }
                    };
                    if let Some(why) = &probes_off {
                        eprintln!("gen worker: kernel probes off: {why}");
                    }
                    crate::probes::skip_destinations(&skip);
                    let attach = crate::probes::attach_method();
                    let mut kernel_before = generator_ebpf::KernelStats::default();
                    // Requests sent and not yet answered or failed, over the run so far.
                    let mut outstanding: i64 = 0;
                    let outcome = engine::run_with(&cfg, &control, |second, snap| {
                        metrics.add_interval(DEFAULT_ENDPOINT, snap);
                        let settled = snap.requests() + snap.errors_total()
                            - snap.errors(crate::measure::ErrorKind::Status);
                        outstanding += snap.sent() as i64 - settled as i64;
                        let rate = cfg.plan.rate().map_or(0.0, |r| {
                            let t = second as f64 + 1.0 + cfg.plan.warmup.as_secs_f64();
                            let steps = shares_now.lock().unwrap_or_else(|e| e.into_inner());
                            r * share_at(&steps, t)
                        });
                        metrics.set_gauges(rate, cfg.connections as i64, outstanding.max(0));
                        let mut endpoints = std::collections::BTreeMap::new();
                        endpoints.insert(DEFAULT_ENDPOINT.to_owned(), snap.clone());
                        // The kernel's figures since the previous interval: read when the
                        // engine's second is complete, so the two cover the same requests
                        // up to the few in flight at the boundary.
                        let kernel = attach.zip(crate::probes::read_now()).map(|(a, now)| {
                            let d = crate::probes::since(&kernel_before, &now);
                            kernel_before = now;
                            let k = KernelInterval::of(crate::probes::figures(a, &d));
                            metrics.add_kernel(&k.latency, &k.connect);
                            k
                        });
                        Self::lock(&shared).intervals.push(Interval {
                            epoch,
                            second,
                            endpoints,
                            kernel,
                        });
                    });
                    // Unloads the probes (their figures went out with the intervals).
                    let _ = crate::probes::finish(cfg.probes, probes_off);
                    let mut sh = Self::lock(&shared);
                    if let Err(e) = outcome {
                        sh.error = Some(e.to_string());
                    }
                    sh.finished = true;
                })
                .map_err(|e| format!("cannot start the engine thread: {e}"))?
        };
        self.job = Some(Job {
            control,
            shares,
            base,
            start,
            shared,
            handle: Some(handle),
        });
        Ok(())
    }

    fn update(&mut self, order: &Order) {
        if let Some(job) = &self.job {
            job.control
                .set_plan(plan_for_shares(&job.base, &order.shares));
            *job.shares.lock().unwrap_or_else(|e| e.into_inner()) = order.shares.clone();
        }
    }

    fn stop(&mut self) {
        if let Some(job) = &mut self.job {
            job.control.stop();
            // The engine drains in-flight requests (bounded by the request timeout); the
            // heartbeat loop must not wait for that, so the thread is joined at the next start.
            if Self::lock(&job.shared).finished {
                if let Some(h) = job.handle.take() {
                    let _ = h.join();
                }
            }
        }
    }

    fn poll(&mut self) -> (WorkerState, Vec<Interval>) {
        let Some(job) = &self.job else {
            return (
                if self.error.is_some() {
                    WorkerState::Failed
                } else {
                    WorkerState::Idle
                },
                Vec::new(),
            );
        };
        let mut sh = Self::lock(&job.shared);
        let intervals = std::mem::take(&mut sh.intervals);
        let state = if let Some(e) = &sh.error {
            self.error = Some(e.clone());
            WorkerState::Failed
        } else if sh.finished {
            WorkerState::Idle
        } else if Instant::now() < job.start {
            WorkerState::Starting
        } else {
            WorkerState::Running
        };
        (state, intervals)
    }

    fn error(&self) -> Option<String> {
        self.error.clone()
    }

    fn threads(&self) -> usize {
        self.threads
    }
}

impl Drop for EngineExecutor {
    fn drop(&mut self) {
        if let Some(job) = &mut self.job {
            job.control.stop();
            if let Some(h) = job.handle.take() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's part of the users: its count, one connection each, its spawn rate, users
    /// numbered from its first, and a seed of its own when it is not the first worker.
    #[test]
    fn users_config_narrows_the_run_to_the_workers_part() {
        let argv: Vec<String> = ["--users", "30", "--spawn-rate", "6", "--seed", "7"]
            .iter()
            .map(|s| s.to_string())
            .chain(["http://127.0.0.1:1/".to_owned()])
            .collect();
        let cfg = load_config(&argv).unwrap();
        let part = |users, first_user| UsersShare {
            users,
            spawn_rate: Some(1.4),
            first_user,
        };
        let first = users_config(cfg.clone(), &part(7, 0)).unwrap();
        let u = first.plan.users().unwrap();
        assert_eq!((u.users, u.spawn_rate), (7, Some(1.4)));
        assert_eq!((first.connections, first.first_user, first.seed), (7, 0, 7));
        assert!(first.threads <= 7);
        let second = users_config(cfg.clone(), &part(1, 7)).unwrap();
        assert_eq!(
            (second.connections, second.threads, second.first_user),
            (1, 1, 7)
        );
        assert_ne!(second.seed, 7);
        assert!(users_config(cfg, &part(0, 0)).is_err());
        let rate = load_config(&["--rate".into(), "5".into(), "http://127.0.0.1:1/".into()]);
        assert!(users_config(rate.unwrap(), &part(3, 0)).is_err());
    }
}
