//! `cargo xtask demo`: the tutorial's setup on one machine. sample-webapp on 127.0.0.1, a
//! `gen coordinator` (UI on 127.0.0.1:8089) and several `gen worker`s, each on its own
//! 127.0.0.x address, running the seed scenario (`scenarios/seed.toml`).
//!
//! - Default: the run is started through the coordinator's API and the UI stays up until
//!   Ctrl-C (open http://127.0.0.1:8089/ to watch, change the rate, stop and restart).
//! - `--headless`: the coordinator waits for the workers, runs for `--duration`, prints the
//!   merged report and exits with its code; so does the demo.
//!
//! Every process is started here (`local_cluster.rs`, shared with `cargo xtask k8s check`)
//! and stopped by its PID when the demo ends.

use anyhow::{bail, Context, Result};

use crate::local_cluster::{self, LocalCluster, Spec};
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

pub fn main(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let bin = local_cluster::build()?;
    let seed = local_cluster::seed_scenario();
    let duration = o
        .duration
        .clone()
        .unwrap_or_else(|| if o.headless { "20s" } else { "10m" }.into());
    let load: Vec<String> = [
        "--scenario",
        seed.to_str().context("non-UTF-8 path")?,
        "--rate",
        &o.rate,
        "--duration",
        &duration,
    ]
    .map(String::from)
    .to_vec();
    let mut cluster = LocalCluster::start(&Spec {
        bin: &bin,
        workers: o.workers,
        listen: o.listen.clone(),
        token: None,
        name: "demo-worker",
        lifetime_s: None,
        headless_load: o.headless.then(|| load.clone()),
    })?;
    println!(
        "sample-webapp on {}, coordinator on {}, {} workers; seed scenario at {} req/s for {duration}",
        cluster.app.addr, o.listen, o.workers, o.rate
    );
    if o.headless {
        let status = cluster
            .coordinator
            .0
            .wait()
            .context("waiting for the coordinator")?;
        let stats = proc::http_get(&cluster.app.addr, "/_stats")?;
        println!("\nsample-webapp's own count: {stats}");
        if !status.success() {
            bail!("the headless run ended with {status}");
        }
        return Ok(());
    }
    cluster.wait_for_workers()?;
    let mut load = load;
    load.push(cluster.url.clone());
    let answer = cluster.start_run(&load)?;
    println!(
        "run ordered: {answer}\nUI: http://{}/ (Ctrl-C ends the demo)",
        o.listen
    );
    let status = cluster
        .coordinator
        .0
        .wait()
        .context("waiting for the coordinator")?;
    println!("coordinator ended: {status}");
    Ok(())
}
