//! `gen worker`: heartbeats to the coordinator once a second and converges the local engine on
//! the desired state it answers with.
//!
//! - Every heartbeat carries the completed intervals the coordinator has not acknowledged yet
//!   (the outbox), so a lost answer re-sends and the coordinator's dedup keeps merging exact.
//! - Answers with an epoch below the one being executed are stale and ignored.
//! - Dead-man switch: when no heartbeat has been answered for [`DEAD_MAN`], the worker stops
//!   sending load and keeps trying to re-register; a coordinator that died cannot leave twenty
//!   replicas hammering a target.
//!
//! The engine is behind [`Executor`], so the protocol logic here is the same whatever runs the
//! load, and is tested with a simulated executor.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hyper::Method;

use super::http::{request, ClientError};
use super::wire::{Desired, Heartbeat, Interval, Order, WorkerState, HEARTBEAT_PATH};

/// Heartbeat period.
pub const PERIOD: Duration = Duration::from_secs(1);
/// Silence of the coordinator after which load stops.
pub const DEAD_MAN: Duration = Duration::from_secs(4);
/// Intervals kept for re-sending at most (the coordinator is gone long before this fills).
pub const OUTBOX_MAX: usize = 600;

/// What runs the load for the agent.
pub trait Executor: Send {
    /// Starts executing `order` for run `epoch` (connect, then wait for the start instant).
    fn start(&mut self, epoch: u64, order: &Order) -> Result<(), String>;
    /// The running order's share schedule changed (rebalance).
    fn update(&mut self, order: &Order);
    /// Stops sending load as soon as possible.
    fn stop(&mut self);
    /// The current state and the intervals completed since the last call.
    fn poll(&mut self) -> (WorkerState, Vec<Interval>);
    /// Why the last start failed, if it did.
    fn error(&self) -> Option<String>;
    /// Engine threads; the coordinator weights shares by it.
    fn threads(&self) -> usize;
}

/// Agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    pub coordinator: String,
    pub token: Option<String>,
    pub metrics_addr: Option<String>,
}

/// The agent's memory between heartbeats.
#[derive(Debug)]
pub struct Agent {
    cfg: AgentConfig,
    epoch: u64,
    order: Option<Order>,
    outbox: VecDeque<Interval>,
    last_answer: Instant,
    /// Set when the dead-man switch stopped the load; cleared by the next answer.
    pub orphaned: bool,
}

impl Agent {
    pub fn new(cfg: AgentConfig, now: Instant) -> Self {
        Agent {
            cfg,
            epoch: 0,
            order: None,
            outbox: VecDeque::new(),
            last_answer: now,
            orphaned: false,
        }
    }

    /// Epoch being executed (0: none).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The heartbeat to send now (collects the executor's new intervals into the outbox).
    pub fn heartbeat(&mut self, exec: &mut dyn Executor, cpu_s: f64) -> Heartbeat {
        let (state, fresh) = exec.poll();
        self.outbox.extend(fresh);
        while self.outbox.len() > OUTBOX_MAX {
            self.outbox.pop_front();
        }
        Heartbeat {
            worker: self.cfg.name.clone(),
            threads: exec.threads(),
            metrics_addr: self.cfg.metrics_addr.clone(),
            epoch: self.epoch,
            state,
            error: exec.error(),
            cpu_s,
            intervals: self.outbox.iter().cloned().collect(),
        }
    }

    /// Applies the coordinator's answer; returns the intervals it acknowledged (now dropped
    /// from the outbox), for the journal.
    pub fn on_answer(
        &mut self,
        d: Desired,
        exec: &mut dyn Executor,
        now: Instant,
    ) -> Vec<Interval> {
        self.last_answer = now;
        self.orphaned = false;
        let (acked, kept): (VecDeque<Interval>, VecDeque<Interval>) =
            std::mem::take(&mut self.outbox)
                .into_iter()
                .partition(|iv| {
                    d.acked
                        .iter()
                        .any(|&(e, s)| iv.epoch == e && iv.second <= s)
                });
        self.outbox = kept;
        let acked = Vec::from(acked);
        if d.epoch < self.epoch {
            return acked; // stale answer (e.g. a coordinator that restarted behind a newer one)
        }
        match (d.order, d.epoch == self.epoch) {
            (None, _) => {
                if self.order.take().is_some() {
                    exec.stop();
                }
                self.epoch = d.epoch;
            }
            (Some(order), true) if self.order.is_some() => {
                if self.order.as_ref() != Some(&order) {
                    exec.update(&order);
                    self.order = Some(order);
                }
            }
            (Some(order), _) => {
                if self.order.take().is_some() {
                    exec.stop();
                }
                self.epoch = d.epoch;
                // A failed start is reported by the executor's state; the order is kept so the
                // same epoch is not retried every second.
                let _ = exec.start(d.epoch, &order);
                self.order = Some(order);
            }
        }
        acked
    }

    /// Called when a heartbeat got no answer: trips the dead-man switch after [`DEAD_MAN`].
    pub fn on_silence(&mut self, exec: &mut dyn Executor, now: Instant) {
        if now.saturating_duration_since(self.last_answer) >= DEAD_MAN && self.order.is_some() {
            exec.stop();
            self.order = None;
            self.orphaned = true;
        }
    }

    /// One heartbeat exchange over HTTP; acknowledged intervals go to `journal`, one JSON
    /// line each (`gen worker --journal`).
    pub async fn beat(
        &mut self,
        exec: &mut dyn Executor,
        cpu_s: f64,
        journal: Option<&mut dyn std::io::Write>,
    ) -> Result<(), ClientError> {
        let hb = self.heartbeat(exec, cpu_s);
        let body = serde_json::to_vec(&hb).unwrap_or_default();
        let answer = request(
            &self.cfg.coordinator,
            Method::POST,
            HEARTBEAT_PATH,
            self.cfg.token.as_deref(),
            Some(body),
            PERIOD * 3,
        )
        .await;
        let now = Instant::now();
        match answer.map(|b| serde_json::from_slice::<Desired>(&b)) {
            Ok(Ok(d)) => {
                let acked = self.on_answer(d, exec, now);
                if let Some(j) = journal {
                    for iv in &acked {
                        // An audit aid: a full disk must not stop the load.
                        let _ = serde_json::to_writer(&mut *j, iv).map(|_| j.write_all(b"\n"));
                    }
                    let _ = j.flush();
                }
                Ok(())
            }
            Ok(Err(_)) => {
                self.on_silence(exec, now);
                Ok(())
            }
            Err(e) => {
                self.on_silence(exec, now);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::ShareStep;

    /// Records what the agent asked for.
    #[derive(Default)]
    struct Log {
        calls: Vec<String>,
        pending: Vec<Interval>,
    }

    impl Executor for Log {
        fn start(&mut self, epoch: u64, order: &Order) -> Result<(), String> {
            self.calls
                .push(format!("start {epoch} {}", order.shares[0].share));
            Ok(())
        }
        fn update(&mut self, order: &Order) {
            self.calls.push(format!("update {}", order.shares.len()));
        }
        fn stop(&mut self) {
            self.calls.push("stop".into());
        }
        fn poll(&mut self) -> (WorkerState, Vec<Interval>) {
            (WorkerState::Running, std::mem::take(&mut self.pending))
        }
        fn error(&self) -> Option<String> {
            None
        }
        fn threads(&self) -> usize {
            2
        }
    }

    fn order(steps: &[(f64, f64)]) -> Order {
        Order {
            load: serde_json::json!({}),
            start_unix_ms: 1,
            shares: steps
                .iter()
                .map(|&(from_s, share)| ShareStep { from_s, share })
                .collect(),
            users: None,
        }
    }

    fn agent(now: Instant) -> Agent {
        Agent::new(
            AgentConfig {
                name: "w".into(),
                coordinator: "127.0.0.1:1".into(),
                token: None,
                metrics_addr: None,
            },
            now,
        )
    }

    fn desired(epoch: u64, order: Option<Order>, acked: Vec<(u64, u64)>) -> Desired {
        Desired {
            epoch,
            order,
            acked,
        }
    }

    #[test]
    fn converges_on_orders_updates_and_stops_and_ignores_stale_epochs() {
        let t = Instant::now();
        let (mut a, mut x) = (agent(t), Log::default());
        a.on_answer(desired(1, Some(order(&[(0.0, 0.5)])), vec![]), &mut x, t);
        a.on_answer(desired(1, Some(order(&[(0.0, 0.5)])), vec![]), &mut x, t);
        a.on_answer(
            desired(1, Some(order(&[(0.0, 0.5), (9.0, 1.0)])), vec![]),
            &mut x,
            t,
        );
        a.on_answer(desired(0, None, vec![]), &mut x, t); // stale: ignored
        a.on_answer(desired(2, None, vec![]), &mut x, t);
        a.on_answer(desired(3, Some(order(&[(0.0, 0.25)])), vec![]), &mut x, t);
        assert_eq!(
            x.calls,
            ["start 1 0.5", "update 2", "stop", "start 3 0.25"],
            "start once, update on change, stop on no order, restart on a new epoch"
        );
        assert_eq!(a.epoch(), 3);
    }

    #[test]
    fn dead_man_switch_stops_load_after_silence() {
        let t = Instant::now();
        let (mut a, mut x) = (agent(t), Log::default());
        a.on_answer(desired(1, Some(order(&[(0.0, 1.0)])), vec![]), &mut x, t);
        a.on_silence(&mut x, t + Duration::from_secs(2));
        assert_eq!(x.calls.len(), 1, "not yet");
        a.on_silence(&mut x, t + DEAD_MAN);
        assert_eq!(x.calls.last().unwrap(), "stop");
        assert!(a.orphaned);
        // The coordinator is back with the same epoch: the order is executed again.
        a.on_answer(
            desired(1, Some(order(&[(0.0, 1.0)])), vec![]),
            &mut x,
            t + DEAD_MAN * 2,
        );
        assert_eq!(x.calls.last().unwrap(), "start 1 1");
        assert!(!a.orphaned);
    }

    #[test]
    fn outbox_resends_until_acknowledged() {
        let t = Instant::now();
        let (mut a, mut x) = (agent(t), Log::default());
        let iv = |s| Interval {
            epoch: 1,
            second: s,
            endpoints: Default::default(),
            kernel: None,
        };
        x.pending = vec![iv(0), iv(1)];
        assert_eq!(a.heartbeat(&mut x, 0.0).intervals.len(), 2);
        // Answer lost: both go again, with the new one.
        x.pending = vec![iv(2)];
        assert_eq!(a.heartbeat(&mut x, 0.0).intervals.len(), 3);
        let acked = a.on_answer(desired(1, None, vec![(1, 1)]), &mut x, t);
        assert_eq!(
            acked.iter().map(|i| i.second).collect::<Vec<_>>(),
            [0, 1],
            "what the journal gets: exactly the acknowledged intervals"
        );
        let hb = a.heartbeat(&mut x, 0.0);
        assert_eq!(
            hb.intervals.iter().map(|i| i.second).collect::<Vec<_>>(),
            [2]
        );
    }
}
