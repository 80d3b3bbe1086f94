//! Process helpers: run cargo, start a server and wait for its "listening on" line, a tiny
//! HTTP client for stats and control endpoints, a free loopback port. Servers and guarded
//! children are killed by PID when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The workspace's target directory.
pub fn target_dir() -> Result<PathBuf> {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(d));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf();
    Ok(root.join("target"))
}

pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// A child server, killed (by its PID) on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Start `cmd` and wait (up to 20 s) for a stdout line containing `marker`; the rest of
    /// that line is the address it listens on.
    pub fn start(cmd: &mut Command, marker: &str) -> Result<Server> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let out = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        let wanted = marker.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(pos) = line.find(&wanted) {
                    let _ = tx.send(line[pos + wanted.len()..].trim().to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => Ok(Server { child, addr }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{cmd:?} did not print {marker:?} within 20 s")
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A child stopped by its PID on drop (SIGTERM, then SIGKILL after 5 s).
pub struct Guard(pub Child);

impl Guard {
    pub fn spawn(cmd: &mut Command) -> Result<Guard> {
        cmd.spawn()
            .map(Guard)
            .with_context(|| format!("starting {cmd:?}"))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

/// SIGTERM first so the process can shut down gracefully, then make sure (SIGKILL after 5 s).
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A free TCP port on `ip` (a loopback address): bind, read it, release. The caller's
/// server fails loudly in the unlikely case another process took it in between.
pub fn free_port(ip: &str) -> Result<u16> {
    Ok(TcpListener::bind((ip, 0))
        .with_context(|| format!("binding {ip}:0"))?
        .local_addr()?
        .port())
}

/// Polls `ready` every 100 ms for up to `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} did not come up within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// GET `path` from `addr` over a fresh connection; returns the body.
pub fn http_get(addr: &str, path: &str) -> Result<String> {
    http(addr, "GET", path, "")
}

/// One request over a fresh connection (a JSON body when not empty); returns the body.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> Result<String> {
    request(addr, method, path, body, None).map(|(_, body)| body)
}

/// One request over a fresh connection, with `Authorization: Bearer <token>` when given;
/// returns (status, body).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         {auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let Some((head, body)) = buf.split_once("\r\n\r\n") else {
        bail!("bad response from {addr}{path}: {buf:?}")
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status from {addr}{path}: {head:?}"))?;
    Ok((status, body.to_string()))
}
