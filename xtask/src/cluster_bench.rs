//! `cargo xtask bench-cluster [--workers 20,200] [--seconds 20]`: what a coordinator costs.
//!
//! Starts a real `gen coordinator`, orders a run, and simulates N workers that each send one
//! heartbeat per second carrying one interval with a realistic snapshot (2,500 responses with
//! spread latencies, i.e. a 50k req/s cluster split 20 ways), exactly as `gen worker` does.
//! The coordinator's CPU time (user + system from /proc/PID/stat) over the measured window,
//! divided by the window, is its share of one core. Simulated workers are threads of this
//! process, pinned away from the coordinator where the machine has the cores.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use generator::cluster::wire::{Desired, Heartbeat};
use generator::measure::Recorder;

use crate::proc::{self, Guard};

pub fn main(args: &[String]) -> Result<()> {
    let mut counts = vec![20usize, 200];
    let mut seconds = 20u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--workers" => {
                counts = it
                    .next()
                    .context("--workers needs a list, e.g. 20,200")?
                    .split(',')
                    .map(|n| n.parse().context("worker count"))
                    .collect::<Result<_>>()?
            }
            "--seconds" => seconds = it.next().context("--seconds needs a value")?.parse()?,
            other => bail!("unknown bench-cluster argument {other:?}"),
        }
    }
    proc::cargo(&["build", "--release", "-p", "generator"])?;
    let gen = proc::target_dir()?.join("release/gen");
    println!("| simulated workers | heartbeats/s | coordinator CPU (% of one core) |");
    println!("|---|---|---|");
    for n in counts {
        let (beats, cpu) = measure(&gen, n, seconds)?;
        println!("| {n} | {beats:.0} | {:.2}% |", cpu * 100.0);
    }
    Ok(())
}

/// One measurement: (heartbeats per second answered, coordinator CPU as a fraction of a core).
fn measure(gen: &std::path::Path, workers: usize, seconds: u64) -> Result<(f64, f64)> {
    let addr = format!("127.0.0.1:{}", proc::free_port("127.0.0.1")?);
    let coord = Guard(
        Command::new(gen)
            .args(["coordinator", "--listen", &addr])
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting gen coordinator")?,
    );
    let up = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        if up.elapsed() > Duration::from_secs(10) {
            bail!("the coordinator did not listen on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let beats = Arc::new(AtomicU64::new(0));
    // A realistic interval: 2,500 responses from 200 µs to ~50 ms.
    let mut rec = Recorder::new();
    for i in 0..2_500u64 {
        let us = 200 + (i * i) % 50_000;
        rec.record_sent(120);
        rec.record_response(0, 20_000, us * 500, us * 1_000, 200, 90);
    }
    // Checked to round-trip through the real wire types once, then reused as text.
    let snap: Arc<str> = serde_json::to_string(&rec.take_snapshot())?.into();
    let probe = format!(
        r#"{{"worker":"x","threads":1,"metrics_addr":null,"epoch":1,"state":"running","error":null,"cpu_s":0.0,"intervals":[{{"epoch":1,"second":0,"endpoints":{{"default":{snap}}}}}]}}"#
    );
    serde_json::from_str::<Heartbeat>(&probe).context("the hand-built heartbeat is not valid")?;
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (addr, stop, beats, snap) =
                (addr.clone(), stop.clone(), beats.clone(), snap.clone());
            std::thread::spawn(move || {
                let name = format!("sim{w:03}");
                let mut epoch = 0;
                let mut second = 0;
                // Spread the heartbeats over the second, as real workers drift apart.
                std::thread::sleep(Duration::from_millis((w as u64 * 997) % 1000));
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    // Built by hand around the pre-serialized snapshot: the simulation must be
                    // cheap next to what it measures.
                    let intervals = if epoch > 0 {
                        second += 1;
                        format!(
                            r#"[{{"epoch":{epoch},"second":{second},"endpoints":{{"default":{snap}}}}}]"#
                        )
                    } else {
                        "[]".to_owned()
                    };
                    let hb = format!(
                        r#"{{"worker":"{name}","threads":2,"metrics_addr":null,"epoch":{epoch},"state":"running","error":null,"cpu_s":0.0,"intervals":{intervals}}}"#
                    );
                    if let Ok(body) = post(&addr, "/api/v1/heartbeat", hb.as_bytes()) {
                        if let Ok(d) = serde_json::from_slice::<Desired>(&body) {
                            epoch = d.epoch;
                            beats.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    next += Duration::from_secs(1);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let load = br#"{"load":["--target","http://127.0.0.1:9/","--rate","50000","--duration","1h"]}"#;
    post(&addr, "/api/v1/run", load).context("ordering the run")?;
    std::thread::sleep(Duration::from_secs(3));
    let (cpu0, beats0, t0) = (
        cpu_s(coord.0.id())?,
        beats.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu1, beats1, t1) = (
        cpu_s(coord.0.id())?,
        beats.load(Ordering::Relaxed),
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = (t1 - t0).as_secs_f64();
    Ok(((beats1 - beats0) as f64 / secs, (cpu1 - cpu0) / secs))
}

/// One POST over a fresh connection (as `gen worker` does); the body of a 2xx answer.
fn post(addr: &str, path: &str, body: &[u8]) -> Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no header end")?;
    if !resp.starts_with(b"HTTP/1.1 2") {
        bail!("{}", String::from_utf8_lossy(&resp[..split]));
    }
    Ok(resp[split + 4..].to_vec())
}

/// utime + stime of a process, seconds.
fn cpu_s(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').context("stat format")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ, fixed at 100 on Linux
    Ok((f[11].parse::<f64>()? + f[12].parse::<f64>()?) / ticks)
}
