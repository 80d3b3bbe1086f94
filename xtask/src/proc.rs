//! Process helpers: run cargo, start a server and wait for its "listening on" line, a tiny
//! HTTP GET for stats endpoints. Servers are killed by PID when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
        // SIGTERM first so the server can shut down gracefully, then make sure.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from `addr` over a fresh connection; returns the body.
pub fn http_get(addr: &str, path: &str) -> Result<String> {
    http(addr, "GET", path, "")
}

/// One request over a fresh connection (a JSON body when not empty); returns the body.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    match buf.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.to_string()),
        None => bail!("bad response from {addr}{path}: {buf:?}"),
    }
}
