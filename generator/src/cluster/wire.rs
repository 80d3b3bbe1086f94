//! What workers and the coordinator say to each other: JSON over HTTP/1.1.
//!
//! A worker POSTs a [`Heartbeat`] to `/api/v1/heartbeat` every second (with the shared token in
//! `Authorization: Bearer ...`); the answer is the [`Desired`] state. There is no separate
//! registration: a worker the coordinator has not seen is registered by its first heartbeat.
//!
//! Delivery of measurements is at-least-once and merging is exactly-once: a heartbeat carries
//! every completed interval the coordinator has not acknowledged yet, and the coordinator keys
//! intervals by (worker, epoch, second) and ignores a key it already merged. A lost answer
//! therefore re-sends, never double-counts.
//!
//! Time: the coordinator announces the run's start as wall-clock Unix milliseconds a few
//! seconds ahead; each worker maps it onto its own monotonic clock once. Rate changes
//! (rebalancing when a worker is lost or added) are announced the same way, as a step of the
//! worker's share at a run offset a little in the future, so every worker switches at the same
//! instant and the global rate has no gap or overlap beyond clock skew.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::measure::{Hist, Snapshot};

/// Path prefix of the JSON API.
pub const API_PREFIX: &str = "/api/v1";
/// Path of the heartbeat endpoint.
pub const HEARTBEAT_PATH: &str = "/api/v1/heartbeat";

/// A worker's lifecycle as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Connected, no run ordered (or the ordered run is over).
    Idle,
    /// Ordered to run: opening connections and waiting for the start instant.
    Starting,
    /// Sending load.
    Running,
    /// The engine could not run the order (its error is in `Heartbeat::error`).
    Failed,
}

impl WorkerState {
    /// Lower-case name, as in JSON and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Starting => "starting",
            WorkerState::Running => "running",
            WorkerState::Failed => "failed",
        }
    }
}

/// One completed interval (normally one second of the run) measured by one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Run epoch the interval belongs to.
    pub epoch: u64,
    /// Index of the measured second: 0 is the first second after warm-up.
    pub second: u64,
    /// Measurements per endpoint (request name); histograms travel as base64 HDR V2.
    pub endpoints: BTreeMap<String, Snapshot>,
    /// What the worker's eBPF probes recorded over the interval, when it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelInterval>,
}

/// Kernel figures of one interval (or, merged, of a run): see `docs/probes.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelInterval {
    /// How sends and data-ready were observed (`tracepoint`, ...).
    pub attach: String,
    /// Request sent -> response data ready, µs.
    pub latency: Hist,
    /// SYN_SENT -> ESTABLISHED, µs.
    pub connect: Hist,
    /// Smoothed RTT per incoming segment, µs.
    pub srtt: Hist,
    pub retransmits: u64,
    pub sockets: u64,
}

impl KernelInterval {
    /// From the probes' figures for the interval.
    pub fn of(f: crate::probes::KernelFigures) -> Self {
        KernelInterval {
            attach: f.attach.to_owned(),
            latency: f.latency,
            connect: f.connect,
            srtt: f.srtt,
            retransmits: f.retransmits,
            sockets: f.sockets,
        }
    }

    /// Adds `other` (exact: histograms bucket by bucket).
    pub fn merge(&mut self, other: &KernelInterval) {
        self.latency.merge(&other.latency);
        self.connect.merge(&other.connect);
        self.srtt.merge(&other.srtt);
        self.retransmits += other.retransmits;
        self.sockets += other.sockets;
    }

    /// As the report shows kernel figures.
    pub fn figures(&self) -> crate::probes::KernelFigures {
        crate::probes::KernelFigures {
            attach: match self.attach.as_str() {
                "fentry" => "fentry",
                "kprobe" => "kprobe",
                _ => "tracepoint",
            },
            latency: self.latency.clone(),
            connect: self.connect.clone(),
            srtt: self.srtt.clone(),
            retransmits: self.retransmits,
            sockets: self.sockets,
        }
    }
}

/// Worker -> coordinator, every second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Stable name of the worker (`--name`, default host name and PID).
    pub worker: String,
    /// Engine threads (cores) the worker runs; its share of the rate is weighted by it.
    pub threads: usize,
    /// Where the worker serves its own `/metrics`, if anywhere.
    pub metrics_addr: Option<String>,
    /// Epoch of the order the worker is executing (0: none yet).
    pub epoch: u64,
    pub state: WorkerState,
    /// Why the last order failed, when `state` is `Failed`.
    pub error: Option<String>,
    /// Process CPU seconds (user + system) since the worker started.
    pub cpu_s: f64,
    /// Completed intervals not yet acknowledged, oldest first.
    pub intervals: Vec<Interval>,
}

/// A step in a worker's share of the total load: from run offset `from_s` (seconds since the
/// start instant) the worker carries `share` (0..=1) of the total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShareStep {
    pub from_s: f64,
    pub share: f64,
}

/// What the coordinator wants a worker to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The load, as the same flags a single-node run takes (see `docs/cluster.md`).
    pub load: serde_json::Value,
    /// The run's start instant, Unix time in milliseconds (wall clock).
    pub start_unix_ms: u64,
    /// This worker's share of the total over time; the first step starts at 0 or later.
    pub shares: Vec<ShareStep>,
    /// Users model only: this worker's integer part of the users. Absent for rate runs (and
    /// from coordinators that predate it), so older peers keep understanding each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersShare>,
}

/// A worker's part of a users-model run: it runs `users` users spawned at `spawn_rate` per
/// second (its share of the cluster's spawn rate, so every worker finishes spawning when the
/// global schedule does). `first_user` numbers its first user in the cluster's `0..N`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UsersShare {
    pub users: u64,
    pub spawn_rate: Option<f64>,
    pub first_user: u64,
}

/// Coordinator -> worker: the answer to every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// Current run epoch. A worker ignores answers with an epoch below the one it executes.
    pub epoch: u64,
    /// The run to execute; `None` means stop and stay idle.
    pub order: Option<Order>,
    /// Highest second per epoch the coordinator has merged from this worker: intervals up to
    /// it can be dropped from the outbox.
    pub acked: Vec<(u64, u64)>,
}

/// The share in force at run offset `t_s` (0 before the first step).
pub fn share_at(steps: &[ShareStep], t_s: f64) -> f64 {
    steps
        .iter()
        .take_while(|s| s.from_s <= t_s)
        .last()
        .map_or(0.0, |s| s.share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_round_trips_through_json_with_histograms() {
        let mut r = crate::measure::Recorder::new();
        r.record_sent(100);
        r.record_response(0, 10, 20_000, 30_000, 200, 120);
        let mut endpoints = BTreeMap::new();
        endpoints.insert("POST /metrics".to_owned(), r.take_snapshot());
        let hb = Heartbeat {
            worker: "w1".into(),
            threads: 2,
            metrics_addr: Some("127.0.0.2:9100".into()),
            epoch: 3,
            state: WorkerState::Running,
            error: None,
            cpu_s: 1.5,
            intervals: vec![Interval {
                epoch: 3,
                second: 7,
                endpoints,
                kernel: None,
            }],
        };
        let json = serde_json::to_string(&hb).unwrap();
        let back: Heartbeat = serde_json::from_str(&json).unwrap();
        assert_eq!(back, hb);
        // An idle heartbeat is small: the histograms only travel inside intervals.
        let idle = Heartbeat {
            intervals: Vec::new(),
            ..hb
        };
        assert!(serde_json::to_string(&idle).unwrap().len() < 200);
    }

    /// An order from a coordinator that predates users mode (no `users` field) still parses,
    /// and a rate order does not send the field.
    #[test]
    fn orders_without_users_stay_compatible() {
        let old = r#"{"load": ["--rate", "5"], "start_unix_ms": 1, "shares": [{"from_s": 0.0, "share": 1.0}]}"#;
        let o: Order = serde_json::from_str(old).unwrap();
        assert_eq!(o.users, None);
        assert!(!serde_json::to_string(&o).unwrap().contains("users"));
        let users = Order {
            users: Some(UsersShare {
                users: 7,
                spawn_rate: Some(2.5),
                first_user: 8,
            }),
            ..o
        };
        let back: Order = serde_json::from_str(&serde_json::to_string(&users).unwrap()).unwrap();
        assert_eq!(back, users);
    }

    #[test]
    fn share_steps_apply_from_their_offset() {
        let steps = [
            ShareStep {
                from_s: 0.0,
                share: 0.25,
            },
            ShareStep {
                from_s: 12.5,
                share: 0.5,
            },
        ];
        assert_eq!(share_at(&steps, 0.0), 0.25);
        assert_eq!(share_at(&steps, 12.4), 0.25);
        assert_eq!(share_at(&steps, 12.5), 0.5);
        assert_eq!(share_at(&[], 3.0), 0.0);
        let late = [ShareStep {
            from_s: 5.0,
            share: 1.0,
        }];
        assert_eq!(share_at(&late, 4.9), 0.0);
    }
}
