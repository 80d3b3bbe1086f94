//! `cargo xtask bench`: whole-system comparison of gen against peers (wrk, h2load, oha).
//!
//! Method (docs/benchmarks.md): nginx (`return 200`, one worker) pinned to CPU 1, each
//! generator pinned to CPU 0 under GNU `/usr/bin/time`. A tool's cost is its user+sys CPU
//! time divided by the requests the *server* counted during the tool's run (nginx
//! `stub_status`, read before and after), so every tool is judged by the same counter.
//! Runs of different tools are interleaved (round-robin per repetition) so drift from other
//! work on the machine hits them alike; the table shows medians. Writes
//! `target/bench/results.md` and `target/bench/results.json`.
//!
//! Scenario D runs gen twice per repetition at 20k req/s, kernel probes off (`gen`) and on
//! (`gen+probes`): the probes' cost in CPU-µs per request (`--probes` runs only that).
//!
//! Scenario E is A's `return 200` over HTTPS (nginx `ssl`, a self-signed certificate
//! generated per run; gen and oha with `--insecure`), keep-alive, so it measures the
//! per-request cost of TLS records, not handshakes.
//!
//! Usage: `cargo xtask bench [--quick] [--probes] [--repeat N] [--duration SECS] [--tools gen,wrk,...]
//! [--scenarios A,E]`

use std::fmt::Write as _;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::proc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Gen,
    Wrk,
    H2load,
    Oha,
    /// gen with `--probes on` (plain `gen` runs with `--probes off`).
    GenProbes,
    /// gen with `--probes on` and the ring-buffer transport (`GEN_PROBES_TRANSPORT=ringbuf`),
    /// the alternative the in-kernel histograms are measured against.
    GenRingBuf,
}

impl Tool {
    const ALL: [Tool; 6] = [
        Tool::Gen,
        Tool::Wrk,
        Tool::H2load,
        Tool::Oha,
        Tool::GenProbes,
        Tool::GenRingBuf,
    ];

    fn name(self) -> &'static str {
        match self {
            Tool::Gen => "gen",
            Tool::Wrk => "wrk",
            Tool::H2load => "h2load",
            Tool::Oha => "oha",
            Tool::GenProbes => "gen+probes",
            Tool::GenRingBuf => "gen+ringbuf",
        }
    }

    fn is_gen(self) -> bool {
        matches!(self, Tool::Gen | Tool::GenProbes | Tool::GenRingBuf)
    }
}

struct Scenario {
    id: &'static str,
    title: &'static str,
    /// Fixed request rate (open model), or `None` for maximum throughput.
    rate: Option<u32>,
    tools: &'static [Tool],
    /// Over HTTPS (nginx `ssl`, keep-alive: one handshake per connection, then records).
    tls: bool,
}

/// The table of scenarios x tools.
const SCENARIOS: [Scenario; 5] = [
    Scenario {
        id: "A",
        title: "max throughput, 64 connections",
        rate: None,
        tools: &[Tool::Gen, Tool::Wrk, Tool::H2load, Tool::Oha],
        tls: false,
    },
    Scenario {
        id: "B",
        title: "fixed 20,000 req/s",
        rate: Some(20_000),
        tools: &[Tool::Gen, Tool::H2load, Tool::Oha],
        tls: false,
    },
    Scenario {
        id: "C",
        title: "50,000 req/s on one generator core",
        rate: Some(50_000),
        tools: &[Tool::Gen],
        tls: false,
    },
    Scenario {
        id: "D",
        title: "fixed 20,000 req/s, kernel probes off vs on (histograms; ring buffer)",
        rate: Some(20_000),
        tools: &[Tool::Gen, Tool::GenProbes, Tool::GenRingBuf],
        tls: false,
    },
    Scenario {
        id: "E",
        title: "HTTPS max throughput, 64 connections",
        rate: None,
        tools: &[Tool::Gen, Tool::H2load, Tool::Oha],
        tls: true,
    },
];
/// Goal (kernel probes issue): probes on cost at most this much more CPU per request.
const GOAL_PROBES_OVERHEAD: f64 = 0.05;

const CONNECTIONS: u32 = 64;
/// CPU the server runs on, and CPU the generator under test runs on.
const SERVER_CPU: &str = "1";
const TOOL_CPU: &str = "0";
/// Goal thresholds (from the engine issue).
const GOAL_VS_WRK: f64 = 0.6;
const GOAL_VS_H2LOAD: f64 = 0.5;
const GOAL_RATE_ERR: f64 = 0.005;
const GOAL_LAG_P99_US: f64 = 1000.0;

/// The command line of `tool` in scenario `s` (without the pinning/timing prefix).
fn argv(tool: Tool, bin: &Path, s: &Scenario, secs: u64, url: &str) -> Vec<String> {
    let (c, d) = (CONNECTIONS, secs);
    let args = match (tool, s.rate) {
        // gen always gets --json: the harness reads its own report (achieved rate, lag).
        (Tool::Gen | Tool::GenProbes | Tool::GenRingBuf, None) => {
            format!("--connections {c} --threads 1 --duration {d}s --json")
        }
        (Tool::Gen | Tool::GenProbes | Tool::GenRingBuf, Some(r)) => {
            format!("--rate {r} --threads 1 --duration {d}s --json")
        }
        (Tool::Wrk, _) => format!("-t1 -c{c} -d{d}s"),
        (Tool::H2load, None) => format!("--h1 -t1 -c{c} -D {d}"),
        // h2load's --rps is per client connection.
        (Tool::H2load, Some(r)) => format!(
            "--h1 -t1 -c{c} --rps {} -D {d}",
            f64::from(r) / f64::from(c)
        ),
        (Tool::Oha, None) => format!("-z {d}s -c {c} --no-tui"),
        (Tool::Oha, Some(r)) => format!("-z {d}s -c {c} -q {r} --no-tui"),
    };
    // GEN_BENCH_ARGS adds flags to gen's runs, e.g. "--resolution 1ms" to compare at the
    // timer granularity h2load's libev loop has.
    let mut extra = match tool {
        Tool::Gen => std::env::var("GEN_BENCH_ARGS").unwrap_or_default() + " --probes off",
        Tool::GenProbes | Tool::GenRingBuf => {
            std::env::var("GEN_BENCH_ARGS").unwrap_or_default() + " --probes on"
        }
        _ => String::new(),
    };
    // The bench's certificate is self-signed; h2load does not verify certificates.
    if s.tls
        && matches!(
            tool,
            Tool::Gen | Tool::GenProbes | Tool::GenRingBuf | Tool::Oha
        )
    {
        extra.push_str(" --insecure");
    }
    let args = args
        .split_whitespace()
        .chain(extra.split_whitespace())
        .map(String::from)
        .collect::<Vec<_>>();
    // env(1) execs gen in place: GNU time still measures gen's own process.
    let env: &[&str] = match tool {
        Tool::GenRingBuf => &["env", "GEN_PROBES_TRANSPORT=ringbuf"],
        _ => &[],
    };
    env.iter()
        .map(|e| e.to_string())
        .chain(std::iter::once(bin.display().to_string()))
        .chain(args)
        .chain([url.to_string()])
        .collect()
}

struct Opts {
    repeat: usize,
    secs: u64,
    tools: Vec<Tool>,
    /// Only these scenarios (`--scenarios A,E`; `--probes` is D); all when empty.
    only: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        repeat: 3,
        secs: 10,
        tools: Tool::ALL.to_vec(),
        only: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => (o.repeat, o.secs) = (1, 3),
            "--probes" => o.only = vec!["D".into()],
            "--scenarios" => {
                o.only = val()?.split(',').map(String::from).collect();
                if let Some(bad) = o.only.iter().find(|id| !SCENARIOS.iter().any(|s| s.id == id.as_str())) {
                    bail!("unknown scenario {bad:?} (use A, B, C, D, E)");
                }
            }
            "--repeat" => o.repeat = val()?.parse().context("--repeat")?,
            "--duration" => o.secs = val()?.trim_end_matches('s').parse().context("--duration")?,
            "--tools" => {
                let list = val()?.clone();
                o.tools = list
                    .split(',')
                    .map(|n| Tool::ALL.into_iter().find(|t| t.name() == n).with_context(|| format!("unknown tool {n:?}")))
                    .collect::<Result<_>>()?;
            }
            other => bail!("unknown bench argument {other:?} (use --quick, --probes, --repeat N, --duration SECS, --tools gen,wrk,h2load,oha,gen+probes,gen+ringbuf, --scenarios A,B,C,D,E)"),
        }
    }
    if o.repeat == 0 || o.secs == 0 {
        bail!("--repeat and --duration must be at least 1");
    }
    Ok(o)
}

/// One timed run of one tool.
struct Run {
    scenario: &'static str,
    tool: Tool,
    rep: usize,
    cmd: Vec<String>,
    wall_s: f64,
    cpu_s: f64,
    user_s: f64,
    sys_s: f64,
    /// Requests nginx counted during the run.
    server_requests: u64,
    /// The server's steady rate, mid-run (see [`mid_rate`]).
    mid_rate: Option<f64>,
    /// How busy the tool's CPU and the server's CPU were (cores, all processes), from
    /// /proc/stat: shows how much other work on the machine competed with the run.
    busy: Option<[f64; 2]>,
    /// The tool's CPU just before the run: time a spinning thread did not get, per second
    /// of probing, and the longest such gap (see [`stall_probe`]).
    stalls: Option<Stalls>,
    /// Why this run yields no figures (tool missing, crashed, no report...).
    error: Option<String>,
    /// The tool exited non-zero, died of a signal or hit the time limit.
    crashed: bool,
    /// gen's own JSON report (subset), gen runs only.
    gen: Option<Value>,
}

impl Run {
    fn cpu_us_per_req(&self) -> Option<f64> {
        (self.error.is_none() && self.server_requests > 0)
            .then(|| self.cpu_s * 1e6 / self.server_requests as f64)
    }
}

pub fn main(args: &[String]) -> Result<()> {
    let opts = parse_args(args)?;
    let dir = proc::target_dir()?.join("bench");
    std::fs::create_dir_all(dir.join("tmp")).context("creating target/bench")?;
    let dir = dir.canonicalize()?;

    let bins = find_tools(&opts.tools);
    let nginx = Nginx::start(&dir)?;
    let url = format!("http://{}/", nginx.load_addr);
    let tls_url = format!("https://{}/", nginx.tls_addr);
    println!(
        "nginx (CPU {SERVER_CPU}) on {url}; tools on CPU {TOOL_CPU}; {} run(s) of {} s each\n",
        opts.repeat, opts.secs
    );

    let mut runs = Vec::new();
    for s in opts.scenarios() {
        for rep in 0..opts.repeat {
            for &tool in s.tools.iter().filter(|t| opts.tools.contains(t)) {
                let run = match &bins[tool as usize] {
                    Ok(bin) => measure(
                        &nginx,
                        &dir,
                        tool,
                        s,
                        rep,
                        opts.secs,
                        argv(tool, bin, s, opts.secs, if s.tls { &tls_url } else { &url }),
                    )?,
                    Err(why) => Run::failed(s, tool, rep, why.clone()),
                };
                print_run(&run);
                runs.push(run);
            }
        }
    }
    drop(nginx);

    let report = render(&opts, &runs, &bins);
    println!("\n{report}");
    std::fs::write(dir.join("results.md"), &report)?;
    let raw = json!({ "machine": machine(), "secs": opts.secs, "repeat": opts.repeat,
        "runs": runs.iter().map(run_json).collect::<Vec<_>>() });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&raw)?,
    )?;
    println!(
        "written: {}, {}",
        dir.join("results.md").display(),
        dir.join("results.json").display()
    );

    let crashed: Vec<String> = runs
        .iter()
        .filter(|r| r.crashed)
        .map(|r| format!("{} {} #{}", r.scenario, r.tool.name(), r.rep + 1))
        .collect();
    if !crashed.is_empty() {
        bail!("tool run(s) crashed: {}", crashed.join(", "));
    }
    Ok(())
}

/// Locates (installing when missing) every tool; `Err(reason)` for one that can't be had.
fn find_tools(wanted: &[Tool]) -> Vec<Result<PathBuf, String>> {
    let apt: Vec<&str> = [
        ("nginx", "nginx-light"),
        ("wrk", "wrk"),
        ("h2load", "nghttp2-client"),
        ("taskset", "util-linux"),
    ]
    .iter()
    .filter(|(bin, _)| !proc::on_path(bin))
    .map(|(_, pkg)| *pkg)
    .chain((!Path::new("/usr/bin/time").is_file()).then_some("time"))
    .collect();
    if !apt.is_empty() {
        println!("bench: installing {}", apt.join(" "));
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&apt)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    if wanted.contains(&Tool::Oha) && which("oha").is_none() {
        println!("bench: installing oha with `cargo install oha --locked` (takes a few minutes)");
        if let Err(e) = proc::cargo(&["install", "oha", "--locked"]) {
            println!("bench: could not install oha ({e:#}); oha is skipped");
        }
    }
    Tool::ALL
        .iter()
        .map(|&t| {
            if !wanted.contains(&t) {
                return Err("not selected (--tools)".to_string());
            }
            if !t.is_gen() {
                return which(t.name()).ok_or_else(|| format!("{} not found on PATH", t.name()));
            }
            match proc::cargo(&["build", "--release", "-p", "generator"]) {
                Ok(()) => proc::target_dir()
                    .map(|d| d.join("release/gen"))
                    .map_err(|e| format!("{e:#}")),
                Err(e) => {
                    println!("bench: gen did not build ({e:#}); its rows are marked failed");
                    Err("gen did not build".into())
                }
            }
        })
        .collect()
}

fn which(bin: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(h).join("bin"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(bin)).find(|p| p.is_file())
}

/// nginx pinned to the server CPU; killed by PID on drop (every exit path, errors included).
struct Nginx {
    server: proc::Server,
    load_addr: String,
    status_addr: String,
    /// The same `return 200` over HTTPS (self-signed certificate, generated per run).
    tls_addr: String,
}

impl Nginx {
    fn start(dir: &Path) -> Result<Nginx> {
        // Two free ports: bound together so they differ, released just before nginx binds them.
        let (l1, l2, l3) = (
            TcpListener::bind("127.0.0.1:0")?,
            TcpListener::bind("127.0.0.1:0")?,
            TcpListener::bind("127.0.0.1:0")?,
        );
        let (load_addr, status_addr) = (l1.local_addr()?.to_string(), l2.local_addr()?.to_string());
        let tls_addr = l3.local_addr()?.to_string();
        drop((l1, l2, l3));
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .context("generating the TLS certificate")?;
        std::fs::write(dir.join("tls.pem"), ck.cert.pem())?;
        std::fs::write(dir.join("tls-key.pem"), ck.signing_key.serialize_pem())?;
        let conf = format!(
            "worker_processes 1;\npid nginx.pid;\nerror_log error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000000;\n  keepalive_timeout 300s;\n\
             \x20 client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n\
             \x20 uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n\
             \x20 server {{ listen {load_addr}; location / {{ return 200; }} }}\n\
             \x20 server {{ listen {status_addr}; location = /status {{ stub_status; }} }}\n\
             \x20 server {{ listen {tls_addr} ssl; ssl_certificate tls.pem; ssl_certificate_key tls-key.pem;\n\
             \x20   location / {{ return 200; }} }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let _ = std::fs::remove_file(dir.join("error.log"));
        let child = Command::new("taskset")
            .args(["-c", SERVER_CPU, "nginx", "-p"])
            .arg(dir)
            .args(["-c", "nginx.conf", "-e", "error.log", "-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        let mut n = Nginx {
            server: proc::Server {
                child,
                addr: load_addr.clone(),
            },
            load_addr,
            status_addr,
            tls_addr,
        };
        let t0 = Instant::now();
        while n.requests().is_err() {
            if n.server.child.try_wait()?.is_some() || t0.elapsed() > Duration::from_secs(10) {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                bail!("nginx did not start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(n)
    }

    /// The server's own request count (stub_status), this status request included.
    fn requests(&self) -> Result<u64> {
        let body = proc::http_get(&self.status_addr, "/status")?;
        // "Active connections: 1\nserver accepts handled requests\n 2 2 2\n..."
        body.lines()
            .skip_while(|l| !l.starts_with("server accepts"))
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("unexpected stub_status: {body:?}"))
    }
}

impl Run {
    fn failed(s: &Scenario, tool: Tool, rep: usize, why: String) -> Run {
        Run {
            scenario: s.id,
            tool,
            rep,
            cmd: vec![],
            wall_s: 0.0,
            cpu_s: 0.0,
            user_s: 0.0,
            sys_s: 0.0,
            server_requests: 0,
            mid_rate: None,
            busy: None,
            stalls: None,
            error: Some(why),
            crashed: false,
            gen: None,
        }
    }
}

/// Runs one tool pinned and timed, with the server's count read before and after.
fn measure(
    nginx: &Nginx,
    dir: &Path,
    tool: Tool,
    s: &Scenario,
    rep: usize,
    secs: u64,
    cmd: Vec<String>,
) -> Result<Run> {
    // Also lets the previous run's sockets settle.
    let stalls = stall_probe(Duration::from_secs(1));
    let before = nginx.requests()?;
    let limit = Duration::from_secs(secs + 30);
    // The server's count sampled during the run gives its steady (mid-run) rate.
    let start = Instant::now();
    let busy0 = cpu_busy();
    let mut samples = Vec::new();
    let t = run_pinned(&cmd, dir, limit, &mut || {
        let t0 = start.elapsed().as_secs_f64();
        if let Ok(n) = nginx.requests() {
            samples.push(((t0 + start.elapsed().as_secs_f64()) / 2.0, n));
        }
    })?;
    let after = nginx.requests()?;
    let span = start.elapsed().as_secs_f64();
    let mut run = Run::failed(s, tool, rep, String::new());
    run.cmd = cmd;
    run.stalls = stalls;
    // CPU time the two CPUs were busy during the run, as a share of the run (cores).
    if let (Some(a), Some(b)) = (busy0, cpu_busy()) {
        run.busy = Some([(b[0] - a[0]) / span, (b[1] - a[1]) / span]);
    }
    // Every status read counts itself: subtract the samples and the "after" read.
    run.server_requests = after.saturating_sub(before + samples.len() as u64 + 1);
    run.mid_rate = mid_rate(&samples, secs);
    (run.wall_s, run.user_s, run.sys_s) = (t.wall_s, t.user_s, t.sys_s);
    run.cpu_s = t.user_s + t.sys_s;
    run.crashed = !t.status.is_some_and(|s| s.success());
    run.error = match t.status {
        None => Some(format!("killed after the {} s time limit", limit.as_secs())),
        Some(st) if !st.success() => Some(format!("{st}: {}", last_line(&t.stderr))),
        _ if run.server_requests == 0 => Some("the server counted no request".into()),
        _ => None,
    };
    if tool.is_gen() && run.error.is_none() {
        match gen_figures(&t.stdout) {
            Some(v) => run.gen = Some(v),
            None => {
                run.error = Some(format!(
                    "gen printed no JSON report ({:?})",
                    last_line(&t.stdout)
                ))
            }
        }
    }
    Ok(run)
}

/// Requests per second the server counted between 15% and 85% of the run (start-up and
/// shutdown excluded); `samples` are (seconds since start, stub_status count).
fn mid_rate(samples: &[(f64, u64)], secs: u64) -> Option<f64> {
    let (lo, hi) = (secs as f64 * 0.15, secs as f64 * 0.85);
    let inside: Vec<(usize, f64, u64)> = samples
        .iter()
        .enumerate()
        .filter(|(_, (t, _))| (lo..=hi).contains(t))
        .map(|(i, &(t, n))| (i, t, n))
        .collect();
    let (&(i, t0, n0), &(j, t1, n1)) = (inside.first()?, inside.last()?);
    // Each sample in between counted itself.
    let load = n1.checked_sub(n0)?.checked_sub((j - i) as u64)?;
    (t1 - t0 >= 0.5).then(|| load as f64 / (t1 - t0))
}

/// How much a thread on the tool's CPU is kept from running, measured just before a run.
#[derive(Clone, Copy, Debug)]
struct Stalls {
    /// Milliseconds per second lost in gaps longer than [`STALL_GAP`].
    lost_ms_per_s: f64,
    /// The longest gap, µs.
    max_gap_us: f64,
}

/// A gap between two clock reads of a spinning loop longer than this is a stall: the
/// thread wanted the CPU and did not run (the host descheduled the vCPU, or an interrupt
/// storm). On an idle guest the loop reads the clock every ~30 ns.
const STALL_GAP: Duration = Duration::from_micros(200);

/// Spin on the tool's CPU for `span` and sum the stalls. The guest's steal counter misses
/// most of them on this kind of VM (docs/benchmarks.md, "Stalls of the virtual CPUs"), and
/// they decide the tail of a fixed-rate run's schedule lag more than the tool does.
fn stall_probe(span: Duration) -> Option<Stalls> {
    std::thread::spawn(move || {
        let cpu: usize = TOOL_CPU.parse().ok()?;
        // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) affects this thread only.
        let pinned = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        };
        if !pinned {
            return None;
        }
        let start = Instant::now();
        let (mut last, mut lost, mut max) = (start, Duration::ZERO, Duration::ZERO);
        while last - start < span {
            let now = Instant::now();
            let gap = now - last;
            if gap > STALL_GAP {
                lost += gap;
                max = max.max(gap);
            }
            last = now;
        }
        let secs = (last - start).as_secs_f64();
        Some(Stalls {
            lost_ms_per_s: lost.as_secs_f64() * 1e3 / secs,
            max_gap_us: max.as_secs_f64() * 1e6,
        })
    })
    .join()
    .ok()
    .flatten()
}

/// Goal C's runs: each lag p99 beside the CPU 0 stalls measured just before it (the lag's
/// tail follows the host more than the tool, docs/benchmarks.md); empty without C runs.
fn lag_beside_stalls(runs: &[Run]) -> String {
    let per_run: Vec<String> = runs
        .iter()
        .filter(|r| r.scenario == "C" && r.tool == Tool::Gen && r.error.is_none())
        .filter_map(|r| {
            let l = r.gen.as_ref()?["lag_p99_us"].as_f64()?;
            Some(match r.stalls {
                Some(st) => format!(
                    "{l:.0} µs after {:.1} ms/s of stalls (longest {:.0} µs)",
                    st.lost_ms_per_s, st.max_gap_us
                ),
                None => format!("{l:.0} µs"),
            })
        })
        .collect();
    if per_run.is_empty() {
        String::new()
    } else {
        format!(" (runs: {})", per_run.join("; "))
    }
}

/// Busy CPU-seconds of CPU 0 and CPU 1 since boot (/proc/stat, USER_HZ = 100).
fn cpu_busy() -> Option<[f64; 2]> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let busy = |cpu: &str| -> Option<f64> {
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(cpu))?;
        let f: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...: all but idle and iowait.
        Some((f.iter().take(8).sum::<f64>() - f.get(3)? - f.get(4)?) / 100.0)
    };
    Some([busy("cpu0")?, busy("cpu1")?])
}

struct Timed {
    /// `None`: killed by the time limit.
    status: Option<ExitStatus>,
    wall_s: f64,
    user_s: f64,
    sys_s: f64,
    stdout: String,
    stderr: String,
}

/// `taskset -c 0 /usr/bin/time -f "%e %U %S" -o FILE cmd...`, killed (its process group, by
/// PID) if it outlives `limit`; `sample` is called every 250 ms while it runs.
fn run_pinned(
    cmd: &[String],
    dir: &Path,
    limit: Duration,
    sample: &mut dyn FnMut(),
) -> Result<Timed> {
    let time_file = dir.join("time.txt");
    let _ = std::fs::remove_file(&time_file);
    let mut child = Command::new("taskset")
        .args(["-c", TOOL_CPU, "/usr/bin/time", "-f", "%e %U %S", "-o"])
        .arg(&time_file)
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0) // so a time-out kills time and the tool together
        .spawn()
        .with_context(|| format!("starting {}", cmd.join(" ")))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let mut next_sample = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        if Instant::now() >= next_sample {
            sample();
            next_sample += Duration::from_millis(250);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let times = std::fs::read_to_string(&time_file).unwrap_or_default();
    // GNU time writes "Command exited with non-zero status N" before the format line.
    let f: Vec<f64> = times
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [wall_s, user_s, sys_s] = f[..] else {
        if status.is_some_and(|s| s.success()) {
            bail!(
                "/usr/bin/time wrote no times for {}: {times:?}",
                cmd.join(" ")
            );
        }
        return Ok(Timed {
            status,
            wall_s: 0.0,
            user_s: 0.0,
            sys_s: 0.0,
            stdout: join(out),
            stderr: join(err),
        });
    };
    Ok(Timed {
        status,
        wall_s,
        user_s,
        sys_s,
        stdout: join(out),
        stderr: join(err),
    })
}

fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    })
}

fn join(h: std::thread::JoinHandle<String>) -> String {
    h.join().unwrap_or_default()
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

/// The figures the harness uses from gen's JSON report (docs/report.schema.json).
fn gen_figures(stdout: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(stdout.get(stdout.find('{')?..)?).ok()?;
    Some(json!({
        "achieved_rate": v.pointer("/throughput/achieved_rate")?,
        "target_rate": v.pointer("/throughput/target_rate"),
        "responses": v.pointer("/counts/responses"),
        "errors": v.pointer("/counts/errors"),
        "dropped": v.pointer("/counts/dropped"),
        "lag_p99_us": v.pointer("/latency/schedule_lag/p99_us"),
        "response_p99_us": v.pointer("/latency/response_time/p99_us"),
        "us_per_response": v.pointer("/cpu/us_per_response"),
        "driver": v.pointer("/run/driver"),
        "generator_bound": v.pointer("/generator_bound"),
        "kernel_status": v.pointer("/kernel/status"),
        "kernel_latency_p50_us": v.pointer("/kernel/latency/p50_us"),
        "service_p50_us": v.pointer("/latency/service_time/p50_us"),
        "overhead_p50_us": v.pointer("/kernel/generator_overhead/p50_us"),
    }))
}

fn print_run(r: &Run) {
    match (&r.error, r.cpu_us_per_req()) {
        (None, Some(cpu)) => println!(
            "{} {:<6} #{}: {:>9} req by server in {:.2} s ({:.0} req/s), CPU {:.2} s = {:.2} µs/req",
            r.scenario, r.tool.name(), r.rep + 1, r.server_requests, r.wall_s,
            r.server_requests as f64 / r.wall_s, r.cpu_s, cpu
        ),
        (e, _) => println!("{} {:<6} #{}: FAILED: {}", r.scenario, r.tool.name(), r.rep + 1, e.as_deref().unwrap_or("?")),
    }
}

fn run_json(r: &Run) -> Value {
    json!({ "scenario": r.scenario, "tool": r.tool.name(), "rep": r.rep + 1,
        "command": r.cmd.join(" "), "wall_s": r.wall_s, "user_s": r.user_s, "sys_s": r.sys_s,
        "server_requests": r.server_requests, "server_mid_rate": r.mid_rate,
        "cpu_busy_cores": r.busy,
        "stalls_before": r.stalls.map(|s| json!({ "lost_ms_per_s": s.lost_ms_per_s, "max_gap_us": s.max_gap_us })),
        "cpu_us_per_request": r.cpu_us_per_req(), "error": r.error, "crashed": r.crashed,
        "gen_report": r.gen })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Medians of one scenario x tool cell.
#[derive(Default)]
struct Cell {
    ok: usize,
    runs: usize,
    requests: Option<f64>,
    rate: Option<f64>,
    cpu_us: Option<f64>,
    core: Option<f64>,
    /// CPU 0 used by other processes than the tool; CPU 1 busy (nginx and anything else).
    others0: Option<f64>,
    busy1: Option<f64>,
    /// CPU 0 stalls just before the runs (ms lost per s).
    stalls0: Option<f64>,
    mid_rate: Option<f64>,
    /// Server's mid-run rate vs the target (fixed-rate scenarios).
    rate_err: Option<f64>,
    /// gen's own achieved rate vs its target.
    gen_rate_err: Option<f64>,
    gen_lag_p99_us: Option<f64>,
}

fn cell(runs: &[Run], s: &Scenario, tool: Tool) -> Cell {
    let rs: Vec<&Run> = runs
        .iter()
        .filter(|r| r.scenario == s.id && r.tool == tool)
        .collect();
    let ok: Vec<&&Run> = rs.iter().filter(|r| r.error.is_none()).collect();
    let m = |f: &dyn Fn(&Run) -> Option<f64>| median(ok.iter().filter_map(|r| f(r)).collect());
    let gen = |r: &Run, k: &str| r.gen.as_ref().and_then(|g| g[k].as_f64());
    let err = |x: f64| s.rate.map(|rate| x / f64::from(rate) - 1.0);
    Cell {
        ok: ok.len(),
        runs: rs.len(),
        requests: m(&|r| Some(r.server_requests as f64)),
        rate: m(&|r| Some(r.server_requests as f64 / r.wall_s)),
        mid_rate: m(&|r| r.mid_rate),
        cpu_us: m(&|r| r.cpu_us_per_req()),
        core: m(&|r| Some(r.cpu_s / r.wall_s)),
        others0: m(&|r| Some((r.busy?[0] - r.cpu_s / r.wall_s).max(0.0))),
        busy1: m(&|r| Some(r.busy?[1])),
        stalls0: m(&|r| Some(r.stalls?.lost_ms_per_s)),
        rate_err: m(&|r| err(r.mid_rate?)),
        gen_rate_err: m(&|r| err(gen(r, "achieved_rate")?)),
        gen_lag_p99_us: m(&|r| gen(r, "lag_p99_us")),
    }
}

/// Scenario D: CPU per request of `on` (probes on, by one transport) over off, paired by
/// repetition (the runs of a pair are back to back), minus 1; the median over pairs.
fn probes_overhead(runs: &[Run], on: Tool, cpu_us: &dyn Fn(&Run) -> Option<f64>) -> Option<f64> {
    let of = |tool: Tool, rep: usize| {
        let r = runs
            .iter()
            .find(|r| r.scenario == "D" && r.tool == tool && r.rep == rep)?;
        r.error.is_none().then_some(())?;
        cpu_us(r)
    };
    let reps = runs.iter().map(|r| r.rep + 1).max().unwrap_or(0);
    median(
        (0..reps)
            .filter_map(|rep| Some(of(on, rep)? / of(Tool::Gen, rep)? - 1.0))
            .collect(),
    )
}

impl Opts {
    fn scenarios(&self) -> impl Iterator<Item = &'static Scenario> + '_ {
        SCENARIOS
            .iter()
            .filter(|s| self.only.is_empty() || self.only.iter().any(|id| id == s.id))
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

fn pct(x: f64) -> String {
    format!("{:+.2}%", x * 100.0)
}

fn machine() -> Value {
    let sh = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    json!({ "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": sh("uname", &["-r"]),
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(), "cpu": cpu, "date": sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]) })
}

fn version(bin: &Path, tool: Tool) -> String {
    let arg = if tool == Tool::Wrk { "-v" } else { "--version" };
    let out = Command::new(bin).arg(arg).output().map(|o| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let out = out.unwrap_or_default();
    let first = out.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    first
        .split("Copyright")
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The markdown report: machine, table of medians, goals, commands, failures.
fn render(o: &Opts, runs: &[Run], bins: &[Result<PathBuf, String>]) -> String {
    let m = machine();
    let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
    let mut md = String::new();
    let _ = writeln!(md, "# gen vs peers — `cargo xtask bench`\n");
    let _ = writeln!(
        md,
        "- date: {}; machine: {} CPUs ({}), kernel {}; load average at the end: {}",
        s("date"),
        m["nproc"],
        s("cpu"),
        s("kernel"),
        s("loadavg")
    );
    let _ = writeln!(md, "- server: nginx `return 200`, 1 worker, `taskset -c {SERVER_CPU}`; each tool: `taskset -c {TOOL_CPU} /usr/bin/time -f \"%e %U %S\" <command>`");
    let _ = writeln!(md, "- {} run(s) of {} s per tool, tools interleaved; medians. CPU-µs/req = tool user+sys / requests nginx counted (`stub_status`) during the run; mid-run req/s = nginx's count rate between 15% and 85% of the run; \"others on CPU 0\" = CPU 0 busy time (/proc/stat) not spent by the tool: other work on the machine competing with it; \"CPU 0 stalls\" = time a thread spinning on CPU 0 for 1 s just before the run did not run (gaps > 200 µs), ms per s: the host taking the vCPU away, invisible in /proc/stat", o.repeat, o.secs);
    let vers: Vec<String> = Tool::ALL
        .iter()
        .zip(bins)
        .filter_map(|(t, b)| Some(format!("{}: {}", t.name(), version(b.as_ref().ok()?, *t))))
        .collect();
    let _ = writeln!(md, "- versions: {}\n", vers.join("; "));

    let _ = writeln!(md, "| scenario | tool | ok runs | server requests | req/s (count / wall) | req/s (server, mid-run) | CPU-µs/req | tool CPU (cores) | others on CPU 0 (cores) | CPU 0 stalls (ms/s) | CPU 1 busy (cores) | rate error (server, mid-run) | gen: achieved vs target | gen: lag p99 |");
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut cells = Vec::new();
    for sc in o.scenarios() {
        for &t in sc.tools.iter().filter(|t| o.tools.contains(t)) {
            let c = cell(runs, sc, t);
            let n = |v: Option<f64>| opt(v, |x| format!("{x:.0}"));
            let _ = writeln!(
                md,
                "| {} {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                sc.id,
                sc.title,
                t.name(),
                c.ok,
                c.runs,
                n(c.requests),
                n(c.rate),
                n(c.mid_rate),
                opt(c.cpu_us, |x| format!("{x:.2}")),
                opt(c.core, |x| format!("{x:.2}")),
                opt(c.others0, |x| format!("{x:.2}")),
                opt(c.stalls0, |x| format!("{x:.1}")),
                opt(c.busy1, |x| format!("{x:.2}")),
                opt(c.rate_err, pct),
                opt(c.gen_rate_err, pct),
                opt(c.gen_lag_p99_us, |x| format!("{x:.0} µs"))
            );
            cells.push((sc.id, t, c));
        }
    }

    let get = |id: &str, t: Tool| {
        cells
            .iter()
            .find(|(i, tt, _)| *i == id && *tt == t)
            .map(|(_, _, c)| c)
    };
    let ratio = |id: &str, peer: Tool| Some(get(id, Tool::Gen)?.cpu_us? / get(id, peer)?.cpu_us?);
    let rate_err = |id: &str| get(id, Tool::Gen).map(|c| (c.rate_err, c.gen_rate_err));
    let lag = get("C", Tool::Gen).and_then(|c| c.gen_lag_p99_us);
    // (goal, measured, verdict: None = no data)
    let mut goals: Vec<(String, String, Option<bool>)> = vec![
        (
            "A: gen/wrk CPU-µs per request at max load ≤ 0.6".into(),
            opt(ratio("A", Tool::Wrk), |x| format!("{x:.2}")),
            ratio("A", Tool::Wrk).map(|r| r <= GOAL_VS_WRK),
        ),
        (
            "B: gen/h2load CPU-µs per request at 20k req/s ≤ 0.5".into(),
            opt(ratio("B", Tool::H2load), |x| format!("{x:.2}")),
            ratio("B", Tool::H2load).map(|r| r <= GOAL_VS_H2LOAD),
        ),
    ];
    for (id, rate) in [("B", "20k"), ("C", "50k")] {
        let (server, own) = rate_err(id).unwrap_or((None, None));
        let pass = match (server, own) {
            (Some(a), Some(b)) => Some(a.abs().max(b.abs()) <= GOAL_RATE_ERR),
            _ => None,
        };
        goals.push((format!("{id}: gen achieved rate at {rate} req/s within 0.5% (server mid-run; gen's report)"),
            format!("{}; {}", opt(server, pct), opt(own, pct)), pass));
    }
    goals.push((
        "C: gen schedule lag p99 at 50k req/s < 1 ms".into(),
        format!(
            "{}{}",
            opt(lag, |x| format!("{x:.0} µs")),
            lag_beside_stalls(runs)
        ),
        lag.map(|l| l < GOAL_LAG_P99_US),
    ));
    // Whole process (GNU time: includes loading the probes, 0.05-0.1 s of CPU once) and the
    // measured window only (gen's own rusage figure): the steady per-request cost.
    let whole = probes_overhead(runs, Tool::GenProbes, &|r| r.cpu_us_per_req());
    let steady_of =
        |on| probes_overhead(runs, on, &|r| r.gen.as_ref()?["us_per_response"].as_f64());
    let steady = steady_of(Tool::GenProbes);
    let (whole_rb, steady_rb) = (
        probes_overhead(runs, Tool::GenRingBuf, &|r| r.cpu_us_per_req()),
        steady_of(Tool::GenRingBuf),
    );
    goals.push((
        "D: CPU-µs per request, kernel probes on vs off at 20k req/s (median of same-repetition pairs; GNU time, whole process) ≤ +5%".into(),
        opt(whole, pct),
        whole.map(|x| x <= GOAL_PROBES_OVERHEAD),
    ));
    goals.push((
        "D: the same over the measured window only (gen's own CPU figure, without the one-time load) ≤ +5%".into(),
        opt(steady, pct),
        steady.map(|x| x <= GOAL_PROBES_OVERHEAD),
    ));
    // Not a goal: the choice of transport. The histograms should cost no more than the ring
    // buffer; if they did, docs/probes.md's reasoning would be wrong.
    goals.push((
        "D: the ring-buffer transport instead (whole process; measured window) — histograms must cost no more".into(),
        format!("{}; {}", opt(whole_rb, pct), opt(steady_rb, pct)),
        steady.zip(steady_rb).map(|(h, rb)| h <= rb),
    ));
    if !o.only.is_empty() {
        goals.retain(|(name, _, _)| o.only.iter().any(|id| name.starts_with(id.as_str())));
    }
    let _ = writeln!(
        md,
        "\n## Goals\n\n| goal | measured | verdict |\n|---|---|---|"
    );
    for (name, measured, pass) in &goals {
        let verdict = match pass {
            None => "N/A (no data)",
            Some(true) => "PASS",
            Some(false) => "FAIL",
        };
        let _ = writeln!(md, "| {name} | {measured} | {verdict} |");
    }

    let _ = writeln!(md, "\n## Commands\n");
    for sc in o.scenarios() {
        for &t in sc.tools.iter().filter(|t| o.tools.contains(t)) {
            let cmd = argv(t, Path::new(t.name()), sc, o.secs, "URL").join(" ");
            let _ = writeln!(md, "- {} {}: `{cmd}`", sc.id, t.name());
        }
    }
    let failed: Vec<&Run> = runs.iter().filter(|r| r.error.is_some()).collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "\n## Failed runs\n");
        for r in failed {
            let _ = writeln!(
                md,
                "- {} {} #{}: {}",
                r.scenario,
                r.tool.name(),
                r.rep + 1,
                r.error.as_deref().unwrap_or("")
            );
        }
    }
    md
}
