//! A gen cluster on this machine, as `cargo xtask demo` and `cargo xtask k8s check` run it:
//! the release `sample-webapp` on 127.0.0.1, a `gen coordinator` and workers, each worker on
//! its own loopback address 127.0.0.(i+2) serving its own `/metrics` there, as separate hosts
//! would. Every process is started here and stopped by its PID when the cluster is dropped
//! (on every exit path, errors included).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::proc;

/// Builds gen and sample-webapp (release) and returns the directory holding both binaries.
pub fn build() -> Result<PathBuf> {
    proc::cargo(&[
        "build",
        "--release",
        "-p",
        "generator",
        "-p",
        "sample-webapp",
    ])?;
    Ok(proc::target_dir()?.join("release"))
}

/// The Locust tutorial's workload (`scenarios/seed.toml`).
pub fn seed_scenario() -> PathBuf {
    crate::k8s::repo_root().join("scenarios/seed.toml")
}

/// What to start.
pub struct Spec<'a> {
    /// Where `build()` put gen and sample-webapp.
    pub bin: &'a Path,
    pub workers: usize,
    /// The coordinator's `--listen` (UI, API, heartbeats, `/metrics`).
    pub listen: String,
    /// `--token` for the coordinator and the workers (control requests send it too).
    pub token: Option<String>,
    /// Worker names are `{name}-{i}`.
    pub name: &'a str,
    /// When set, every process runs under `timeout -k 5 SECS`: even if this process is
    /// killed without dropping the cluster, nothing it started outlives the bound.
    pub lifetime_s: Option<u64>,
    /// Headless: the coordinator waits (60 s) for every worker, runs these load flags against
    /// sample-webapp (its URL is added) and exits with the report's code.
    pub headless_load: Option<Vec<String>>,
}

/// The running cluster. Dropping it stops the workers, then the coordinator, then the app.
pub struct LocalCluster {
    pub workers: Vec<proc::Guard>,
    pub coordinator: proc::Guard,
    pub app: proc::Server,
    /// The coordinator's address.
    pub listen: String,
    /// sample-webapp's root URL.
    pub url: String,
    token: Option<String>,
}

impl LocalCluster {
    /// Starts sample-webapp, the coordinator (waiting for its API) and the workers (not
    /// waiting for them to register: see `wait_for_workers`).
    pub fn start(spec: &Spec) -> Result<LocalCluster> {
        let command = |program: PathBuf| match spec.lifetime_s {
            Some(secs) => {
                let mut c = Command::new("timeout");
                c.args(["-k", "5", &secs.to_string()]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let app = proc::Server::start(
            command(spec.bin.join("sample-webapp")).args(["--listen", "127.0.0.1:0"]),
            "listening on ",
        )?;
        let url = format!("http://{}/", app.addr);
        let gen = spec.bin.join("gen");
        let token: Vec<&str> = spec
            .token
            .iter()
            .flat_map(|t| ["--token", t.as_str()])
            .collect();
        let mut cmd = command(gen.clone());
        cmd.args(["coordinator", "--listen", &spec.listen])
            .args(&token)
            .stdin(Stdio::null());
        if let Some(load) = &spec.headless_load {
            let n = spec.workers.to_string();
            cmd.args(["--expect-workers", &n, "--wait", "60s"])
                .args(load)
                .arg(&url);
        }
        let coordinator = proc::Guard::spawn(&mut cmd)?;
        proc::wait_for(30, "the coordinator", || {
            proc::http_get(&spec.listen, "/api/v1/status").is_ok()
        })?;
        let workers = (0..spec.workers)
            .map(|i| {
                // One loopback address each, as separate hosts would have.
                let listen = format!("127.0.0.{}:0", i + 2);
                proc::Guard::spawn(
                    command(gen.clone())
                        .args(["worker", "--coordinator", &spec.listen, "--listen", &listen])
                        .args(["--name", &format!("{}-{i}", spec.name)])
                        .args(&token)
                        .stdin(Stdio::null()),
                )
            })
            .collect::<Result<_>>()?;
        Ok(LocalCluster {
            workers,
            coordinator,
            app,
            listen: spec.listen.clone(),
            url,
            token: spec.token.clone(),
        })
    }

    /// `GET /api/v1/status`.
    pub fn status(&self) -> Result<Value> {
        let body = proc::http_get(&self.listen, "/api/v1/status")?;
        serde_json::from_str(&body).with_context(|| format!("status: {body}"))
    }

    /// Waits (up to 30 s) until every worker has registered with its metrics address;
    /// returns those addresses in worker order of the status.
    pub fn wait_for_workers(&self) -> Result<Vec<String>> {
        let mut addrs = Vec::new();
        proc::wait_for(30, "the workers", || {
            let Ok(s) = self.status() else { return false };
            let Some(w) = s["workers"].as_array() else {
                return false;
            };
            addrs = w
                .iter()
                .filter_map(|w| w["metrics_addr"].as_str().map(str::to_string))
                .collect();
            w.len() == self.workers.len() && addrs.len() == w.len()
        })?;
        Ok(addrs)
    }

    /// `POST /api/v1/run` with these load flags (with the token); returns the answer.
    pub fn start_run(&self, load: &[String]) -> Result<String> {
        let body = serde_json::json!({ "load": load }).to_string();
        self.control("/api/v1/run", &body)
    }

    /// `POST /api/v1/stop`.
    pub fn stop_run(&self) -> Result<String> {
        self.control("/api/v1/stop", "{}")
    }

    fn control(&self, path: &str, body: &str) -> Result<String> {
        let (status, answer) =
            proc::request(&self.listen, "POST", path, body, self.token.as_deref())?;
        if !(200..300).contains(&status) {
            bail!("POST {path} {body}: HTTP {status}: {answer}");
        }
        Ok(answer)
    }
}
