//! Every Grafana panel expression and every recording rule, run against a real Prometheus
//! that scraped a real gen cluster carrying load.
//!
//! Prometheus (Debian's build has no Kubernetes discovery) gets a copy of
//! `k8s/prometheus/prometheus.yml` whose `kubernetes_sd_configs` are swapped for
//! `file_sd_configs` listing the scrape targets with the `__meta_kubernetes_*` labels a pod
//! would have, so the real relabelling (annotations, component, pod) is what produces the
//! `job` and `pod` labels the dashboard uses.
//!
//! Targets (`cargo xtask k8s dashboard [...]`; `cargo xtask k8s check` runs the default):
//! - default: a real local cluster (`crate::local_cluster`, as `cargo xtask demo` starts
//!   it): release sample-webapp, `gen coordinator` and two `gen worker`s on 127.0.0.2 and
//!   127.0.0.3 with a token, running the seed scenario at 300 req/s for at most 2 minutes,
//!   started through `POST /api/v1/run` once Prometheus scrapes every target;
//! - `--simulated`: a coordinator and two workers inside this process, each serving
//!   `generator::export::prometheus::Metrics::encode()` fed every 250 ms with real `Snapshot`s
//!   from `generator::measure::Recorder` (no build needed; the xtask tests use it);
//! - `--coordinator ADDR --worker ADDR...`: processes you started and loaded yourself.
//!
//! Kernel figures (`gen_kernel_*`) exist only where the eBPF probes load. The check tries to
//! load them first: when they load, the run asks for `--probes on` (a worker without them
//! fails the run, and the check) and every kernel panel must return data; when they cannot,
//! each kernel expression is still run (it must parse) and reported as skipped, with why.
//!
//! Bounded: Prometheus runs under `timeout` (180 s), listens on a free 127.0.0.1 port and is
//! killed by PID when done; so is every process of the cluster (`proc::Guard`), on every
//! exit path; the run stops itself after 2 minutes and is stopped as soon as the check ends.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use generator::export::prometheus::{ClusterFigures, Metrics, CONTENT_TYPE};
use generator::measure::{ErrorKind, Hist, Recorder};

use super::{have, k8s_dir};
use crate::local_cluster::{self, LocalCluster, Spec};
use crate::proc;

/// The real cluster's load: the seed scenario at this rate, stopping itself after this.
const RATE: &str = "300";
const DURATION: &str = "2m";
/// Prometheus and the cluster's processes run under `timeout` for at most this long.
const PROMETHEUS_LIFETIME_S: u64 = 180;
/// How long every expression has to return data once the load started.
const QUERY_DEADLINE: Duration = Duration::from_secs(60);

/// One scrape target: its job ("gen-coordinator" or "gen-worker"), pod name, address.
#[derive(Debug, Clone)]
pub struct Target {
    pub component: &'static str,
    pub pod: String,
    pub addr: String,
}

/// Whether the eBPF probes load here, which decides whether kernel panels can have data.
#[derive(Debug, Clone)]
pub enum Kernel {
    Loads,
    /// Why not (the loader's error).
    Unavailable(String),
}

impl Kernel {
    /// Loads the probes in this process (same user and machine as the workers) and drops
    /// them again.
    pub fn probe() -> Kernel {
        match generator_ebpf::Probes::load(std::process::id()) {
            Ok(p) => {
                drop(p);
                Kernel::Loads
            }
            Err(e) => Kernel::Unavailable(e.to_string()),
        }
    }
}

/// One query to run: the panel's title (or "recording rule") and its expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub title: String,
    pub expr: String,
}

impl Query {
    /// Kernel panels have data only where the eBPF probes load.
    pub fn needs_probes(&self) -> bool {
        self.expr.contains("gen_kernel_")
    }
}

pub fn main(args: &[String]) -> Result<()> {
    let mut targets = Vec::new();
    let mut simulated = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let component = match a.as_str() {
            "--simulated" => {
                simulated = true;
                continue;
            }
            "--coordinator" => "coordinator",
            "--worker" => "worker",
            other => bail!("unknown dashboard argument {other:?}"),
        };
        let addr = it
            .next()
            .with_context(|| format!("{a} needs ADDR"))?
            .clone();
        let pod = format!("gen-{component}-{}", targets.len());
        targets.push(Target {
            component,
            pod,
            addr,
        });
    }
    ensure!(
        !simulated || targets.is_empty(),
        "--simulated starts its own targets: drop --coordinator/--worker"
    );
    if !have("prometheus") {
        return Ok(());
    }
    let started = Instant::now();
    let (what, report) = if simulated {
        let fake = FakeCluster::start(2)?;
        let r = check(&fake.targets, &Kernel::Loads, &mut || Ok(()))?;
        ("a simulated coordinator and 2 workers", r)
    } else if targets.is_empty() {
        (
            "a local cluster (coordinator and 2 workers)",
            real_cluster()?,
        )
    } else {
        let kernel = Kernel::probe();
        (
            "the given processes",
            check(&targets, &kernel, &mut || Ok(()))?,
        )
    };
    report.print();
    println!(
        "ok  {} of {} expressions returned data ({} in {} panels, {} recording rules){} from a \
         real Prometheus scraping {what}, in {:.0} s",
        report.lines.len(),
        report.panel_exprs + report.rules,
        report.panel_exprs,
        report.panels,
        report.rules,
        if report.skipped.is_empty() {
            String::new()
        } else {
            format!(
                "; {} kernel expressions SKIPPED: the eBPF probes cannot load here",
                report.skipped.len()
            )
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds gen and sample-webapp, starts a local cluster with a token, and checks the
/// dashboard against its coordinator and workers while the seed scenario runs.
fn real_cluster() -> Result<Report> {
    let kernel = Kernel::probe();
    if let Kernel::Unavailable(why) = &kernel {
        println!(
            "warning: the eBPF probes cannot load here ({why}): the kernel panels cannot \
             have data and are skipped"
        );
    }
    let bin = local_cluster::build()?;
    let cluster = LocalCluster::start(&Spec {
        bin: &bin,
        workers: 2,
        listen: format!("127.0.0.1:{}", proc::free_port("127.0.0.1")?),
        token: Some(format!("k8s-check-{}", std::process::id())),
        name: "k8s-check",
        // The same bound as Prometheus': nothing outlives the check.
        lifetime_s: Some(PROMETHEUS_LIFETIME_S),
        headless_load: None,
    })?;
    let mut targets = vec![Target {
        component: "coordinator",
        pod: "gen-coordinator-0".into(),
        addr: cluster.listen.clone(),
    }];
    for (i, addr) in cluster.wait_for_workers()?.into_iter().enumerate() {
        targets.push(Target {
            component: "worker",
            pod: format!("gen-worker-{i}"),
            addr,
        });
    }
    let seed = local_cluster::seed_scenario();
    let probes = match kernel {
        Kernel::Loads => "on",
        Kernel::Unavailable(_) => "auto",
    };
    let load: Vec<String> = [
        "--scenario",
        seed.to_str().context("non-UTF-8 path")?,
        "--rate",
        RATE,
        "--duration",
        DURATION,
        "--probes",
        probes,
        &cluster.url,
    ]
    .map(String::from)
    .to_vec();
    println!(
        "local cluster: sample-webapp {}, coordinator {}, workers {}",
        cluster.app.addr,
        cluster.listen,
        targets[1..]
            .iter()
            .map(|t| t.addr.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let result = check(&targets, &kernel, &mut || {
        let answer = cluster.start_run(&load)?;
        println!(
            "run ordered ({answer}): seed scenario, {RATE} req/s for {DURATION}, probes {probes}"
        );
        Ok(())
    });
    // Say what the workers said when something had no data (a failed run, missing probes).
    let result = result.map_err(|e| match cluster.status() {
        Ok(s) => {
            let workers: Vec<String> = s["workers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| format!("{} {} (error {})", w["name"], w["state"], w["error"]))
                .collect();
            e.context(format!(
                "run phase {}, kernel {}, workers: {}",
                s["run"]["phase"],
                s["run"]["kernel"],
                workers.join(", ")
            ))
        }
        Err(_) => e,
    });
    let _ = cluster.stop_run();
    drop(cluster);
    result
}

/// What `check` found: one line per expression that returned data, one per skipped one.
pub struct Report {
    pub lines: Vec<String>,
    pub skipped: Vec<String>,
    /// Dashboard panels, their expressions, recording rules.
    pub panels: usize,
    pub panel_exprs: usize,
    pub rules: usize,
}

impl Report {
    pub fn print(&self) {
        for l in &self.lines {
            println!("ok  {l}");
        }
        for l in &self.skipped {
            println!("SKIPPED  {l}");
        }
    }
}

/// Writes the file_sd copy of prometheus.yml (and rules.yml, service discovery files)
/// into `dir`; returns the config's path. With targets, scrapes and rules run every second.
pub fn ci_copy(dir: &Path, targets: &[Target]) -> Result<PathBuf> {
    let src = k8s_dir().join("prometheus");
    std::fs::create_dir_all(dir.join("sd"))?;
    std::fs::create_dir_all(dir.join("sa"))?;
    std::fs::copy(src.join("rules.yml"), dir.join("rules.yml"))?;
    // The service-account files the cAdvisor job names must exist for promtool.
    std::fs::write(dir.join("sa/ca.crt"), "")?;
    std::fs::write(dir.join("sa/token"), "x")?;
    let original = std::fs::read_to_string(src.join("prometheus.yml"))?;
    let config = to_file_sd(&original, &dir.join("sd"), !targets.is_empty())?.replace(
        "/var/run/secrets/kubernetes.io/serviceaccount/",
        &format!("{}/sa/", dir.display()),
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config)?;
    // kubernetes_sd with role pod lists every pod of the namespace to every job; the
    // relabelling keeps each job's own. The file_sd files do the same.
    let groups: Vec<Value> = targets.iter().map(sd_group).collect();
    for entry in std::fs::read_dir(dir.join("sd"))? {
        std::fs::remove_file(entry?.path())?;
    }
    for job in jobs(&original) {
        let list = if job.starts_with("gen-") {
            &groups[..]
        } else {
            &[]
        };
        std::fs::write(
            dir.join("sd").join(format!("{job}.json")),
            serde_json::to_string_pretty(list)?,
        )?;
    }
    Ok(path)
}

fn sd_group(t: &Target) -> Value {
    let port = t.addr.rsplit(':').next().unwrap_or("");
    json!({
        "targets": [t.addr],
        "labels": {
            "__meta_kubernetes_namespace": "gen",
            "__meta_kubernetes_pod_name": t.pod,
            "__meta_kubernetes_pod_node_name": "node-0",
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "gen",
            "__meta_kubernetes_pod_label_app_kubernetes_io_component": t.component,
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
            "__meta_kubernetes_pod_annotation_prometheus_io_port": port,
            "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
        }
    })
}

fn jobs(config: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- job_name: "))
        .map(|j| j.trim().to_string())
        .collect()
}

/// Replaces each `kubernetes_sd_configs:` block by `file_sd_configs` reading
/// `sd_dir/<job>.json`; `fast` makes scrapes and rule evaluation every second.
pub fn to_file_sd(config: &str, sd_dir: &Path, fast: bool) -> Result<String> {
    let mut out = String::new();
    let mut job = None;
    let mut skip_deeper_than: Option<usize> = None;
    let mut swapped = 0;
    for line in config.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(level) = skip_deeper_than {
            if line.trim().is_empty() || indent > level {
                continue;
            }
            skip_deeper_than = None;
        }
        if let Some(j) = line.trim().strip_prefix("- job_name: ") {
            job = Some(j.trim().to_string());
        }
        if line.trim() == "kubernetes_sd_configs:" {
            let j = job
                .as_deref()
                .context("kubernetes_sd_configs outside a job")?;
            let pad = " ".repeat(indent);
            let file = sd_dir.join(format!("{j}.json"));
            out += &format!(
                "{pad}file_sd_configs:\n{pad}  - files: [{}]\n{pad}    refresh_interval: 1s\n",
                serde_json::to_string(&file.to_string_lossy())?
            );
            skip_deeper_than = Some(indent);
            swapped += 1;
            continue;
        }
        if fast
            && matches!(
                line.trim(),
                "scrape_interval: 15s" | "evaluation_interval: 15s"
            )
        {
            out += &line.replace("15s", "1s");
        } else {
            out += line;
        }
        out.push('\n');
    }
    ensure!(swapped > 0, "no kubernetes_sd_configs found");
    Ok(out)
}

/// Every expression of the dashboard with its panel's title (Grafana's interval variables
/// substituted).
pub fn dashboard_exprs() -> Result<Vec<Query>> {
    let path = k8s_dir().join("grafana/dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let mut exprs = Vec::new();
    collect_exprs(&dash, "", &mut exprs);
    ensure!(!exprs.is_empty(), "no expressions in {}", path.display());
    exprs
        .into_iter()
        .map(|q| {
            let expr = q
                .expr
                .replace("${__rate_interval}", "1m")
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "15s");
            ensure!(!expr.contains('$'), "unknown Grafana variable in {expr:?}");
            Ok(Query { expr, ..q })
        })
        .collect()
}

fn collect_exprs(v: &Value, title: &str, out: &mut Vec<Query>) {
    match v {
        Value::Object(m) => {
            let title = m.get("title").and_then(Value::as_str).unwrap_or(title);
            if let Some(Value::String(e)) = m.get("expr") {
                out.push(Query {
                    title: title.to_string(),
                    expr: e.clone(),
                });
            }
            m.values().for_each(|v| collect_exprs(v, title, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, title, out)),
        _ => {}
    }
}

/// The recording rules' names, each of which must return data too.
pub fn recorded_names() -> Result<Vec<String>> {
    let rules = std::fs::read_to_string(k8s_dir().join("prometheus/rules.yml"))?;
    Ok(rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_string)
        .collect())
}

/// Starts Prometheus on the targets, waits until it scrapes every one of them, calls
/// `start_load`, then waits for every expression to return data (up to 60 s), panels
/// titled "per worker" one series per worker. With `Kernel::Unavailable`, kernel
/// expressions need only run.
pub fn check(
    targets: &[Target],
    kernel: &Kernel,
    start_load: &mut dyn FnMut() -> Result<()>,
) -> Result<Report> {
    let mut queries = dashboard_exprs()?;
    let panel_exprs = queries.len();
    let mut titles: Vec<&str> = queries.iter().map(|q| q.title.as_str()).collect();
    titles.dedup();
    let panels = titles.len();
    let rules = recorded_names()?;
    queries.extend(rules.iter().map(|r| Query {
        title: "recording rule".into(),
        expr: r.clone(),
    }));
    let dir = proc::target_dir()?.join(format!("k8s-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = ci_copy(&dir, targets)?;
    let prom = Prometheus::start(&config, &dir)?;
    // Up before the load starts, so rates see the counters grow from their first sample.
    let up = r#"up{job=~"gen-coordinator|gen-worker"} == 1"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom.query(up).unwrap_or(0) < targets.len() {
        ensure!(
            Instant::now() < deadline,
            "Prometheus did not scrape all {} targets within 30 s (log and config in {})",
            targets.len(),
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    start_load()?;
    let workers = targets.iter().filter(|t| t.component == "worker").count();
    let deadline = Instant::now() + QUERY_DEADLINE;
    let mut report = Report {
        lines: Vec::new(),
        skipped: Vec::new(),
        panels,
        panel_exprs,
        rules: rules.len(),
    };
    let mut failed = Vec::new();
    for q in &queries {
        let skip = match kernel {
            Kernel::Unavailable(why) if q.needs_probes() => Some(why),
            _ => None,
        };
        // A per-worker panel shows each worker pod apart: one series each.
        let per_worker = q.title.contains("per worker");
        let mut last = String::new();
        let ok = loop {
            match prom.query(&q.expr) {
                Ok(_) if skip.is_some() => break Some(0),
                Ok(n) if n > 0 && (!per_worker || n == workers) => break Some(n),
                Ok(0) => last = "no data".into(),
                Ok(n) => last = format!("{n} series, not one per worker ({workers})"),
                Err(err) => {
                    last = format!("{err:#}");
                    // A bad expression stays bad: no point waiting.
                    if last.contains("bad_data") {
                        break None;
                    }
                }
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        match (ok, skip) {
            (Some(_), Some(why)) => report.skipped.push(format!(
                "{}: {}\n    (runs; no data expected: the eBPF kernel probes cannot load here: {why})",
                q.title, q.expr
            )),
            (Some(n), None) => report
                .lines
                .push(format!("{n:>3} series  {}: {}", q.title, q.expr)),
            (None, _) => failed.push(format!("{}: {}\n    {last}", q.title, q.expr)),
        }
    }
    drop(prom);
    if failed.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    ensure!(
        failed.is_empty(),
        "{} of {} expressions without data (Prometheus log and config in {}):\n  {}",
        failed.len(),
        queries.len(),
        dir.display(),
        failed.join("\n  ")
    );
    Ok(report)
}

/// A Prometheus server on 127.0.0.1, killed by PID on drop (by `proc::Server`).
struct Prometheus(proc::Server);

impl Prometheus {
    fn start(config: &Path, dir: &Path) -> Result<Prometheus> {
        // Prometheus fails loudly if another process took the port in between.
        let addr = format!("127.0.0.1:{}", proc::free_port("127.0.0.1")?);
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        // `timeout` bounds its life even if this process dies without dropping it.
        let child = Command::new("timeout")
            .args(["-k", "5", &PROMETHEUS_LIFETIME_S.to_string(), "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let mut p = proc::Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http_get(&p.addr, "/-/ready") {
                return Ok(Prometheus(p));
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!(
                    "prometheus exited ({status}): {}",
                    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs an instant query; returns the number of series with a finite value.
    fn query(&self, expr: &str) -> Result<usize> {
        let (status, body) = http_get(
            &self.0.addr,
            &format!("/api/v1/query?query={}", encode(expr)),
        )?;
        let v: Value =
            serde_json::from_str(&body).with_context(|| format!("HTTP {status}: {body}"))?;
        if v["status"] != "success" {
            bail!("{}: {}", v["errorType"], v["error"]);
        }
        let finite = |s: &Value| {
            s.as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .is_some_and(f64::is_finite)
        };
        Ok(match &v["data"]["result"] {
            Value::Array(series) => series.iter().filter(|s| finite(&s["value"][1])).count(),
            scalar => usize::from(finite(&scalar[1])),
        })
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET over HTTP/1.0 (no chunked answers); returns (status, body).
fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let (head, body) = buf.split_once("\r\n\r\n").context("no HTTP header")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    Ok((status, body.to_string()))
}

/// A coordinator and `workers` workers in this process: real `Metrics` expositions fed with
/// real recorder snapshots, served on 127.0.0.1. Stops on drop.
pub struct FakeCluster {
    pub targets: Vec<Target>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeCluster {
    pub fn start(workers: usize) -> Result<FakeCluster> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut targets = Vec::new();
        let coordinator = Metrics::new();
        let worker_metrics: Vec<Metrics> = (0..workers).map(|_| Metrics::new()).collect();
        let mut serve = |component: &'static str, pod: String, m: Metrics| -> Result<()> {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            targets.push(Target {
                component,
                pod,
                addr: listener.local_addr()?.to_string(),
            });
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                serve_metrics(listener, m, &stop)
            }));
            Ok(())
        };
        serve(
            "coordinator",
            "gen-coordinator-0".into(),
            coordinator.clone(),
        )?;
        for (i, m) in worker_metrics.iter().enumerate() {
            serve("worker", format!("gen-worker-{i}"), m.clone())?;
        }
        let feed_stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            while !feed_stop.load(Ordering::Relaxed) {
                feed(&coordinator, &worker_metrics, &mut seed);
                std::thread::sleep(Duration::from_millis(250));
            }
        }));
        Ok(FakeCluster {
            targets,
            stop,
            threads,
        })
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One quarter-second of load on every worker, merged at the coordinator as the real one
/// merges heartbeats: 2 endpoints, a few 503s, timeouts and drops, kernel figures.
fn feed(coordinator: &Metrics, workers: &[Metrics], seed: &mut u64) {
    let mut rand = |max: u64| {
        // xorshift: no dependency for a bit of spread.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed % max
    };
    let mut kernel_all = (Hist::new(), Hist::new());
    for w in workers {
        for (endpoint, n) in [("POST /metrics", 50), ("POST /login", 2)] {
            let mut r = Recorder::new();
            for _ in 0..n {
                let intended = 1_000_000;
                let sent = intended + 2_000 + rand(50_000);
                let done = sent + 200_000 + rand(5_000_000);
                let status = if rand(50) == 0 { 503 } else { 200 };
                r.record_sent(120);
                r.record_response(intended, sent, sent + 150_000, done, status, 60);
            }
            if rand(4) == 0 {
                r.record_error(ErrorKind::Timeout);
            }
            if rand(8) == 0 {
                r.record_dropped();
            }
            r.record_connect(100_000 + rand(400_000));
            let snap = r.take_snapshot();
            w.add_interval(endpoint, &snap);
            coordinator.add_interval(endpoint, &snap);
        }
        let (mut lat, mut conn) = (Hist::new(), Hist::new());
        for _ in 0..50 {
            lat.record_us(150 + rand(3_000));
        }
        conn.record_us(50 + rand(300));
        w.add_kernel(&lat, &conn);
        kernel_all.0.merge(&lat);
        kernel_all.1.merge(&conn);
        w.set_gauges(200.0, 16, rand(10) as i64);
    }
    coordinator.add_kernel(&kernel_all.0, &kernel_all.1);
    coordinator.set_gauges(200.0 * workers.len() as f64, 16 * workers.len() as i64, 3);
    let mut figures = ClusterFigures::default();
    figures
        .workers
        .insert("running".into(), workers.len() as u64);
    coordinator.set_cluster(figures);
}

fn serve_metrics(listener: TcpListener, m: Metrics, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut s, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut req = Vec::new();
        let mut buf = [0u8; 2048];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let ok = req.starts_with(b"GET /metrics ");
        let body = if ok { m.encode() } else { "not found\n".into() };
        let _ = write!(
            s,
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            if ok { "200 OK" } else { "404 Not Found" },
            if ok { CONTENT_TYPE } else { "text/plain" },
            body.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sd_copy_replaces_every_kubernetes_sd_block() {
        let cfg = std::fs::read_to_string(k8s_dir().join("prometheus/prometheus.yml")).unwrap();
        let out = to_file_sd(&cfg, Path::new("/sd"), true).unwrap();
        let code: String = out
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        assert!(!code.contains("kubernetes_sd_configs"), "{out}");
        assert!(!code.contains("role: pod"), "{out}");
        assert_eq!(out.matches("file_sd_configs:").count(), jobs(&cfg).len());
        assert!(out.contains("\"/sd/gen-worker.json\""));
        assert!(out.contains("scrape_interval: 1s"));
        // The relabelling stays: that is what the live check exercises.
        assert_eq!(
            out.matches("relabel_configs:").count(),
            cfg.matches("relabel_configs:").count()
        );
    }

    #[test]
    fn dashboard_has_expressions_and_only_known_variables() {
        let exprs = dashboard_exprs().unwrap();
        assert!(exprs.len() >= 10, "{exprs:?}");
        assert!(exprs.iter().all(|q| !q.title.is_empty()), "{exprs:?}");
        // Only gen's own metrics and the recording rules: no kubelet/cAdvisor series
        // (`container_*`), which have no data without a cluster (per-worker CPU is
        // gen_cpu_seconds_total). The live check proves they have data; this names the culprit.
        let recorded = recorded_names().unwrap();
        for q in &exprs {
            for name in selected_metrics(&q.expr) {
                assert!(
                    name.starts_with("gen_") || recorded.iter().any(|r| r == name),
                    "{}: {name} is not a metric gen exports ({})",
                    q.title,
                    q.expr
                );
            }
        }
        assert_eq!(
            selected_metrics(r#"sum(rate(a_b{x="{"}[1m])) - job:c:d{y="1"}"#),
            ["a_b", "job:c:d"]
        );
    }

    /// The metric names of an expression's selectors (`name{...}`).
    fn selected_metrics(expr: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut in_braces = false;
        for (i, c) in expr.char_indices() {
            match c {
                '{' if !in_braces => {
                    in_braces = true;
                    let start = expr[..i]
                        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                        .map_or(0, |p| p + 1);
                    out.push(&expr[start..i]);
                }
                '}' if in_braces => in_braces = false,
                _ => {}
            }
        }
        out
    }

    /// What Grafana needs to lay the dashboard out and bind it to a data source.
    #[test]
    fn dashboard_panels_are_well_formed() {
        let path = k8s_dir().join("grafana/dashboard.json");
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let vars = dash["templating"]["list"].as_array().unwrap();
        assert!(vars
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"));
        let panels = dash["panels"].as_array().unwrap();
        let mut ids = std::collections::HashSet::new();
        let mut cells = std::collections::HashSet::new();
        for p in panels {
            let title = p["title"].as_str().unwrap();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "duplicate id: {title}"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(x + w <= 24 && w > 0 && h > 0, "{title} outside the grid");
            for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
                assert!(cells.insert(cell), "{title} overlaps another panel");
            }
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{title} has no query");
            for t in targets {
                assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
                assert!(t["refId"].is_string(), "{title}");
            }
        }
    }

    /// A real Prometheus scrapes the simulated cluster; every panel and rule returns data.
    /// Needs `prometheus` (apt-get install prometheus); ~10-20 s. (`cargo xtask k8s check`,
    /// run by `cargo xtask ci`, does the same against a real local cluster.)
    #[test]
    fn every_panel_and_rule_returns_data_from_a_real_prometheus() {
        if !have("prometheus") {
            return;
        }
        let fake = FakeCluster::start(2).unwrap();
        let report = check(&fake.targets, &Kernel::Loads, &mut || Ok(())).unwrap();
        assert!(report.lines.len() >= 10);
        assert_eq!(report.lines.len(), report.panel_exprs + report.rules);
        assert!(report.panels >= 10 && report.panels <= report.panel_exprs);
        assert!(report.skipped.is_empty());
    }

    /// And it can fail: a metric gen does not export has no data.
    #[test]
    fn a_metric_that_does_not_exist_fails_the_check() {
        if !have("prometheus") {
            return;
        }
        let fake = FakeCluster::start(1).unwrap();
        let dir = crate::proc::target_dir()
            .unwrap()
            .join(format!("k8s-prometheus-neg-{}", std::process::id()));
        let config = ci_copy(&dir, &fake.targets).unwrap();
        let prom = Prometheus::start(&config, &dir).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while prom.query("gen_target_rate").unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "no scrape within 30 s");
            std::thread::sleep(Duration::from_millis(300));
        }
        assert_eq!(prom.query("gen_requests_per_second").unwrap(), 0);
        assert!(prom.query("rate(gen_requests_total[1m]").is_err());
        drop(prom);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
