//! The coordinator's state machine, without I/O: which workers are alive, what each should
//! run, and the exact merge of everything they measured.
//!
//! The HTTP layer feeds it heartbeats and a clock ([`ClusterState::heartbeat`],
//! [`ClusterState::tick`]) and reads figures out of it; every decision lives here so it can be
//! tested with a fake clock.
//!
//! - Liveness: a worker silent for [`MISSING_AFTER`] is marked missing. Its share moves to the
//!   live workers at a run offset [`REBALANCE_LEAD`] ahead (time for every worker's next
//!   heartbeat to carry the change), so the global rate recovers within about 3 s of the loss
//!   being noticed. A worker that appears (or comes back) mid-run is rebalanced in the same way.
//! - Shares are weighted by each worker's thread count: a 4-core worker carries twice what a
//!   2-core one does.
//! - Users model (`--users N`): the N users are split once, at the start, into integers in
//!   proportion to thread counts ([`split_users`], largest remainder); each worker spawns its
//!   users at its share of the spawn rate. There is no live rebalancing of users: a user is a
//!   live session (its connection, its `{{user.id}}`, where it is in its think loop), and moving
//!   one would mean killing it on one worker and starting a new one elsewhere. A lost worker's
//!   users are gone for the rest of the run (the events say how many); a worker that joins
//!   mid-run gets users at the next run.
//! - `--abort-on-fail`: thresholds are judged on the merged totals each time a second of the
//!   series closes (never during warm-up: nothing of it is merged), and the run stops at the
//!   first one certainly failed.
//! - Merging is exact: every interval's histograms are added bucket by bucket into the run
//!   totals per endpoint and into that second's cluster-wide snapshot; percentiles are only ever
//!   read from merged histograms. Each (worker, epoch, second) is merged once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::export::SeriesPoint;
use crate::measure::Snapshot;

use super::wire::{
    share_at, Desired, Heartbeat, KernelInterval, Order, ShareStep, UsersShare, WorkerState,
};
use crate::export::{judge_abort, Abort, RunInfo, Threshold};
use crate::measure::Hist;

/// Silence after which a worker is considered lost.
pub const MISSING_AFTER: Duration = Duration::from_secs(3);
/// How far ahead of "now" a new run starts: every worker must hear of it and connect.
pub const START_LEAD: Duration = Duration::from_secs(3);
/// How far ahead of "now" a rebalance takes effect: one heartbeat period plus margin.
pub const REBALANCE_LEAD: Duration = Duration::from_millis(1500);
/// A second of the series is closed this long after it ended, even if a worker never sent it.
pub const SECOND_GRACE: Duration = Duration::from_secs(4);

/// What the coordinator knows of one worker.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub threads: usize,
    pub metrics_addr: Option<String>,
    pub state: WorkerState,
    /// Epoch of the order the worker last said it executes.
    pub epoch: u64,
    pub error: Option<String>,
    pub last_seen: Instant,
    pub missing: bool,
    /// CPU seconds at the previous heartbeat and the rate derived from it (cores busy).
    pub cpu_s: f64,
    pub cpu_busy: f64,
    /// Figures of the latest interval merged from this worker.
    pub last_interval: Option<IntervalFigures>,
    /// Responses per endpoint in the latest interval merged from this worker.
    pub last_endpoint_requests: BTreeMap<String, u64>,
    /// Share schedule of the current run (empty when not part of it).
    pub shares: Vec<ShareStep>,
    /// Users model: this worker's users in the current run (`None` when not part of it).
    pub users: Option<UsersShare>,
    /// Seconds of the current epoch already merged (dedup of re-sent intervals).
    merged: BTreeSet<u64>,
}

/// A worker's latest interval, reduced for the workers table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalFigures {
    pub second: u64,
    pub requests: u64,
    pub errors: u64,
    pub lag_p99_us: Option<u64>,
}

/// A run the coordinator ordered.
#[derive(Debug)]
pub struct Run {
    pub epoch: u64,
    /// The load flags, passed through to every worker.
    pub load: serde_json::Value,
    /// Total target rate (requests/s) now, when the load is open-model.
    pub total_rate: Option<f64>,
    /// The rate the load flags ask for; shares scale it by `rate_factor`.
    pub planned_rate: Option<f64>,
    pub rate_factor: f64,
    /// Warm-up at the start of the run (excluded from every figure).
    pub warmup: Duration,
    /// Run length including warm-up, when time-bounded.
    pub length: Option<Duration>,
    pub start_unix_ms: u64,
    pub start: Instant,
    /// Merged totals per endpoint.
    pub totals: BTreeMap<String, Snapshot>,
    /// The scenario's request names: each snapshot's per-name figures
    /// ([`Snapshot::endpoints`]) are in this order. Empty without a scenario.
    pub names: Vec<String>,
    /// Seconds still open: merged snapshot so far and who contributed.
    open: BTreeMap<u64, (Snapshot, BTreeSet<String>)>,
    /// Kernel latency of the open seconds, from the workers that have probes.
    open_kernel: BTreeMap<u64, Hist>,
    /// Kernel figures merged over the run (`None` when no worker had probes).
    pub kernel: Option<KernelInterval>,
    /// Kernel latency (p50, p99) µs of each closed second, beside `series`.
    pub kernel_series: Vec<Option<(u64, u64)>>,
    /// Closed seconds, reduced; `t_s` is the second's offset from the end of warm-up.
    pub series: Vec<SeriesPoint>,
    /// Notable events at run offsets: workers lost, added, rebalances.
    pub events: Vec<(f64, String)>,
    pub stopped: bool,
    /// Each worker's CPU seconds when it first reported this run's epoch.
    cpu_start: BTreeMap<String, f64>,
    /// Users model: the cluster's users and spawn rate (`None` for rate runs).
    pub users: Option<UsersRun>,
    /// `--abort-on-fail`: what to judge once a second (`None` without the flag).
    pub judge: Option<AbortJudge>,
    /// Set when `--abort-on-fail` stopped the run.
    pub aborted: Option<Abort>,
    /// Closed seconds already judged for `--abort-on-fail`.
    judged: usize,
}

/// The users model of a cluster run: `total` users spawned at `spawn_rate` per second in all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsersRun {
    pub total: u64,
    pub spawn_rate: Option<f64>,
}

/// What `--abort-on-fail` judges: the run's description and its thresholds.
#[derive(Debug, Clone)]
pub struct AbortJudge {
    pub info: RunInfo,
    pub thresholds: Vec<Threshold>,
}

impl Run {
    /// Run offset of `now`, seconds (negative before the start instant).
    pub fn offset_s(&self, now: Instant) -> f64 {
        if now >= self.start {
            (now - self.start).as_secs_f64()
        } else {
            -(self.start - now).as_secs_f64()
        }
    }

    /// CPU seconds the workers spent since they took up this run.
    pub fn cpu_used_s(&self, workers: &BTreeMap<String, WorkerInfo>) -> f64 {
        self.cpu_start
            .iter()
            .filter_map(|(n, start)| workers.get(n).map(|w| (w.cpu_s - start).max(0.0)))
            .sum()
    }

    /// Everything merged so far over all endpoints.
    pub fn merged_total(&self) -> Snapshot {
        Snapshot::merged(self.totals.values())
    }

    /// Users model: users still running (those of workers not lost).
    pub fn users_running(&self, workers: &BTreeMap<String, WorkerInfo>) -> u64 {
        workers
            .values()
            .filter(|w| !w.missing)
            .filter_map(|w| w.users.map(|u| u.users))
            .sum()
    }

    /// True once the planned length (plus grace for the last reports) has passed.
    pub fn finished(&self, now: Instant) -> bool {
        self.stopped
            || self
                .length
                .is_some_and(|len| now >= self.start + len + SECOND_GRACE && self.open.is_empty())
    }
}

/// The coordinator's whole state.
#[derive(Debug, Default)]
pub struct ClusterState {
    pub workers: BTreeMap<String, WorkerInfo>,
    /// Increases with every start and stop.
    pub epoch: u64,
    pub run: Option<Run>,
}

impl ClusterState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Workers not marked missing.
    pub fn live(&self) -> impl Iterator<Item = (&String, &WorkerInfo)> {
        self.workers.iter().filter(|(_, w)| !w.missing)
    }

    /// True when every live worker executes the current epoch (e.g. has heard of a stop).
    pub fn all_caught_up(&self) -> bool {
        self.live().all(|(_, w)| w.epoch >= self.epoch)
    }

    /// Number of workers per state name (`missing` for lost ones), for `/metrics`.
    pub fn state_counts(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for w in self.workers.values() {
            let k = if w.missing {
                "missing"
            } else {
                w.state.as_str()
            };
            *m.entry(k.to_owned()).or_insert(0) += 1;
        }
        m
    }

    /// "Current RPS" per endpoint: the latest interval of every live worker, summed.
    pub fn current_rps(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (_, w) in self.live() {
            for (ep, n) in &w.last_endpoint_requests {
                *m.entry(ep.clone()).or_insert(0) += n;
            }
        }
        m
    }

    /// Orders a new run starting [`START_LEAD`] from now over the live workers.
    pub fn start(
        &mut self,
        load: serde_json::Value,
        total_rate: Option<f64>,
        warmup: Duration,
        length: Option<Duration>,
        now: Instant,
        now_unix_ms: u64,
    ) -> u64 {
        self.begin(load, total_rate, warmup, length, now, now_unix_ms);
        self.rebalance_at(0.0);
        self.epoch
    }

    /// Orders a users-model run of `users` over the live workers: each gets its integer part
    /// ([`split_users`]) once; workers left with none sit this run out.
    #[allow(clippy::too_many_arguments)]
    pub fn start_users(
        &mut self,
        load: serde_json::Value,
        users: UsersRun,
        warmup: Duration,
        length: Option<Duration>,
        now: Instant,
        now_unix_ms: u64,
    ) -> u64 {
        self.begin(load, None, warmup, length, now, now_unix_ms);
        let live: Vec<(String, u64)> = self
            .live()
            .map(|(n, w)| (n.clone(), w.threads.max(1) as u64))
            .collect();
        let weights: Vec<u64> = live.iter().map(|(_, t)| *t).collect();
        let split = split_users(users.total, &weights);
        let mut first_user = 0;
        for ((name, _), k) in live.iter().zip(split) {
            let Some(w) = self.workers.get_mut(name) else {
                continue;
            };
            if k == 0 {
                continue;
            }
            w.users = Some(UsersShare {
                users: k,
                spawn_rate: users.spawn_rate.map(|r| r * k as f64 / users.total as f64),
                first_user,
            });
            w.shares = vec![ShareStep {
                from_s: 0.0,
                share: k as f64 / users.total as f64,
            }];
            first_user += k;
        }
        if let Some(run) = self.run.as_mut() {
            run.users = Some(users);
            let running = run.users_running(&self.workers);
            if running < users.total {
                // No live worker at all: say so rather than run nothing silently.
                run.events.push((
                    0.0,
                    format!("only {running} of {} users placed", users.total),
                ));
            }
        }
        self.epoch
    }

    fn begin(
        &mut self,
        load: serde_json::Value,
        total_rate: Option<f64>,
        warmup: Duration,
        length: Option<Duration>,
        now: Instant,
        now_unix_ms: u64,
    ) {
        self.epoch += 1;
        let run = Run {
            epoch: self.epoch,
            load,
            total_rate,
            planned_rate: total_rate,
            rate_factor: 1.0,
            warmup,
            length,
            start_unix_ms: now_unix_ms + START_LEAD.as_millis() as u64,
            start: now + START_LEAD,
            totals: BTreeMap::new(),
            names: Vec::new(),
            open: BTreeMap::new(),
            open_kernel: BTreeMap::new(),
            kernel: None,
            kernel_series: Vec::new(),
            series: Vec::new(),
            events: Vec::new(),
            stopped: false,
            cpu_start: BTreeMap::new(),
            users: None,
            judge: None,
            aborted: None,
            judged: 0,
        };
        for w in self.workers.values_mut() {
            w.shares.clear();
            w.users = None;
            w.merged.clear();
        }
        self.run = Some(run);
    }

    /// Stops the current run: workers are told to go idle at their next heartbeat.
    pub fn stop(&mut self, now: Instant) {
        if let Some(run) = &mut self.run {
            if !run.stopped {
                run.stopped = true;
                let t = run.offset_s(now);
                run.events.push((t, "stopped".into()));
                self.epoch += 1;
            }
        }
    }

    /// Takes one heartbeat and answers with the worker's desired state.
    pub fn heartbeat(&mut self, hb: Heartbeat, now: Instant) -> Desired {
        self.heartbeat_with(hb, now, |_, _| {}, |_| {})
    }

    /// [`Self::heartbeat`], calling `on_merge(endpoint, snapshot)` and `on_kernel(figures)`
    /// for every interval merged for the first time (the coordinator feeds its `/metrics`).
    pub fn heartbeat_with(
        &mut self,
        hb: Heartbeat,
        now: Instant,
        mut on_merge: impl FnMut(&str, &Snapshot),
        mut on_kernel: impl FnMut(&KernelInterval),
    ) -> Desired {
        let name = hb.worker.clone();
        let mut membership_changed = false;
        let w = self.workers.entry(name.clone()).or_insert_with(|| {
            membership_changed = true;
            WorkerInfo {
                threads: hb.threads,
                metrics_addr: None,
                state: hb.state,
                epoch: hb.epoch,
                error: None,
                last_seen: now,
                missing: false,
                cpu_s: hb.cpu_s,
                cpu_busy: 0.0,
                last_interval: None,
                last_endpoint_requests: BTreeMap::new(),
                shares: Vec::new(),
                users: None,
                merged: BTreeSet::new(),
            }
        });
        if w.missing {
            w.missing = false;
            membership_changed = true;
        }
        let dt = now.saturating_duration_since(w.last_seen).as_secs_f64();
        if dt > 0.0 && hb.cpu_s >= w.cpu_s {
            w.cpu_busy = (hb.cpu_s - w.cpu_s) / dt;
        }
        w.cpu_s = hb.cpu_s;
        w.last_seen = now;
        w.threads = hb.threads.max(1);
        w.metrics_addr = hb.metrics_addr;
        w.state = hb.state;
        w.epoch = hb.epoch;
        w.error = hb.error;

        if let Some(run) = self.run.as_mut() {
            if hb.epoch == run.epoch && !run.cpu_start.contains_key(&name) {
                run.cpu_start.insert(name.clone(), hb.cpu_s);
            }
        }
        let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
        for iv in hb.intervals {
            let e = acked.entry(iv.epoch).or_insert(iv.second);
            *e = (*e).max(iv.second);
            let Some(run) = self.run.as_mut() else {
                continue;
            };
            if iv.epoch != run.epoch || !w.merged.insert(iv.second) {
                continue; // stale epoch or already merged: acknowledged, not merged
            }
            let mut second = Snapshot::empty();
            for (ep, snap) in &iv.endpoints {
                on_merge(ep, snap);
                second.merge(snap);
                match run.totals.get_mut(ep) {
                    Some(t) => t.merge(snap),
                    None => {
                        run.totals.insert(ep.clone(), snap.clone());
                    }
                }
            }
            w.last_endpoint_requests = per_name_requests(&iv.endpoints, &run.names);
            if let Some(k) = &iv.kernel {
                on_kernel(k);
                match &mut run.kernel {
                    Some(t) => t.merge(k),
                    None => run.kernel = Some(k.clone()),
                }
            }
            w.last_interval = Some(IntervalFigures {
                second: iv.second,
                requests: second.requests(),
                errors: second.errors_total(),
                lag_p99_us: (!second.lag.is_empty()).then(|| second.lag.value_at_quantile(0.99)),
            });
            if run.series.last().is_some_and(|p| p.t_s >= iv.second as f64) {
                continue; // that second is already closed: counted in totals only
            }
            let slot = run
                .open
                .entry(iv.second)
                .or_insert_with(|| (Snapshot::empty(), BTreeSet::new()));
            slot.0.merge(&second);
            slot.1.insert(name.clone());
            if let Some(k) = &iv.kernel {
                run.open_kernel
                    .entry(iv.second)
                    .or_insert_with(Hist::new)
                    .merge(&k.latency);
            }
        }
        if membership_changed && self.run.as_ref().is_some_and(|r| !r.stopped) {
            let t = self.run.as_ref().map_or(0.0, |r| r.offset_s(now));
            if let Some(run) = self.run.as_mut() {
                if t > 0.0 {
                    let why = if run.users.is_some() {
                        " (no users until the next run)"
                    } else {
                        ""
                    };
                    run.events.push((t, format!("worker {name} joined{why}")));
                }
            }
            self.rebalance_at((t + REBALANCE_LEAD.as_secs_f64()).max(0.0));
        }
        self.desired_for(&name, acked.into_iter().collect())
    }

    /// Marks silent workers missing (rebalancing their share away) and closes seconds every
    /// live worker has reported or whose grace has passed.
    pub fn tick(&mut self, now: Instant) {
        let mut lost = Vec::new();
        for (name, w) in &mut self.workers {
            if !w.missing && now.saturating_duration_since(w.last_seen) >= MISSING_AFTER {
                w.missing = true;
                lost.push(name.clone());
            }
        }
        let live: BTreeSet<String> = self.live().map(|(n, _)| n.clone()).collect();
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let t = run.offset_s(now);
        if !lost.is_empty() && !run.stopped {
            if let Some(users) = run.users {
                // Users are not moved: the lost worker's users are gone for this run, and it
                // gets no order if it comes back (its engine, if still up, stops).
                for name in &lost {
                    let Some(w) = self.workers.get_mut(name) else {
                        continue;
                    };
                    let gone = w.users.take().map_or(0, |u| u.users);
                    w.shares.clear();
                    let left = run.users_running(&self.workers);
                    let what = if gone > 0 {
                        format!(
                            "worker {name} lost with its {gone} users ({left} of {} users left)",
                            users.total
                        )
                    } else {
                        format!("worker {name} lost")
                    };
                    run.events.push((t, what));
                }
            } else {
                for name in &lost {
                    run.events.push((t, format!("worker {name} lost")));
                }
                self.rebalance_at((t + REBALANCE_LEAD.as_secs_f64()).max(0.0));
            }
        }
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let participants: BTreeSet<&String> = live
            .iter()
            .filter(|n| self.workers.get(*n).is_some_and(|w| !w.shares.is_empty()))
            .collect();
        while let Some((&second, (_, from))) = run.open.first_key_value() {
            let ended = run.start + run.warmup + Duration::from_secs(second + 1);
            let all_in = participants.iter().all(|n| from.contains(*n));
            if !(all_in && now >= ended) && now < ended + SECOND_GRACE {
                break;
            }
            let Some((second, (snap, _))) = run.open.pop_first() else {
                break;
            };
            run.series
                .push(SeriesPoint::from_snapshot(&snap, second as f64, 1.0));
            let kernel = run.open_kernel.remove(&second).filter(|h| !h.is_empty());
            run.kernel_series
                .push(kernel.map(|h| (h.value_at_quantile(0.5), h.value_at_quantile(0.99))));
        }
        self.judge_thresholds(now);
    }

    /// `--abort-on-fail`: once per newly closed second, judges the thresholds on everything
    /// merged so far and stops the run at the first certainly failed one.
    fn judge_thresholds(&mut self, now: Instant) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let secs = run.series.len();
        if run.judge.is_none() || run.stopped || run.aborted.is_some() || secs <= run.judged {
            return;
        }
        run.judged = secs;
        let total = run.merged_total();
        let Some(abort) = run
            .judge
            .as_ref()
            .and_then(|j| judge_abort(&j.info, &total, secs as f64, &j.thresholds, &run.names))
        else {
            return;
        };
        let t = run.offset_s(now);
        run.events.push((
            t,
            format!(
                "aborted: threshold {} failed after {}s (--abort-on-fail)",
                abort.threshold, abort.at_s
            ),
        ));
        run.aborted = Some(abort);
        self.stop(now);
    }

    /// Recomputes every worker's share from run offset `from_s`, weighted by threads over the
    /// live workers; appends a step only where a share changes.
    fn rebalance_at(&mut self, from_s: f64) {
        self.rebalance_now(from_s, true)
    }

    fn rebalance_now(&mut self, from_s: f64, event: bool) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        if run.stopped || run.users.is_some() {
            return; // users are placed once, at the start (see the module doc)
        }
        let weight: usize = self
            .workers
            .values()
            .filter(|w| !w.missing)
            .map(|w| w.threads.max(1))
            .sum();
        let mut changed = false;
        for w in self.workers.values_mut() {
            let share = if w.missing || weight == 0 {
                0.0
            } else {
                run.rate_factor * w.threads.max(1) as f64 / weight as f64
            };
            if share_at(&w.shares, from_s) != share || (w.shares.is_empty() && share > 0.0) {
                // A step at the same offset replaces the previous one.
                w.shares.retain(|s| s.from_s < from_s);
                w.shares.push(ShareStep { from_s, share });
                changed = true;
            }
        }
        if changed && from_s > 0.0 && event {
            run.events
                .push((from_s, format!("rebalanced over {weight} threads")));
        }
    }

    /// Changes the total rate of the running open-model run, from [`REBALANCE_LEAD`] ahead on
    /// (every worker's share is scaled by new / planned rate). Returns false when there is no
    /// such run or the rate is not a positive number.
    pub fn set_rate(&mut self, rate: f64, now: Instant) -> bool {
        let Some(run) = self.run.as_mut() else {
            return false;
        };
        let Some(planned) = run.planned_rate else {
            return false;
        };
        if run.stopped || !rate.is_finite() || rate <= 0.0 {
            return false;
        }
        run.rate_factor = rate / planned;
        run.total_rate = Some(rate);
        let from = (run.offset_s(now) + REBALANCE_LEAD.as_secs_f64()).max(0.0);
        run.events.push((from, format!("rate set to {rate} req/s")));
        self.rebalance_now(from, false);
        true
    }

    fn desired_for(&self, name: &str, acked: Vec<(u64, u64)>) -> Desired {
        let order = self.run.as_ref().and_then(|run| {
            let w = self.workers.get(name)?;
            (!run.stopped && !w.shares.is_empty()).then(|| Order {
                load: run.load.clone(),
                start_unix_ms: run.start_unix_ms,
                shares: w.shares.clone(),
                users: w.users,
            })
        });
        Desired {
            epoch: self.epoch,
            order,
            acked,
        }
    }
}

/// Splits `total` users over workers in proportion to `weights` (thread counts) as integers
/// that sum to `total` exactly (largest remainder, Hamilton's method): each worker first gets
/// the floor of its exact share, then the users left over go one each to the largest
/// remainders. Ties go to the larger weight, then to the earlier worker (workers are in name
/// order), so the split is deterministic. Every part is within 1 of its exact share. Exact
/// in integers: `total * weight` is held in 128 bits, so no float rounding picks a winner.
pub fn split_users(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact = |w: u64| u128::from(total) * u128::from(w);
    let mut parts: Vec<u64> = weights.iter().map(|&w| (exact(w) / sum) as u64).collect();
    let left = total - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (exact(weights[b]) % sum)
            .cmp(&(exact(weights[a]) % sum))
            .then(weights[b].cmp(&weights[a]))
            .then(a.cmp(&b))
    });
    for &i in order.iter().take(left as usize) {
        parts[i] += 1;
    }
    parts
}

/// Requests of one interval per row of the stats table: per scenario request name when the
/// run has names (from each snapshot's per-name figures), else per endpoint key.
fn per_name_requests(
    endpoints: &BTreeMap<String, Snapshot>,
    names: &[String],
) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for (ep, s) in endpoints {
        if names.is_empty() {
            *m.entry(ep.clone()).or_insert(0) += s.requests();
            continue;
        }
        for (name, e) in names.iter().zip(&s.endpoints) {
            *m.entry(name.clone()).or_insert(0) += e.requests();
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::Interval;
    use crate::measure::Recorder;

    fn hb(name: &str, threads: usize, epoch: u64, intervals: Vec<Interval>) -> Heartbeat {
        Heartbeat {
            worker: name.into(),
            threads,
            metrics_addr: None,
            epoch,
            state: WorkerState::Running,
            error: None,
            cpu_s: 0.0,
            intervals,
        }
    }

    fn interval(epoch: u64, second: u64, latencies_us: &[u64]) -> Interval {
        let mut r = Recorder::new();
        for &us in latencies_us {
            r.record_sent(1);
            r.record_response(0, 0, us * 1000, us * 1000, 200, 10);
        }
        let mut endpoints = BTreeMap::new();
        endpoints.insert("GET /".to_owned(), r.take_snapshot());
        Interval {
            epoch,
            second,
            endpoints,
            kernel: None,
        }
    }

    fn share(d: &Desired, t: f64) -> f64 {
        share_at(&d.order.as_ref().unwrap().shares, t)
    }

    #[test]
    fn shares_are_weighted_by_threads_and_sum_to_one() {
        let t0 = Instant::now();
        let mut c = ClusterState::new();
        c.heartbeat(hb("a", 1, 0, vec![]), t0);
        c.heartbeat(hb("b", 3, 0, vec![]), t0);
        let epoch = c.start(
            serde_json::json!({"rate": 1000}),
            Some(1000.0),
            Duration::ZERO,
            None,
            t0,
            0,
        );
        let a = c.heartbeat(hb("a", 1, 0, vec![]), t0);
        let b = c.heartbeat(hb("b", 3, 0, vec![]), t0);
        assert_eq!((a.epoch, b.epoch), (epoch, epoch));
        assert_eq!(share(&a, 0.0), 0.25);
        assert_eq!(share(&b, 0.0), 0.75);
        assert_eq!(a.order.unwrap().start_unix_ms, 3000);
    }

    #[test]
    fn a_lost_worker_share_moves_to_the_others_ahead_of_time() {
        let t0 = Instant::now();
        let mut c = ClusterState::new();
        for n in ["a", "b", "c", "d"] {
            c.heartbeat(hb(n, 1, 0, vec![]), t0);
        }
        c.start(
            serde_json::json!({}),
            Some(400.0),
            Duration::ZERO,
            None,
            t0,
            0,
        );
        // a, b, c keep beating; d falls silent.
        let mut now = t0;
        for _ in 0..8 {
            now += Duration::from_secs(1);
            for n in ["a", "b", "c"] {
                c.heartbeat(hb(n, 1, 1, vec![]), now);
            }
            c.tick(now);
        }
        assert!(c.workers["d"].missing);
        let a = c.heartbeat(hb("a", 1, 1, vec![]), now);
        let steps = &a.order.as_ref().unwrap().shares;
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert_eq!(steps[0].share, 0.25);
        assert!((steps[1].share - 1.0 / 3.0).abs() < 1e-12);
        // d went missing 3 s after its last beat (t0 = run offset -3 s), i.e. at offset 0;
        // the new shares apply REBALANCE_LEAD later.
        assert!((steps[1].from_s - 1.5).abs() < 1e-9, "{steps:?}");
        assert_eq!(c.state_counts()["missing"], 1);
        let run = c.run.as_ref().unwrap();
        assert!(run.events.iter().any(|(_, e)| e == "worker d lost"));
        // The lost worker comes back: shares return to a quarter each.
        let d = c.heartbeat(hb("d", 1, 1, vec![]), now);
        assert_eq!(share(&d, 1e9), 0.25);
        assert!(!c.workers["d"].missing);
    }

    #[test]
    fn intervals_merge_exactly_once_and_the_series_closes() {
        let t0 = Instant::now();
        let mut c = ClusterState::new();
        c.heartbeat(hb("a", 1, 0, vec![]), t0);
        c.heartbeat(hb("b", 1, 0, vec![]), t0);
        let e = c.start(
            serde_json::json!({}),
            Some(10.0),
            Duration::ZERO,
            None,
            t0,
            0,
        );
        let start = t0 + START_LEAD; // no warm-up in these runs
        let ia = interval(e, 0, &[100, 200, 300]);
        let ib = interval(e, 0, &[400]);
        let now = start + Duration::from_millis(1100);
        let d = c.heartbeat(hb("a", 1, e, vec![ia.clone()]), now);
        assert_eq!(d.acked, vec![(e, 0)]);
        // A re-sent interval (lost answer) is acknowledged again but not merged twice.
        c.heartbeat(hb("a", 1, e, vec![ia.clone()]), now);
        // Stale epochs are acknowledged and ignored.
        let d = c.heartbeat(hb("b", 1, e - 1, vec![interval(e - 1, 0, &[9])]), now);
        assert_eq!(d.acked, vec![(e - 1, 0)]);
        c.tick(now);
        assert!(
            c.run.as_ref().unwrap().series.is_empty(),
            "b has not sent second 0"
        );
        c.heartbeat(hb("b", 1, e, vec![ib.clone()]), now);
        c.tick(now);
        let run = c.run.as_ref().unwrap();
        assert_eq!(run.series.len(), 1);
        assert_eq!(run.series[0].requests, 4);
        let total = run.merged_total();
        let mut truth = ia.endpoints["GET /"].clone();
        truth.merge(&ib.endpoints["GET /"]);
        assert_eq!(
            total.response, truth.response,
            "merged = one histogram of all samples"
        );
        assert_eq!(total.requests(), 4);
    }

    #[test]
    fn a_second_closes_after_grace_without_a_silent_worker() {
        let t0 = Instant::now();
        let mut c = ClusterState::new();
        c.heartbeat(hb("a", 1, 0, vec![]), t0);
        c.heartbeat(hb("b", 1, 0, vec![]), t0);
        let e = c.start(serde_json::json!({}), None, Duration::ZERO, None, t0, 0);
        let start = t0 + START_LEAD; // no warm-up in these runs
        let now = start + Duration::from_millis(1200);
        c.heartbeat(hb("a", 1, e, vec![interval(e, 0, &[5])]), now);
        c.heartbeat(hb("b", 1, e, vec![]), now);
        c.tick(now);
        assert!(c.run.as_ref().unwrap().series.is_empty());
        let later = start + Duration::from_secs(1) + SECOND_GRACE;
        c.heartbeat(hb("a", 1, e, vec![]), later);
        c.heartbeat(hb("b", 1, e, vec![]), later);
        c.tick(later);
        assert_eq!(c.run.as_ref().unwrap().series.len(), 1);
    }

    #[test]
    fn the_rate_changes_live_for_every_worker() {
        let t0 = Instant::now();
        let mut c = ClusterState::new();
        c.heartbeat(hb("a", 1, 0, vec![]), t0);
        c.heartbeat(hb("b", 1, 0, vec![]), t0);
        c.start(
            serde_json::json!({}),
            Some(1000.0),
            Duration::ZERO,
            None,
            t0,
            0,
        );
        let now = t0 + START_LEAD + Duration::from_secs(10);
        assert!(!c.set_rate(-1.0, now));
        assert!(c.set_rate(3000.0, now));
        for n in ["a", "b"] {
            let d = c.heartbeat(hb(n, 1, 1, vec![]), now);
            assert_eq!(share(&d, 5.0), 0.5);
            assert_eq!(share(&d, 11.5), 1.5, "3× the planned rate, half each");
        }
        let run = c.run.as_ref().unwrap();
        assert_eq!(run.total_rate, Some(3000.0));
        // A later rebalance keeps the new rate.
        c.heartbeat(hb("c", 2, 0, vec![]), now + Duration::from_secs(1));
        let d = c.heartbeat(hb("c", 2, 1, vec![]), now + Duration::from_secs(1));
        assert_eq!(share(&d, 100.0), 1.5);
        // Closed-model runs have no rate to change.
        let mut closed = ClusterState::new();
        closed.start(serde_json::json!({}), None, Duration::ZERO, None, t0, 0);
        assert!(!closed.set_rate(10.0, now));
    }

    #[test]
    fn stop_clears_the_order_and_bumps_the_epoch() {
        let t0 = Instant::now();
        let mut c = ClusterState::new();
        c.heartbeat(hb("a", 1, 0, vec![]), t0);
        let e = c.start(serde_json::json!({}), None, Duration::ZERO, None, t0, 0);
        c.stop(t0);
        let d = c.heartbeat(hb("a", 1, e, vec![]), t0);
        assert!(d.order.is_none());
        assert_eq!(d.epoch, e + 1);
        assert!(c.run.as_ref().unwrap().finished(t0));
    }

    fn users_run(c: &mut ClusterState, total: u64, t0: Instant) -> u64 {
        c.start_users(
            serde_json::json!({}),
            UsersRun {
                total,
                spawn_rate: Some(6.0),
            },
            Duration::ZERO,
            None,
            t0,
            0,
        )
    }

    #[test]
    fn users_split_into_integers_and_are_not_rebalanced() {
        let t0 = Instant::now();
        let mut c = ClusterState::new();
        for (n, threads) in [("a", 1), ("b", 2), ("c", 3)] {
            c.heartbeat(hb(n, threads, 0, vec![]), t0);
        }
        let e = users_run(&mut c, 30, t0);
        let users = |d: &Desired| d.order.as_ref().and_then(|o| o.users);
        let a = users(&c.heartbeat(hb("a", 1, e, vec![]), t0)).unwrap();
        let b = users(&c.heartbeat(hb("b", 2, e, vec![]), t0)).unwrap();
        let cc = users(&c.heartbeat(hb("c", 3, e, vec![]), t0)).unwrap();
        assert_eq!((a.users, b.users, cc.users), (5, 10, 15));
        assert_eq!((a.first_user, b.first_user, cc.first_user), (0, 5, 15));
        // Each spawns at its share of the 6/s: all finish spawning at 30 / 6 = 5 s.
        assert_eq!(b.spawn_rate, Some(2.0));
        // A worker joining mid-run gets nothing; nobody's order changes.
        let now = t0 + START_LEAD + Duration::from_secs(2);
        let d = c.heartbeat(hb("d", 4, e, vec![]), now);
        assert!(d.order.is_none());
        assert_eq!(
            users(&c.heartbeat(hb("a", 1, e, vec![]), now)),
            Some(a),
            "no rebalancing of users"
        );
        // c falls silent: its users are gone, the others keep theirs.
        let mut now = now;
        for _ in 0..4 {
            now += Duration::from_secs(1);
            for (n, t) in [("a", 1), ("b", 2), ("d", 4)] {
                c.heartbeat(hb(n, t, e, vec![]), now);
            }
            c.tick(now);
        }
        let run = c.run.as_ref().unwrap();
        assert_eq!(run.users_running(&c.workers), 15);
        assert!(
            run.events
                .iter()
                .any(|(_, ev)| ev == "worker c lost with its 15 users (15 of 30 users left)"),
            "{:?}",
            run.events
        );
        assert_eq!(users(&c.heartbeat(hb("b", 2, e, vec![]), now)), Some(b));
        // Back again: no order, so its engine stops.
        assert!(c.heartbeat(hb("c", 3, e, vec![]), now).order.is_none());
    }

    #[test]
    fn users_fewer_than_workers_leave_some_idle() {
        let t0 = Instant::now();
        let mut c = ClusterState::new();
        for n in ["a", "b", "c"] {
            c.heartbeat(hb(n, 1, 0, vec![]), t0);
        }
        let e = users_run(&mut c, 2, t0);
        let orders: Vec<bool> = ["a", "b", "c"]
            .iter()
            .map(|n| c.heartbeat(hb(n, 1, e, vec![]), t0).order.is_some())
            .collect();
        assert_eq!(orders, [true, true, false], "ties go to the earlier name");
    }

    #[test]
    fn abort_on_fail_stops_the_run_on_merged_totals() {
        let t0 = Instant::now();
        let mut c = ClusterState::new();
        c.heartbeat(hb("a", 1, 0, vec![]), t0);
        let e = c.start(
            serde_json::json!({}),
            Some(100.0),
            Duration::ZERO,
            None,
            t0,
            0,
        );
        let cfg = crate::cluster::coordinator::load_config(&[
            "--rate".into(),
            "100".into(),
            "--threshold".into(),
            "max<1ms".into(),
            "--abort-on-fail".into(),
            "http://127.0.0.1:1/".into(),
        ])
        .unwrap();
        c.run.as_mut().unwrap().judge = Some(AbortJudge {
            info: cfg.run_info(""),
            thresholds: cfg.thresholds.clone(),
        });
        let start = t0 + START_LEAD;
        let now = start + Duration::from_millis(1100);
        c.heartbeat(hb("a", 1, e, vec![interval(e, 0, &[100, 200])]), now);
        c.tick(now);
        assert!(c.run.as_ref().unwrap().aborted.is_none(), "0.2 ms < 1 ms");
        let now = start + Duration::from_millis(2100);
        c.heartbeat(hb("a", 1, e, vec![interval(e, 1, &[5_000])]), now);
        c.tick(now);
        let run = c.run.as_ref().unwrap();
        let a = run.aborted.as_ref().expect("max 5 ms fails max<1ms");
        assert_eq!((a.threshold.as_str(), a.at_s), ("max<1ms", 2.0));
        assert!(run.stopped);
        assert!(c.heartbeat(hb("a", 1, e, vec![]), now).order.is_none());
    }

    proptest::proptest! {
        /// The split sums to the users exactly and each part is within 1 of its exact share.
        #[test]
        fn users_split_sums_and_stays_within_one(
            total in 0u64..100_000,
            weights in proptest::collection::vec(1u64..256, 1..40),
        ) {
            let parts = split_users(total, &weights);
            proptest::prop_assert_eq!(parts.len(), weights.len());
            proptest::prop_assert_eq!(parts.iter().sum::<u64>(), total);
            let sum: u64 = weights.iter().sum();
            for (p, w) in parts.iter().zip(&weights) {
                let exact = total as f64 * *w as f64 / sum as f64;
                proptest::prop_assert!((*p as f64 - exact).abs() < 1.0, "{} vs {}", p, exact);
            }
        }
    }
}
