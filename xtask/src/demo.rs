//! `cargo xtask demo`: the tutorial's setup on one machine. sample-webapp on 127.0.0.1, a
//! `gen coordinator` (UI on 127.0.0.1:8089) and several `gen worker`s, each on its own
//! 127.0.0.x address, running the seed scenario (`scenarios/seed.toml`).
//!
//! - Default: the run is started through the coordinator's API and the UI stays up until
//!   Ctrl-C (open http://127.0.0.1:8089/ to watch, change the rate, stop and restart).
//! - `--headless`: the coordinator waits for the workers, runs for `--duration`, prints the
//!   merged report and exits with its code; so does the demo.
//!
//! Every process is started here and stopped by its PID when the demo ends.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::proc;

struct Opts {
    rate: String,
    duration: Option<String>,
    workers: usize,
    headless: bool,
    listen: String,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        rate: "2000".into(),
        duration: None,
        workers: 4,
        headless: false,
        listen: "127.0.0.1:8089".into(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--rate" => o.rate = value()?.clone(),
            "--duration" => o.duration = Some(value()?.clone()),
            "--workers" => {
                let v = value()?;
                o.workers = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=50).contains(n))
                    .with_context(|| format!("--workers {v:?}: use 1 to 50"))?;
            }
            "--listen" => o.listen = value()?.clone(),
            "--headless" => o.headless = true,
            other => bail!("unknown demo argument {other:?}"),
        }
    }
    Ok(o)
}

/// A child stopped by its PID on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn main(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    proc::cargo(&[
        "build",
        "--release",
        "-p",
        "generator",
        "-p",
        "sample-webapp",
    ])?;
    let bin = proc::target_dir()?.join("release");
    let gen = bin.join("gen");
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/seed.toml");
    let app = proc::Server::start(
        Command::new(bin.join("sample-webapp")).args(["--listen", "127.0.0.1:0"]),
        "listening on ",
    )?;
    let url = format!("http://{}/", app.addr);
    let duration = o
        .duration
        .clone()
        .unwrap_or_else(|| if o.headless { "20s" } else { "10m" }.into());
    let load = [
        "--scenario",
        seed.to_str().context("non-UTF-8 path")?,
        &url,
        "--rate",
        &o.rate,
        "--duration",
        &duration,
    ];
    let n = o.workers.to_string();
    let mut coord_cmd = Command::new(&gen);
    coord_cmd.args(["coordinator", "--listen", &o.listen]);
    if o.headless {
        coord_cmd
            .args(["--expect-workers", &n, "--wait", "60s"])
            .args(load);
    }
    let mut coord = Guard(
        coord_cmd
            .stdin(Stdio::null())
            .spawn()
            .context("starting gen coordinator")?,
    );
    wait_for(
        || proc::http_get(&o.listen, "/api/v1/status").is_ok(),
        "the coordinator",
    )?;
    let _workers: Vec<Guard> = (0..o.workers)
        .map(|i| {
            // One loopback address each, as separate hosts would have.
            let listen = format!("127.0.0.{}:0", i + 2);
            Command::new(&gen)
                .args(["worker", "--coordinator", &o.listen, "--listen", &listen])
                .args(["--name", &format!("demo-worker-{i}")])
                .stdin(Stdio::null())
                .spawn()
                .map(Guard)
                .context("starting gen worker")
        })
        .collect::<Result<_>>()?;
    println!(
        "sample-webapp on {}, coordinator on {}, {} workers; seed scenario at {} req/s for {duration}",
        app.addr, o.listen, o.workers, o.rate
    );
    if o.headless {
        let status = coord.0.wait().context("waiting for the coordinator")?;
        let stats = proc::http_get(&app.addr, "/_stats")?;
        println!("\nsample-webapp's own count: {stats}");
        if !status.success() {
            bail!("the headless run ended with {status}");
        }
        return Ok(());
    }
    wait_for(
        || {
            proc::http_get(&o.listen, "/api/v1/status")
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .and_then(|s| s["workers"].as_array().map(|w| w.len()))
                == Some(o.workers)
        },
        "the workers",
    )?;
    let body = serde_json::json!({ "load": load }).to_string();
    let answer = proc::http(&o.listen, "POST", "/api/v1/run", &body)?;
    println!(
        "run ordered: {answer}\nUI: http://{}/ (Ctrl-C ends the demo)",
        o.listen
    );
    let status = coord.0.wait().context("waiting for the coordinator")?;
    println!("coordinator ended: {status}");
    Ok(())
}

/// Polls `ready` every 100 ms for up to 30 s.
fn wait_for(mut ready: impl FnMut() -> bool, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} did not come up within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
