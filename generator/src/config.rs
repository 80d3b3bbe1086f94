//! The resolved run configuration: every default decided, every value checked, the target
//! resolved and the request encoded once, before any thread starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::cli::Args;
use crate::export::{Mode, RunInfo};
use crate::http::request::{parse_header_arg, RequestError, RequestSpec};
use crate::http::target::{Target, TargetError};
use crate::http::tls::{TlsClient, TlsConfigError, TlsOptions};
use crate::plan::{Load, Plan, Ramp, Stage, Think, Users};

/// Why a command line cannot run. Each message names the bad value.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("no target URL given (use --target URL or give the URL as an argument)")]
    NoTarget,
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    #[error("{0}")]
    Stage(String),
    #[error("{0}")]
    Threshold(String),
    #[error("invalid rate {0} (must be a positive number of requests per second)")]
    Rate(f64),
    #[error("invalid {flag} {value} (must be at least 1)")]
    Zero { flag: &'static str, value: u64 },
    #[error("invalid --spawn-rate {0} (must be a positive number of users per second)")]
    SpawnRate(f64),
    #[error("{0}")]
    Think(String),
    #[error("--connections {connections} conflicts with --users {users} (in the users model each user is one connection; drop --connections)")]
    UsersConnections { users: u64, connections: usize },
    #[error(
        "--abort-on-fail needs a threshold (--threshold EXPR or thresholds in the scenario file)"
    )]
    AbortWithoutThreshold,
    #[error("invalid duration {0:?} (must be longer than zero)")]
    Duration(Duration),
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("cannot read body file {path}: {source}")]
    BodyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything a run needs, resolved.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub addr: SocketAddr,
    pub method: String,
    /// The request's wire bytes, encoded once.
    pub request: Vec<u8>,
    pub head_request: bool,
    pub plan: Plan,
    pub threads: usize,
    pub connections: usize,
    pub timeout: Duration,
    /// Per-thread bound of the wait queue.
    pub max_queue: usize,
    /// Pacing resolution (see `--resolution`).
    pub resolution: Duration,
    pub json: bool,
    pub output: Option<PathBuf>,
    /// `--html`: the self-contained HTML report.
    pub html: Option<PathBuf>,
    pub latency: bool,
    pub progress: bool,
    /// `--probes`.
    pub probes: crate::probes::ProbeMode,
    /// https: the TLS client configuration (None for http).
    pub tls: Option<TlsClient>,
    /// I/O driver choice (`--io`).
    pub io: crate::engine::select::IoMode,
    /// Why the target's host did not resolve. The run still happens (every connect is
    /// counted as a connect error) so the report and exit code 1 say what went wrong,
    /// as for a refused connection; `addr` is then a placeholder that is never used.
    pub unresolved: Option<String>,
    /// The scenario (`--scenario`); `None` sends `request` every time.
    pub scenario: Option<crate::scenario::Scenario>,
    /// Seed of the scenario's random picks and values.
    pub seed: u64,
    /// Number of this process's first user in the run (a cluster worker's place in the
    /// cluster's users; 0 alone), so `pick = "user"` CSV rows stay per user cluster-wide.
    pub first_user: u64,
    /// `--threshold` and the scenario's thresholds.
    pub thresholds: Vec<crate::export::Threshold>,
    /// `--abort-on-fail`: stop as soon as a threshold is certainly failed.
    pub abort_on_fail: bool,
}

impl RunConfig {
    pub fn from_args(a: &Args) -> Result<RunConfig, ConfigError> {
        let url = a.target.as_ref().or(a.url.as_ref());
        let (scenario, target) = match (&a.scenario, url) {
            (Some(path), url) => {
                let t = url.map(|u| Target::parse(u)).transpose()?;
                let (sc, t) = crate::scenario::load(path, t.as_ref())?;
                (Some(sc), t)
            }
            (None, Some(url)) => (None, Target::parse(url)?),
            (None, None) => return Err(ConfigError::NoTarget),
        };
        let tls = if target.is_tls() {
            let opts = TlsOptions {
                insecure: a.insecure,
                cacert: a.cacert.clone(),
                cert: a.cert.clone(),
                key: a.key.clone(),
            };
            Some(TlsClient::new(&opts, target.host())?)
        } else {
            None
        };
        let users = users_of(a)?;
        // Flags win over the file's [load]: --users replaces its rate or stages.
        let file_load = scenario.as_ref().filter(|_| users.is_none());
        let rate = a.rate.or(file_load.and_then(|s| s.rate));
        let stages = match (file_load, a.rate) {
            _ if !a.stages.is_empty() => a.stages.clone(),
            (Some(sc), None) => sc.stages.clone(),
            _ => Vec::new(),
        };
        let ramp = ramp_of(&stages, a.warmup)?;
        let names: &[String] = scenario.as_ref().map_or(&[], |s| &s.names);
        let mut thresholds = Vec::new();
        let file_thresholds = scenario.iter().flat_map(|s| &s.thresholds);
        for src in a.thresholds.iter().chain(file_thresholds) {
            let th = crate::export::Threshold::parse(src).map_err(ConfigError::Threshold)?;
            if let Some(n) = &th.name {
                if !names.contains(n) {
                    return Err(ConfigError::Threshold(format!(
                        "threshold {src:?}: no request named {n:?} (names: {})",
                        names.join(", ")
                    )));
                }
            }
            thresholds.push(th);
        }
        if a.abort_on_fail && thresholds.is_empty() {
            return Err(ConfigError::AbortWithoutThreshold);
        }
        let load = match (users.clone(), &ramp, rate) {
            (Some(u), _, _) => Load::Users(u),
            (None, Some(r), _) => Load::Ramp(r.clone()),
            (None, None, Some(r)) if r.is_finite() && r > 0.0 => Load::Open { rate: r },
            (None, None, Some(r)) => return Err(ConfigError::Rate(r)),
            (None, None, None) => Load::Closed,
        };
        for (flag, v) in [
            ("--connections", a.connections.map(|v| v as u64)),
            ("--threads", a.threads.map(|v| v as u64)),
            ("--requests", a.requests),
            ("--max-queue", a.max_queue.map(|v| v as u64)),
        ] {
            if v == Some(0) {
                return Err(ConfigError::Zero { flag, value: 0 });
            }
        }
        for d in [a.duration, Some(a.timeout)].into_iter().flatten() {
            if d.is_zero() {
                return Err(ConfigError::Duration(d));
            }
        }
        let body = match (&a.body, &a.body_file) {
            (Some(b), _) => b.clone().into_bytes(),
            (None, Some(p)) => std::fs::read(p).map_err(|source| ConfigError::BodyFile {
                path: p.clone(),
                source,
            })?,
            (None, None) => Vec::new(),
        };
        let method = a
            .method
            .clone()
            .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.to_string());
        let mut spec = RequestSpec::new(method.clone(), &target);
        spec.body = body;
        for h in &a.headers {
            spec.headers.push(parse_header_arg(h)?);
        }
        // Like curl -d: a body without an explicit type is a form, which is what the tutorial's
        // Flask app (and most form handlers) need in order to parse it at all.
        if !spec.body.is_empty()
            && !spec
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            spec.headers.push((
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ));
        }
        let request = spec.encode()?;
        let head_request = spec.is_head();
        let method = match &scenario {
            Some(sc) => scenario_method(sc),
            None => method,
        };

        let cpus = crate::engine::default_threads();
        let mut threads = a.threads.unwrap_or(cpus);
        let peak = Plan {
            load: load.clone(),
            warmup: a.warmup,
            duration: None,
            requests: None,
        }
        .peak_rate();
        let connections = match (&users, a.connections) {
            (Some(u), Some(c)) if c != u.users => {
                return Err(ConfigError::UsersConnections {
                    users: u.users as u64,
                    connections: c,
                })
            }
            (Some(u), _) => u.users,
            (None, c) => c.unwrap_or(match peak {
                Some(rate) => ((rate * 0.010).ceil() as usize).clamp(4 * threads, 10_000),
                None => 64,
            }),
        };
        // A thread without a connection would have nothing to do.
        threads = threads.min(connections);
        let max_queue = a.max_queue.unwrap_or(match peak {
            Some(rate) => ((rate * 2.0 / threads as f64).ceil() as usize).max(1024),
            None => 1,
        });
        let duration = match (a.duration, a.requests, &ramp) {
            (None, _, Some(r)) => Some(r.total().saturating_sub(a.warmup)),
            (None, None, None) => Some(Duration::from_secs(10)),
            (d, _, _) => d,
        };
        // Resolve last: everything else is cheaper to get wrong first.
        let (addr, unresolved) = match target.resolve() {
            Ok(addrs) => (addrs[0], None),
            Err(e @ (TargetError::Resolve { .. } | TargetError::NoAddresses { .. })) => (
                SocketAddr::from(([0, 0, 0, 0], target.port())),
                Some(e.to_string()),
            ),
            Err(e) => return Err(e.into()),
        };
        Ok(RunConfig {
            target,
            addr,
            method,
            request,
            head_request,
            plan: Plan {
                load,
                warmup: a.warmup,
                duration,
                requests: a.requests,
            },
            threads,
            connections,
            timeout: a.timeout,
            max_queue,
            resolution: a.resolution,
            json: a.json,
            output: a.output.clone(),
            html: a.html.clone(),
            latency: a.latency,
            progress: !a.quiet,
            probes: a.probes,
            tls,
            io: a.io,
            unresolved,
            scenario,
            seed: a.seed.unwrap_or_else(random_seed),
            first_user: 0,
            thresholds,
            abort_on_fail: a.abort_on_fail,
        })
    }

    /// This run with `users` of the users model's users, spawned at `spawn_rate` (a cluster
    /// worker's share): one connection per user, and no more threads than users.
    pub fn with_users(mut self, users: usize, spawn_rate: Option<f64>) -> RunConfig {
        if self.plan.users().is_some() {
            self.plan = self.plan.with_users(users, spawn_rate);
            self.connections = users;
            self.threads = self.threads.min(users).max(1);
        }
        self
    }

    /// The run's description for the report.
    pub fn run_info(&self, driver: &str) -> RunInfo {
        RunInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            target: self.target.to_string(),
            method: self.method.clone(),
            mode: match self.plan.load {
                Load::Open { rate } => Mode::Open { rate },
                Load::Closed | Load::Users(_) => Mode::Closed {
                    connections: self.connections,
                },
                Load::Ramp(_) => Mode::Open {
                    rate: self.plan.rate().unwrap_or(0.0),
                },
            },
            duration_s: self.plan.duration.map_or(0.0, |d| d.as_secs_f64()),
            warmup_s: self.plan.warmup.as_secs_f64(),
            threads: self.threads,
            connections: self.connections,
            users: self.plan.users().map(|u| crate::export::UsersInfo {
                users: u.users,
                spawn_rate: u.spawn_rate,
                think_min_s: u.think.min.as_secs_f64(),
                think_max_s: u.think.max.as_secs_f64(),
            }),
            driver: driver.to_string(),
            started_at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

/// The users model from `--users`, `--spawn-rate`, `--think`; `None` without `--users`.
fn users_of(a: &Args) -> Result<Option<Users>, ConfigError> {
    let Some(n) = a.users else { return Ok(None) };
    if n == 0 {
        return Err(ConfigError::Zero {
            flag: "--users",
            value: 0,
        });
    }
    if let Some(r) = a.spawn_rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(ConfigError::SpawnRate(r));
        }
    }
    let think = match &a.think {
        Some(t) => Think::parse(t).map_err(ConfigError::Think)?,
        None => Think::default(),
    };
    Ok(Some(Users {
        users: n as usize,
        spawn_rate: a.spawn_rate,
        think,
    }))
}

/// Compiles `--stage` (or the scenario's) stages; `None` without any.
fn ramp_of(stages: &[String], warmup: Duration) -> Result<Option<Ramp>, ConfigError> {
    if stages.is_empty() {
        return Ok(None);
    }
    let parsed = stages
        .iter()
        .map(|s| Stage::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ConfigError::Stage)?;
    let ramp = Ramp::new(&parsed);
    if ramp.total() <= warmup {
        return Err(ConfigError::Stage(format!(
            "stages {} last {:?}, not longer than the warm-up {warmup:?}",
            stages.join(" "),
            ramp.total()
        )));
    }
    if ramp.peak_rate() <= 0.0 {
        return Err(ConfigError::Stage(format!(
            "stages {} never rise above rate 0",
            stages.join(" ")
        )));
    }
    Ok(Some(ramp))
}

/// The report's method line for a scenario: its one method, or `mixed`.
fn scenario_method(sc: &crate::scenario::Scenario) -> String {
    let first = sc.requests.first().map_or("GET", |r| r.method.as_str());
    if sc.requests.iter().all(|r| r.method == first) {
        first.to_owned()
    } else {
        "mixed".to_owned()
    }
}

/// A seed that differs between runs and between processes started together.
fn random_seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cfg(args: &[&str]) -> Result<RunConfig, ConfigError> {
        let mut v = vec!["gen"];
        v.extend_from_slice(args);
        RunConfig::from_args(&Args::try_parse_from(v).unwrap())
    }

    #[test]
    fn defaults_follow_the_rate() {
        let c = cfg(&["--rate", "50000", "--threads", "2", "http://127.0.0.1:9/"]).unwrap();
        assert_eq!(c.connections, 500);
        assert_eq!(c.max_queue, 50_000);
        assert_eq!(c.plan.duration, Some(Duration::from_secs(10)));
        let c = cfg(&[
            "--threads",
            "4",
            "-c",
            "2",
            "-n",
            "10",
            "http://127.0.0.1:9/x",
        ])
        .unwrap();
        assert_eq!((c.threads, c.connections), (2, 2));
        assert_eq!(c.plan.duration, None);
        assert!(c.request.starts_with(b"GET /x HTTP/1.1\r\n"));
    }

    #[test]
    fn bad_values_are_named() {
        let msg = |a: &[&str]| cfg(a).unwrap_err().to_string();
        assert!(msg(&["--rate", "0", "http://127.0.0.1/"]).contains("rate 0"));
        assert!(msg(&["--rate", "-5", "http://127.0.0.1/"]).contains("-5"));
        assert!(msg(&["ftp://127.0.0.1/"]).contains("ftp"));
        assert!(msg(&["-c", "0", "http://127.0.0.1/"]).contains("--connections"));
        assert!(
            msg(&["--body-file", "/nonexistent/b", "http://127.0.0.1/"]).contains("/nonexistent/b")
        );
        assert!(msg(&["-H", "nocolon", "http://127.0.0.1/"]).contains("nocolon"));
        assert!(msg(&[]).contains("no target"));
    }

    #[test]
    fn users_mode_resolves_and_names_bad_values() {
        let c = cfg(&[
            "--users",
            "20",
            "--spawn-rate",
            "5",
            "--think",
            "0.5s..1.5s",
            "--threads",
            "2",
            "http://127.0.0.1:9/",
        ])
        .unwrap();
        assert_eq!(c.connections, 20);
        let u = c.plan.users().unwrap();
        assert_eq!((u.users, u.spawn_rate), (20, Some(5.0)));
        assert_eq!(u.think.max, Duration::from_millis(1500));
        assert!(!c.plan.is_open());
        let info = c.run_info("io_uring");
        assert_eq!(info.users.as_ref().map(|u| u.users), Some(20));
        // Fewer users than threads: one thread per user at most.
        let c = cfg(&["--users", "1", "--threads", "4", "http://127.0.0.1:9/"]).unwrap();
        assert_eq!((c.threads, c.connections), (1, 1));
        // An explicit --connections equal to the user count is harmless.
        assert!(cfg(&["--users", "3", "-c", "3", "http://127.0.0.1:9/"]).is_ok());
        let msg = |a: &[&str]| cfg(a).unwrap_err().to_string();
        assert!(msg(&["--users", "0", "http://127.0.0.1/"]).contains("--users 0"));
        assert!(
            msg(&["--users", "2", "--spawn-rate", "0", "http://127.0.0.1/"])
                .contains("--spawn-rate 0")
        );
        assert!(
            msg(&["--users", "2", "--think", "2s..1s", "http://127.0.0.1/"]).contains("\"2s..1s\"")
        );
        let e = msg(&["--users", "2", "-c", "5", "http://127.0.0.1/"]);
        assert!(
            e.contains("--connections 5") && e.contains("--users 2"),
            "{e}"
        );
        assert!(msg(&["--abort-on-fail", "http://127.0.0.1/"]).contains("threshold"));
        for bad in [
            &["--users", "2", "--rate", "5", "http://127.0.0.1/"][..],
            &["--users", "2", "--stage", "1s:5", "http://127.0.0.1/"],
            &["--spawn-rate", "2", "http://127.0.0.1/"],
            &["--think", "1s", "http://127.0.0.1/"],
        ] {
            let mut v = vec!["gen"];
            v.extend_from_slice(bad);
            assert!(Args::try_parse_from(v).is_err(), "{bad:?}");
        }
    }

    /// A name that does not resolve is not bad input: the run goes on and counts it.
    #[test]
    fn unresolvable_host_is_kept_for_the_run() {
        let c = cfg(&["http://no-such-host.invalid:8080/"]).unwrap();
        let why = c.unresolved.unwrap();
        assert!(why.contains("no-such-host.invalid"), "{why}");
        assert!(cfg(&["http://127.0.0.1:9/"]).unwrap().unresolved.is_none());
    }

    #[test]
    fn https_builds_tls_and_names_bad_files() {
        let c = cfg(&["--insecure", "https://127.0.0.1:9/"]).unwrap();
        assert!(c.tls.is_some());
        assert!(cfg(&["http://127.0.0.1:9/"]).unwrap().tls.is_none());
        let msg = |a: &[&str]| cfg(a).unwrap_err().to_string();
        assert!(
            msg(&["--cacert", "/nonexistent/ca.pem", "https://127.0.0.1/"])
                .contains("/nonexistent/ca.pem")
        );
        assert!(msg(&["--insecure", "--key", "/k.pem", "https://127.0.0.1/"]).contains("--cert"));
    }

    #[test]
    fn body_implies_post() {
        let c = cfg(&["-d", "a=1", "http://127.0.0.1/"]).unwrap();
        assert_eq!(c.method, "POST");
        assert!(c.request.ends_with(b"\r\n\r\na=1"));
        let text = String::from_utf8_lossy(&c.request).into_owned();
        assert!(
            text.contains("\r\nContent-Type: application/x-www-form-urlencoded\r\n"),
            "{text}"
        );
        let c = cfg(&[
            "-d",
            "{}",
            "-H",
            "content-type: application/json",
            "http://127.0.0.1/",
        ])
        .unwrap();
        let text = String::from_utf8_lossy(&c.request).into_owned();
        assert!(!text.contains("x-www-form-urlencoded"), "{text}");
        assert!(
            !String::from_utf8_lossy(&cfg(&["http://127.0.0.1/"]).unwrap().request)
                .contains("Content-Type")
        );
    }
}
