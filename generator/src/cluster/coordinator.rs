//! `gen coordinator`: the HTTP face of [`ClusterState`] on one port (default 8089): the
//! workers' heartbeat endpoint, the JSON API that drives runs, aggregated `/metrics`, and the
//! web UI.
//!
//! Control endpoints (heartbeat, start, stop) need the shared token when one is set; reading
//! (status, metrics, the UI page) does not, so dashboards and Prometheus need no secret. A
//! load generator that anyone on the network can aim is a weapon: the CLI refuses to listen
//! beyond loopback without a token (see `docs/cluster.md`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use clap::Parser as _;

use crate::cli::Args;
use crate::config::RunConfig;
use crate::export::prometheus::{ClusterFigures, Metrics, CONTENT_TYPE};
use crate::export::SeriesPoint;
use crate::measure::{EndpointStats, Hist, Snapshot};

use super::http::{authorized, error, json, respond, Body, Req};
use super::state::{AbortJudge, ClusterState, UsersRun};
use super::wire::{share_at, Heartbeat, HEARTBEAT_PATH};

/// How often liveness and the series are re-evaluated.
pub const TICK: Duration = Duration::from_millis(250);

/// A run as the API starts it: the load flags of a single-node run, either as an argument
/// list (`["--target", "http://...", "--rate", "1000"]`) or as an object of long flag names
/// (`{"target": "http://...", "rate": 1000, "header": ["a: 1", "b: 2"]}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub load: serde_json::Value,
}

/// The load flags as an argument list; an object becomes `--name value` pairs (arrays repeat
/// the flag, `true` is a bare switch, `false` and `null` are left out).
pub fn load_argv(load: &serde_json::Value) -> Result<Vec<String>, String> {
    use serde_json::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("unsupported flag value {other}")),
    };
    match load {
        Value::Array(items) => items.iter().map(scalar).collect(),
        Value::Object(map) => {
            let mut argv = Vec::new();
            for (k, v) in map {
                let flag = format!("--{k}");
                match v {
                    Value::Bool(true) => argv.push(flag),
                    Value::Bool(false) | Value::Null => {}
                    Value::Array(vs) => {
                        for v in vs {
                            argv.push(flag.clone());
                            argv.push(scalar(v)?);
                        }
                    }
                    v => {
                        argv.push(flag);
                        argv.push(scalar(v)?);
                    }
                }
            }
            Ok(argv)
        }
        other => Err(format!(
            "load must be a list of flags or an object, not {other}"
        )),
    }
}

/// Parses and validates load flags exactly as a single-node run would.
pub fn load_config(argv: &[String]) -> Result<RunConfig, String> {
    let args = Args::try_parse_from(std::iter::once("gen".to_owned()).chain(argv.iter().cloned()))
        .map_err(|e| {
            e.render()
                .to_string()
                .lines()
                .next()
                .unwrap_or("bad flags")
                .trim_start_matches("error: ")
                .to_owned()
        })?;
    RunConfig::from_args(&args).map_err(|e| e.to_string())
}

/// The coordinator: state, metrics and token behind one lock each.
#[derive(Debug)]
pub struct Coordinator {
    state: Mutex<ClusterState>,
    metrics: Metrics,
    token: Option<String>,
    /// The latest capacity search's chart (SVG), served at `/api/v1/capacity/chart.svg`.
    capacity_chart: Mutex<Option<String>>,
}

/// One row of the per-endpoint stats table (the Locust table).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsRow {
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    pub median_us: Option<u64>,
    pub p95_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    pub avg_size: f64,
    pub current_rps: u64,
}

impl StatsRow {
    fn new(name: &str, h: &Hist, requests: u64, failures: u64, bytes: u64, responses: u64) -> Self {
        let q = |q| (!h.is_empty()).then(|| h.value_at_quantile(q));
        StatsRow {
            name: name.to_owned(),
            requests,
            failures,
            median_us: q(0.5),
            p95_us: q(0.95),
            p99_us: q(0.99),
            max_us: q(1.0),
            avg_size: if responses > 0 {
                bytes as f64 / responses as f64
            } else {
                0.0
            },
            current_rps: 0,
        }
    }

    /// A whole endpoint (or the aggregate); failures as in the single-node table: no
    /// response, or a status outside 2xx.
    fn of(name: &str, s: &Snapshot) -> Self {
        let (requests, failures) = crate::export::endpoints::aggregate(s);
        Self::new(
            name,
            &s.response,
            requests,
            failures,
            s.bytes_received(),
            s.requests(),
        )
    }

    /// One scenario request name.
    fn of_name(name: &str, e: &EndpointStats) -> Self {
        Self::new(
            name,
            &e.response,
            e.requests(),
            e.failures(),
            e.bytes_received,
            e.responses,
        )
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Coordinator {
    pub fn new(token: Option<String>) -> Arc<Self> {
        Arc::new(Coordinator {
            state: Mutex::new(ClusterState::new()),
            metrics: Metrics::new(),
            token,
            capacity_chart: Mutex::new(None),
        })
    }

    /// The state, for the CLI's headless loop and tests.
    pub fn state(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Validates the load flags and starts a run over the live workers; returns its epoch,
    /// or why the flags are bad.
    pub fn start(&self, run: &RunRequest) -> Result<u64, String> {
        let argv = load_argv(&run.load)?;
        let cfg = load_config(&argv)?;
        let plan = &cfg.plan;
        self.metrics.set_gauges(plan.rate().unwrap_or(0.0), 0, 0);
        let mut st = self.state();
        let (load, warmup, length) = (
            serde_json::json!(argv),
            plan.warmup,
            plan.duration.map(|d| d + plan.warmup),
        );
        let (now, now_ms) = (Instant::now(), now_unix_ms());
        let epoch = match plan.users() {
            Some(u) => {
                if st.live().count() == 0 {
                    return Err("no live worker to run the users on".to_owned());
                }
                let users = UsersRun {
                    total: u.users as u64,
                    spawn_rate: u.spawn_rate,
                };
                st.start_users(load, users, warmup, length, now, now_ms)
            }
            None => st.start(load, plan.rate(), warmup, length, now, now_ms),
        };
        if let Some(run) = st.run.as_mut() {
            run.judge = cfg.abort_on_fail.then(|| AbortJudge {
                info: cfg.run_info(""),
                thresholds: cfg.thresholds.clone(),
            });
            run.names = cfg.scenario.map_or(Vec::new(), |s| s.names);
            self.metrics.set_names(run.names.clone());
        }
        Ok(epoch)
    }

    /// Publishes the chart of a capacity search (the UI shows it once there is one).
    pub fn set_capacity_chart(&self, svg: String) {
        *self
            .capacity_chart
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(svg);
    }

    /// Re-evaluates liveness and the series; refreshes the cluster gauges.
    pub fn tick(&self) {
        let mut st = self.state();
        st.tick(Instant::now());
        self.metrics.set_cluster(ClusterFigures {
            workers: st.state_counts(),
        });
    }

    /// Handles one API request.
    pub async fn handle(self: Arc<Self>, req: Req) -> hyper::Response<Body> {
        let control = matches!(
            (&req.method, req.path.as_str()),
            (&Method::POST, _) | (&Method::PUT, _) | (&Method::DELETE, _)
        );
        if control && !authorized(&req, self.token.as_deref()) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong token");
        }
        match (&req.method, req.path.as_str()) {
            (&Method::POST, HEARTBEAT_PATH) => {
                let hb: Heartbeat = match serde_json::from_slice(&req.body) {
                    Ok(hb) => hb,
                    Err(e) => {
                        return error(StatusCode::BAD_REQUEST, &format!("bad heartbeat: {e}"))
                    }
                };
                let desired = self.state().heartbeat_with(
                    hb,
                    Instant::now(),
                    |ep, s| self.metrics.add_interval(ep, s),
                    |k| self.metrics.add_kernel(&k.latency, &k.connect),
                );
                json(StatusCode::OK, &desired)
            }
            (&Method::POST, "/api/v1/run") => {
                match serde_json::from_slice::<RunRequest>(&req.body)
                    .map_err(|e| format!("bad run request: {e}"))
                    .and_then(|run| self.start(&run))
                {
                    Ok(epoch) => json(StatusCode::OK, &serde_json::json!({ "epoch": epoch })),
                    Err(e) => error(StatusCode::BAD_REQUEST, &e),
                }
            }
            (&Method::POST, "/api/v1/rate") => {
                let rate = serde_json::from_slice::<serde_json::Value>(&req.body)
                    .ok()
                    .and_then(|v| v["rate"].as_f64());
                match rate {
                    Some(r) if self.state().set_rate(r, Instant::now()) => {
                        self.metrics.set_gauges(r, 0, 0);
                        json(StatusCode::OK, &serde_json::json!({ "rate": r }))
                    }
                    _ => error(
                        StatusCode::BAD_REQUEST,
                        "needs {\"rate\": R > 0} and a running open-model run",
                    ),
                }
            }
            (&Method::POST, "/api/v1/stop") => {
                self.state().stop(Instant::now());
                json(StatusCode::OK, &serde_json::json!({ "stopped": true }))
            }
            (&Method::GET, "/api/v1/status") => json(StatusCode::OK, &self.status()),
            (&Method::GET, "/api/v1/capacity/chart.svg") => {
                let svg = self
                    .capacity_chart
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                match svg {
                    Some(svg) => respond(StatusCode::OK, "image/svg+xml", svg),
                    None => error(StatusCode::NOT_FOUND, "no capacity search has run"),
                }
            }
            (&Method::GET, "/api/v1/stats.csv") => {
                respond(StatusCode::OK, "text/csv; charset=utf-8", self.stats_csv())
            }
            (&Method::GET, "/metrics") => {
                respond(StatusCode::OK, CONTENT_TYPE, self.metrics.encode())
            }
            (&Method::GET, "/") | (&Method::GET, "/index.html") => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                super::ui::INDEX_HTML,
            ),
            (_, p) if p.starts_with("/api/") || p == "/metrics" => error(
                StatusCode::NOT_FOUND,
                &format!("no endpoint {} {p}", req.method),
            ),
            _ => error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Per-endpoint rows plus the aggregate (`Aggregated`, last), from the merged totals.
    pub fn stats(&self) -> Vec<StatsRow> {
        let st = self.state();
        let Some(run) = &st.run else {
            return Vec::new();
        };
        let current = st.current_rps();
        let total = run.merged_total();
        let mut rows: Vec<StatsRow> = if run.names.is_empty() {
            run.totals
                .iter()
                .map(|(name, s)| StatsRow::of(name, s))
                .collect()
        } else {
            let empty = EndpointStats::default();
            run.names
                .iter()
                .enumerate()
                .map(|(i, name)| StatsRow::of_name(name, total.endpoints.get(i).unwrap_or(&empty)))
                .collect()
        };
        rows.push(StatsRow::of("Aggregated", &total));
        for r in &mut rows {
            r.current_rps = match r.name.as_str() {
                "Aggregated" => current.values().sum(),
                n => current.get(n).copied().unwrap_or(0),
            };
        }
        rows
    }

    /// The stats table as CSV (Locust's column order).
    pub fn stats_csv(&self) -> String {
        let mut out = String::from(
            "Name,Request Count,Failure Count,Median Response Time (us),95% (us),99% (us),Max (us),Average Content Size,Requests/s\n",
        );
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        for r in self.stats() {
            out.push_str(&format!(
                "\"{}\",{},{},{},{},{},{},{:.1},{}\n",
                r.name.replace('"', "\"\""),
                r.requests,
                r.failures,
                opt(r.median_us),
                opt(r.p95_us),
                opt(r.p99_us),
                opt(r.max_us),
                r.avg_size,
                r.current_rps
            ));
        }
        out
    }

    /// Everything the UI shows, as one JSON document (`GET /api/v1/status`).
    pub fn status(&self) -> serde_json::Value {
        let stats = self.stats();
        let st = self.state();
        let now = Instant::now();
        let offset = st.run.as_ref().map(|r| r.offset_s(now));
        let workers: Vec<serde_json::Value> = st
            .workers
            .iter()
            .map(|(name, w)| {
                serde_json::json!({
                    "name": name,
                    "state": if w.missing { "missing" } else { w.state.as_str() },
                    "threads": w.threads,
                    "share": offset.map_or(0.0, |t| share_at(&w.shares, t.max(0.0))),
                    "users": w.users.map(|u| u.users),
                    "achieved_rps": w.last_interval.map(|i| i.requests),
                    "cpu_busy": w.cpu_busy,
                    "lag_p99_us": w.last_interval.and_then(|i| i.lag_p99_us),
                    "last_heartbeat_s": now.saturating_duration_since(w.last_seen).as_secs_f64(),
                    "metrics_addr": w.metrics_addr,
                    "error": w.error,
                })
            })
            .collect();
        let run = st.run.as_ref().map(|r| {
            let phase = if r.finished(now) {
                "finished"
            } else if now < r.start {
                "starting"
            } else {
                "running"
            };
            let errors: BTreeMap<&str, u64> = {
                let total = r.merged_total();
                crate::measure::ErrorKind::ALL
                    .iter()
                    .map(|k| (k.as_str(), total.errors(*k)))
                    .filter(|(_, n)| *n > 0)
                    .collect()
            };
            serde_json::json!({
                "epoch": r.epoch,
                "phase": phase,
                "offset_s": r.offset_s(now),
                "target_rate": r.total_rate,
                "users": r.users.map(|u| serde_json::json!({
                    "users": u.total,
                    "spawn_rate": u.spawn_rate,
                    "running": r.users_running(&st.workers),
                })),
                "aborted": r.aborted.as_ref().map(|a| serde_json::json!({"threshold": a.threshold, "at_s": a.at_s})),
                "length_s": r.length.map(|l| l.as_secs_f64()),
                "series": r
                    .series
                    .iter()
                    .enumerate()
                    .map(|(i, p)| point_json(p, r.kernel_series.get(i).copied().flatten()))
                    .collect::<Vec<_>>(),
                "kernel": r.kernel.as_ref().map(|k| serde_json::json!({
                    "attach": k.attach,
                    "latency_p50_us": (!k.latency.is_empty()).then(|| k.latency.value_at_quantile(0.5)),
                    "latency_p99_us": (!k.latency.is_empty()).then(|| k.latency.value_at_quantile(0.99)),
                    "retransmits": k.retransmits,
                })),
                "errors": errors,
                "events": r.events.iter().map(|(t, e)| serde_json::json!({"t_s": t, "event": e})).collect::<Vec<_>>(),
                "load": r.load,
            })
        });
        serde_json::json!({
            "epoch": st.epoch,
            "run": run,
            "stats": stats,
            "workers": workers,
        })
    }
}

/// One second of the series; `kernel` is that second's kernel latency (p50, p99) µs.
fn point_json(p: &SeriesPoint, kernel: Option<(u64, u64)>) -> serde_json::Value {
    serde_json::json!({
        "t_s": p.t_s,
        "requests": p.requests,
        "errors": p.errors,
        "dropped": p.dropped,
        "p50_us": p.p50_us,
        "p99_us": p.p99_us,
        "kernel_p50_us": kernel.map(|k| k.0),
        "kernel_p99_us": kernel.map(|k| k.1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The users model is split into integers over the workers by their threads, and the
    /// start call (the UI and API path) needs a live worker for it.
    #[test]
    fn users_runs_split_over_the_live_workers() {
        let c = Coordinator::new(None);
        let run = RunRequest {
            load: json!({"target": "http://127.0.0.1:1/", "users": 10, "spawn-rate": 4}),
        };
        assert!(c.start(&run).unwrap_err().contains("no live worker"));
        let now = Instant::now();
        for (name, threads) in [("a", 1), ("b", 2), ("c", 3)] {
            c.state().heartbeat(
                Heartbeat {
                    worker: name.into(),
                    threads,
                    metrics_addr: None,
                    epoch: 0,
                    state: super::super::wire::WorkerState::Idle,
                    error: None,
                    cpu_s: 0.0,
                    intervals: Vec::new(),
                },
                now,
            );
        }
        c.start(&run).unwrap();
        let status = c.status();
        let users: Vec<u64> = status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["users"].as_u64().unwrap())
            .collect();
        // 10 × (1, 2, 3) / 6 = 1.67, 3.33, 5: floors 1, 3, 5 and the one left to a (0.67).
        assert_eq!(users, [2, 3, 5]);
        assert_eq!(status["run"]["users"]["users"], 10);
        assert_eq!(status["run"]["users"]["running"], 10);
        assert_eq!(status["run"]["target_rate"], serde_json::Value::Null);
    }

    #[test]
    fn load_objects_become_flags() {
        let argv = load_argv(&json!({
            "target": "http://127.0.0.1:1/",
            "rate": 1000,
            "header": ["a: 1", "b: 2"],
            "json": true,
            "quiet": false,
        }))
        .unwrap();
        assert_eq!(
            argv,
            [
                "--target",
                "http://127.0.0.1:1/",
                "--rate",
                "1000",
                "--header",
                "a: 1",
                "--header",
                "b: 2",
                "--json"
            ]
        );
        assert_eq!(load_argv(&json!(["-r", "5"])).unwrap(), ["-r", "5"]);
        assert!(load_argv(&json!("--rate 5")).is_err());
        assert!(load_argv(&json!({"rate": {"x": 1}})).is_err());
    }

    fn post(
        c: &Arc<Coordinator>,
        path: &str,
        body: serde_json::Value,
        token: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let resp = rt.block_on(Arc::clone(c).handle(Req {
            method: Method::POST,
            path: path.into(),
            query: String::new(),
            authorization: token.map(|t| format!("Bearer {t}")),
            body: serde_json::to_vec(&body).unwrap().into(),
        }));
        let status = resp.status();
        let bytes = rt
            .block_on(http_body_util::BodyExt::collect(resp.into_body()))
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn api_checks_the_token_and_the_flags_before_ordering_anything() {
        let c = Coordinator::new(Some("sesame".into()));
        let run = json!({"load": {"target": "http://127.0.0.1:1/", "rate": 100}});
        let (s, _) = post(&c, "/api/v1/run", run.clone(), None);
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = post(&c, "/api/v1/run", run.clone(), Some("wrong"));
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(c.state().run.is_none(), "nothing happened");
        let (s, body) = post(
            &c,
            "/api/v1/run",
            json!({"load": {"target": "http://127.0.0.1:1/", "rate": -3}}),
            Some("sesame"),
        );
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("-3"), "{body}");
        let (s, body) = post(&c, "/api/v1/run", run, Some("sesame"));
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["epoch"], 1);
        let st = c.state();
        let r = st.run.as_ref().unwrap();
        assert_eq!(r.total_rate, Some(100.0));
        assert_eq!(
            r.load,
            json!(["--target", "http://127.0.0.1:1/", "--rate", "100"])
        );
    }
}
