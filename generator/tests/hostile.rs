//! Hostile and failing servers: small misbehaving servers on 127.0.0.1 (std threads), each
//! hit with a bounded run. For every one: gen does not panic or hang past its timeout, each
//! failure is counted under the right error kind, every request is accounted for, and the
//! report is complete (it validates against the JSON schema). See docs/hostile.md.
//!
//! The tests run on whichever driver `GEN_IO` selects; CI runs them on both.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

/// A server that runs `handle(stream, n)` for the n-th accepted connection (from 0) on a
/// thread of its own. Connection threads end when gen closes the socket or after a 10 s
/// read timeout; the accept thread ends when the server is dropped.
struct Hostile {
    addr: String,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Hostile {
    fn start(handle: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let handle = Arc::new(handle);
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_nodelay(true).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let n = accepted2.fetch_add(1, Ordering::Relaxed);
                        let h = handle.clone();
                        std::thread::spawn(move || h(s, n));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Hostile {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read one request head (gen's requests here have no body); false at EOF or error.
fn read_request(s: &mut TcpStream) -> bool {
    let mut buf = Vec::with_capacity(256);
    let mut byte = [0u8; 512];
    loop {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                buf.extend_from_slice(&byte[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    return true;
                }
            }
        }
    }
}

/// Answer every request on the connection with `response`.
fn serve_each(mut s: TcpStream, response: &[u8]) {
    while read_request(&mut s) {
        if s.write_all(response).is_err() {
            return;
        }
    }
}

/// Hold the connection until the peer closes it (or the read timeout).
fn hold(mut s: TcpStream) {
    let mut sink = [0u8; 1024];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

struct Run {
    code: i32,
    r: serde_json::Value,
    stderr: String,
    elapsed: Duration,
}

/// Run gen with `--json`; the report must be complete whatever the exit code.
fn run(args: &[&str]) -> Run {
    let t0 = Instant::now();
    let out = std::process::Command::new(gen_bin())
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("running gen");
    let elapsed = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or_else(|| {
        panic!("gen was killed by a signal (panic?): {stderr}");
    });
    assert!(!stderr.contains("panicked"), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); exit {code}; stderr: {stderr}"));
    assert_complete(&r, code);
    Run {
        code,
        r,
        stderr,
        elapsed,
    }
}

fn assert_complete(r: &serde_json::Value, code: i32) {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/report.schema.json")).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errs: Vec<String> = v.iter_errors(r).map(|e| e.to_string()).collect();
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(r["exit_code"], code);
    assert_eq!(r["run"]["driver"], expected_driver());
}

fn err(r: &serde_json::Value, kind: &str) -> u64 {
    r["errors"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("errors.{kind} missing"))
}

/// Every request sent ended as a response or as a request error (connect errors are not
/// requests: they happen before one is assigned to the connection).
fn assert_all_accounted(r: &serde_json::Value) {
    let ended = count(r, "responses")
        + ["reset", "closed", "parse", "timeout"]
            .iter()
            .map(|k| err(r, k))
            .sum::<u64>();
    assert_eq!(ended, count(r, "sent"), "{}", r["errors"]);
}

/// A closed-loop run of exactly `n` requests over 2 connections on one thread.
fn closed(url: &str, n: u32, timeout: &str) -> Run {
    run(&[
        "-c",
        "2",
        "--threads",
        "1",
        "-n",
        &n.to_string(),
        "--timeout",
        timeout,
        url,
    ])
}

/// A closed-loop run of `n` requests of which every one must fail as `kind`.
fn every_request_fails_as(srv: &Hostile, n: u32, timeout: &str, kind: &str) -> Run {
    let x = closed(&srv.url(), n, timeout);
    assert_eq!(x.code, 1, "{}", x.stderr);
    assert_eq!(err(&x.r, kind), u64::from(n), "{}", x.r["errors"]);
    assert_eq!(count(&x.r, "responses"), 0);
    assert_all_accounted(&x.r);
    x
}

/// Answer the first request with `bytes`, then hold the connection open or close it.
fn answer_once(mut s: TcpStream, bytes: &[u8], then_hold: bool) {
    if read_request(&mut s) && s.write_all(bytes).is_ok() && then_hold {
        hold(s);
    }
}

const SHORT_BODY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort";

#[test]
fn garbage_instead_of_http_is_a_parse_error() {
    let srv = Hostile::start(|s, _| serve_each(s, b"SSH-2.0-OpenSSH_9.2\r\n\x00\xff\xfe\r\n\r\n"));
    let x = every_request_fails_as(&srv, 20, "2s", "parse");
    assert_eq!(count(&x.r, "sent"), 20);
}

#[test]
fn status_line_split_across_many_reads_still_parses() {
    let srv = Hostile::start(|mut s, _| {
        while read_request(&mut s) {
            // One byte per write, with pauses, so the client sees many small reads.
            for (i, b) in OK.iter().enumerate() {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                if i % 4 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    });
    let x = closed(&srv.url(), 20, "5s");
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_eq!(count(&x.r, "successful"), 20);
    assert_eq!(count(&x.r, "errors"), 0);
    assert_eq!(count(&x.r, "bytes_received"), 20 * OK.len() as u64);
}

#[test]
fn headers_over_64_kib_are_a_parse_error() {
    let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
    while resp.len() < 70 * 1024 {
        resp.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    resp.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let srv = Hostile::start(move |s, _| serve_each(s, &resp));
    every_request_fails_as(&srv, 10, "2s", "parse");
}

#[test]
fn body_shorter_than_content_length_then_close_is_closed() {
    let srv = Hostile::start(|s, _| answer_once(s, SHORT_BODY, false));
    every_request_fails_as(&srv, 10, "2s", "closed");
}

#[test]
fn body_shorter_than_content_length_kept_open_times_out() {
    let srv = Hostile::start(|s, _| answer_once(s, SHORT_BODY, true));
    let x = every_request_fails_as(&srv, 4, "300ms", "timeout");
    assert!(x.elapsed < Duration::from_secs(10), "took {:?}", x.elapsed);
}

#[test]
fn body_longer_than_content_length_succeeds_on_a_fresh_connection() {
    let srv = Hostile::start(|s, _| {
        serve_each(
            s,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA-BYTES",
        )
    });
    let x = closed(&srv.url(), 20, "2s");
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_eq!(count(&x.r, "successful"), 20);
    assert_eq!(count(&x.r, "errors"), 0);
    // Bytes nobody asked for make a connection untrusted: each response costs a connect
    // (the two before the clock started are not in the report).
    assert!(srv.accepted() >= 20, "accepted {}", srv.accepted());
}

#[test]
fn broken_chunked_encoding_is_a_parse_error() {
    let srv = Hostile::start(|s, _| {
        serve_each(
            s,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n",
        )
    });
    every_request_fails_as(&srv, 10, "2s", "parse");
}

#[test]
fn connection_close_on_every_response_reconnects_and_loses_nothing() {
    let srv = Hostile::start(|mut s, _| {
        if read_request(&mut s) {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let x = closed(&srv.url(), 50, "2s");
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_eq!(count(&x.r, "successful"), 50);
    assert_eq!(count(&x.r, "errors"), 0);
    assert!(srv.accepted() >= 50);
}

#[test]
fn rst_mid_response_is_a_reset() {
    let srv = Hostile::start(|mut s, _| {
        if read_request(&mut s) {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
            std::thread::sleep(Duration::from_millis(20));
            // Linger 0: close sends RST instead of FIN.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    });
    every_request_fails_as(&srv, 10, "2s", "reset");
}

#[test]
fn accept_then_never_answer_times_out_without_hanging() {
    let srv = Hostile::start(|s, _| hold(s));
    let x = run(&[
        "--rate",
        "20",
        "--duration",
        "1s",
        "--timeout",
        "500ms",
        "-c",
        "4",
        "--threads",
        "1",
        &srv.url(),
    ]);
    assert_eq!(x.code, 1);
    assert_eq!(count(&x.r, "responses"), 0);
    // Each of the 20 scheduled requests timed out: in flight on one of the 4 connections
    // or waiting in the queue for one.
    assert_eq!(err(&x.r, "timeout"), 20, "{}", x.r["errors"]);
    assert_eq!(count(&x.r, "dropped"), 0);
    // 1 s of schedule + 0.5 s timeout + process start; a hang would take far longer.
    assert!(x.elapsed < Duration::from_secs(10), "took {:?}", x.elapsed);
}

#[test]
fn a_server_closing_every_third_connection_costs_only_the_requests_on_them() {
    let srv = Hostile::start(|s, n| {
        if n % 3 == 2 {
            drop(s);
        } else {
            serve_each(s, OK);
        }
    });
    let x = run(&["-c", "4", "--threads", "1", "-n", "300", &srv.url()]);
    assert_eq!(count(&x.r, "sent"), 300);
    assert!(count(&x.r, "successful") > 0);
    assert_eq!(err(&x.r, "parse") + err(&x.r, "timeout"), 0);
    assert_all_accounted(&x.r);
    // Connections closed by the server are reopened (4 at the start and more since).
    assert!(srv.accepted() > 4);
}

#[test]
fn slowloris_response_hits_the_timeout() {
    let srv = Hostile::start(|mut s, _| {
        if read_request(&mut s) {
            for b in OK {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let x = every_request_fails_as(&srv, 4, "400ms", "timeout");
    assert!(x.elapsed < Duration::from_secs(10), "took {:?}", x.elapsed);
}

#[test]
fn connection_refused_is_a_connect_error() {
    // A port just released by a listener: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let x = run(&[
        "--rate",
        "50",
        "--duration",
        "1s",
        "--timeout",
        "300ms",
        "--threads",
        "1",
        &url,
    ]);
    assert_eq!(x.code, 1);
    assert!(err(&x.r, "connect") > 0);
    assert_eq!(count(&x.r, "sent"), 0);
    assert_eq!(err(&x.r, "timeout") + count(&x.r, "dropped"), 50);
    assert!(
        x.stderr.contains("connections could be opened"),
        "{}",
        x.stderr
    );
}

/// Decision: a name that does not resolve is a failed run, not bad input. The run goes on,
/// every connection attempt is counted as a connect error, the report is complete and the
/// exit code is 1, exactly as for a refused connection; one stderr line names the host.
#[test]
fn unresolvable_host_is_a_connect_error_with_a_complete_report() {
    let x = run(&[
        "--rate",
        "20",
        "--duration",
        "1s",
        "--timeout",
        "300ms",
        "http://no-such-host.invalid:8080/",
    ]);
    assert_eq!(x.code, 1);
    assert!(err(&x.r, "connect") > 0);
    assert_eq!(err(&x.r, "timeout") + count(&x.r, "dropped"), 20);
    assert!(
        x.stderr.contains("no-such-host.invalid") && x.stderr.contains("connect error"),
        "{}",
        x.stderr
    );
}

/// Out of file descriptors: with a hard limit of 48 a pool of 100 cannot be opened. gen
/// says so in one line, counts the failed opens as connect errors and measures with the
/// connections it has.
#[test]
fn running_out_of_file_descriptors_is_said_and_counted() {
    use std::os::unix::process::CommandExt;
    let srv = Hostile::start(|s, _| serve_each(s, OK));
    let mut cmd = std::process::Command::new(gen_bin());
    cmd.args([
        "-c",
        "100",
        "--threads",
        "1",
        "-n",
        "500",
        "--json",
        "--quiet",
        &srv.url(),
    ]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("running gen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().expect("exit code");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_complete(&r, code);
    assert!(
        stderr.contains("pool of 100 connections cannot be opened")
            && stderr.contains("open-file limit is 48"),
        "{stderr}"
    );
    assert!(err(&r, "connect") > 0, "{}", r["errors"]);
    assert_eq!(count(&r, "successful"), 500);
    assert_eq!(code, 0);
}

/// Out of ephemeral ports: in a private network namespace whose local port range holds 10
/// ports, a pool of 40 cannot be opened. gen says so in one line, counts the failed opens as
/// connect errors (EADDRNOTAVAIL) and measures with the 10 it has. The namespace keeps the
/// experiment away from every other process's ports.
#[test]
fn running_out_of_ephemeral_ports_is_said_and_counted() {
    let probe = std::process::Command::new("unshare")
        .args(["-n", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipping: cannot create a network namespace (unshare -n needs root)");
        return;
    }
    let webapp = webapp_bin();
    // The server runs inside the namespace too, and is killed by PID before it exits.
    let script = format!(
        "ip link set lo up && sysctl -qw net.ipv4.ip_local_port_range='40000 40009' || exit 97\n\
         {webapp} --listen 127.0.0.1:18080 >/dev/null & app=$!\n\
         i=0; until (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null; do\n\
           i=$((i+1)); [ $i -gt 100 ] && {{ kill $app; exit 98; }}; sleep 0.05; done\n\
         {gen} -c 40 --threads 1 -n 300 --timeout 3s --json --quiet http://127.0.0.1:18080/\n\
         rc=$?; kill $app; wait $app; exit $rc\n",
        webapp = webapp.display(),
        gen = gen_bin().display(),
    );
    let out = std::process::Command::new("timeout")
        .args(["60", "unshare", "-n", "bash", "-c", &script])
        .output()
        .expect("running unshare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().expect("exit code");
    assert!(
        code != 97 && code != 98,
        "namespace setup failed ({code}): {stderr}"
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}), exit {code}: {stderr}"));
    assert_complete(&r, code);
    // At most 10 ports, fewer if the readiness probe's port is still in TIME_WAIT.
    let opened: u32 = stderr
        .split("only ")
        .nth(1)
        .and_then(|t| t.split(" of 40 connections could be opened").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pool line: {stderr}"));
    assert!((1..=10).contains(&opened), "{stderr}");
    assert!(
        err(&r, "connect") >= u64::from(40 - opened),
        "{}",
        r["errors"]
    );
    assert_eq!(count(&r, "successful"), 300);
    assert_all_accounted(&r);
    assert_eq!(code, 0);
}
