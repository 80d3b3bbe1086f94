//! Shared by the integration tests: start sample-webapp on an ephemeral 127.0.0.1 port, run
//! the `gen` binary, read JSON reports and the server's own counters.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the kernel probes cannot load in this environment, or `None` when they can.
pub fn probes_unavailable() -> Option<String> {
    generator_ebpf::Probes::load(std::process::id())
        .err()
        .map(|e| e.to_string())
}

/// The driver a run reports: the binary honours `GEN_IO` (CI runs the integration tests
/// once with the default and once with `GEN_IO=epoll`).
pub fn expected_driver() -> &'static str {
    match std::env::var("GEN_IO").as_deref() {
        Ok("epoll") => "epoll",
        _ => "io_uring",
    }
}

pub fn gen_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gen"))
}

/// The sample-webapp binary of the same profile, built on demand.
pub fn webapp_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join("sample-webapp");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "sample-webapp"]);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("cargo build").success(),
            "building sample-webapp"
        );
    }
    bin
}

/// A running sample-webapp, killed by PID on drop.
pub struct Webapp {
    child: Child,
    pub addr: String,
}

impl Webapp {
    pub fn start(args: &[&str]) -> Webapp {
        Webapp::spawn(Command::new(webapp_bin()), args)
    }

    /// Started under `taskset -c CPU` (taskset execs it: the PID is the server's).
    pub fn start_pinned(cpu: usize, args: &[&str]) -> Webapp {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &cpu.to_string()]).arg(webapp_bin());
        Webapp::spawn(cmd, args)
    }

    fn spawn(mut cmd: Command, args: &[&str]) -> Webapp {
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting sample-webapp");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .expect("listening line")
            .to_string();
        assert!(
            line.contains("listening on"),
            "unexpected first line {line:?}"
        );
        Webapp { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The server's own count of requests served.
    pub fn requests(&self) -> u64 {
        let body = request(&self.addr, "GET", "/_stats");
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
        v["requests"].as_u64().expect("requests field")
    }

    pub fn stall(&self, ms: u64) {
        request(&self.addr, "POST", &format!("/_admin/stall?ms={ms}"));
    }
}

impl Drop for Webapp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request over a fresh connection; returns the body.
pub fn request(addr: &str, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The address a `gen coordinator` announces on its first stderr line
/// ("gen coordinator listening on ADDR (UI ...)").
pub fn coordinator_addr(stderr: &mut impl BufRead) -> String {
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    line.split_whitespace()
        .nth(4)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned()
}

pub fn gen(args: &[&str]) -> Output {
    Command::new(gen_bin())
        .args(args)
        .arg("--quiet")
        .output()
        .expect("running gen")
}

/// Run gen with `--json` and return the parsed report (panics with stderr on a bad exit).
pub fn gen_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(gen_bin())
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("running gen");
    assert!(
        out.status.success(),
        "gen {args:?} exited {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// A latency figure in µs: report["latency"][hist][key].
pub fn lat(r: &serde_json::Value, hist: &str, key: &str) -> f64 {
    r["latency"][hist][key]
        .as_f64()
        .unwrap_or_else(|| panic!("latency.{hist}.{key} missing in {}", r["latency"]))
}

pub fn count(r: &serde_json::Value, key: &str) -> u64 {
    r["counts"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("counts.{key} missing"))
}

/// An nginx (`return 200`) on an ephemeral 127.0.0.1 port with the given extra `http`-level
/// directives. It runs as a single process (`master_process off`), so killing its PID leaves
/// no orphaned worker behind;
/// from a config in a fresh temp directory; stopped by PID on drop. `None` (with
/// the reason printed) where nginx is not installed: `cargo xtask ci` installs it.
pub struct Nginx {
    child: Child,
    pub addr: String,
    dir: PathBuf,
}

impl Nginx {
    pub fn start(http_directives: &str) -> Option<Nginx> {
        Nginx::start_server(http_directives, "", "")
    }

    /// An nginx serving HTTPS with this certificate and key (PEM files); `server_directives`
    /// go into its `server` block (e.g. `ssl_verify_client on; ...`).
    pub fn start_tls(
        http_directives: &str,
        cert: &std::path::Path,
        key: &std::path::Path,
        server_directives: &str,
    ) -> Option<Nginx> {
        let server = format!(
            "ssl_certificate {}; ssl_certificate_key {}; {server_directives}",
            cert.display(),
            key.display()
        );
        Nginx::start_server(http_directives, " ssl", &server)
    }

    /// `listen_flags` follow the address in `listen`; `server_directives` go into `server`.
    pub fn start_server(
        http_directives: &str,
        listen_flags: &str,
        server_directives: &str,
    ) -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        let Some(bin) = bin else {
            eprintln!("skipping: nginx is not installed (cargo xtask ci installs nginx-light)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("gen-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let conf = format!(
            "master_process off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};\n\
             fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
             {http_directives}\n\
             server {{ listen 127.0.0.1:{port}{listen_flags}; {server_directives}\n\
             location / {{ return 200 \"ok\\n\"; }} }} }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut child = Command::new(bin)
            .args([
                "-p",
                &d.to_string(),
                "-c",
                "nginx.conf",
                "-e",
                "error.log",
                "-g",
                "daemon off;",
            ])
            .spawn()
            .expect("starting nginx");
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if TcpStream::connect(&addr).is_ok() {
                return Some(Nginx { child, addr, dir });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nginx did not start on {addr}");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The committed JSON schema accepts `doc` (scenario `endpoints` rows included), and is
/// strict about the rows: a row without its name is refused.
pub fn assert_schema_valid(doc: &serde_json::Value) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/report.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    if let Some(row) = doc["endpoints"][0].as_object() {
        let mut broken = doc.clone();
        let mut row = row.clone();
        row.remove("name");
        broken["endpoints"][0] = row.into();
        assert!(!v.is_valid(&broken));
    }
}

/// Headless Chromium driven by playwright-core from `generator/tests/ui`.
pub struct Browser {
    chromium: PathBuf,
    dir: PathBuf,
}

impl Browser {
    /// The browser, or `None` with the reason printed (`cargo xtask ci` installs chromium,
    /// node and `npm install --prefix generator/tests/ui`).
    pub fn find() -> Option<Browser> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        let have_node = Command::new("node").arg("--version").output().is_ok();
        let have_pw = dir.join("node_modules/playwright-core").exists();
        match (chromium, have_node, have_pw) {
            (Some(chromium), true, true) => Some(Browser { chromium, dir }),
            (chromium, _, _) => {
                eprintln!(
                    "skipping: needs chromium ({chromium:?}), node ({have_node}) and \
                     playwright-core ({have_pw}; npm install --prefix generator/tests/ui)"
                );
                None
            }
        }
    }

    /// Runs `node SCRIPT ARGS` from tests/ui (bounded by `timeout_s`); asserts it succeeded
    /// and printed `ok_marker`.
    pub fn run<S: AsRef<std::ffi::OsStr>>(
        &self,
        timeout_s: u32,
        script: &str,
        args: &[S],
        ok_marker: &str,
    ) {
        let out = Command::new("timeout")
            .arg(timeout_s.to_string())
            .args(["node", script])
            .args(args)
            .env("CHROMIUM", &self.chromium)
            .current_dir(&self.dir)
            .output()
            .expect("running node");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{log}");
        assert!(log.contains(ok_marker), "{log}");
    }
}

/// One request as the recording server saw it: connection number, path, body.
pub type Seen = (usize, String, Vec<u8>);

/// A keep-alive HTTP/1.1 server that answers every request `200 ok` and records it.
pub fn recording_server() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(s) = stream else { continue };
            let log = log.clone();
            std::thread::spawn(move || serve(n, s, &log));
        }
    });
    (addr, seen)
}

fn serve(conn: usize, mut s: TcpStream, log: &Mutex<Vec<Seen>>) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        // Parse every complete request in the buffer.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(head)) = req.parse(&buf) else {
                break;
            };
            let len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| {
                    std::str::from_utf8(h.value).unwrap().parse().unwrap()
                });
            if buf.len() < head + len {
                break;
            }
            let path = req.path.unwrap_or("").to_string();
            log.lock()
                .unwrap()
                .push((conn, path, buf[head..head + len].to_vec()));
            buf.drain(..head + len);
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
