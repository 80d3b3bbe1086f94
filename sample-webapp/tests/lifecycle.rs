//! Startup line, flag errors, `/_stats` accounting and graceful shutdown.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Conn, Server};

#[test]
fn prints_the_real_port() {
    let server = Server::start(&[]);
    assert!(server.addr.ip().is_loopback());
    assert_ne!(server.addr.port(), 0);
}

#[test]
fn bad_flags_give_one_line_and_exit_2() {
    for (args, needle) in [
        (&["--delay", "2x"][..], "2x"),
        (&["--delay", "-1ms"], "-1ms"),
        (&["--delay-dist", "gauss:1ms"], "gauss:1ms"),
        (&["--delay-dist", "uniform:3ms..1ms"], "uniform:3ms..1ms"),
        (&["--error-rate", "2"], "'2'"),
        (&["--workers", "0"], "'0'"),
        (&["--max-concurrency", "many"], "many"),
        (&["--listen", "localhost"], "localhost"),
        (&["--stall-signal-ms", "1s"], "1s"),
        (&["--frobnicate"], "--frobnicate"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sample-webapp"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn listen_failure_is_an_error_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // SO_REUSEADDR does not allow two listeners on one port.
    let out = Command::new(env!("CARGO_BIN_EXE_sample-webapp"))
        .args(["--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn stats_count_what_was_sent() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let mut body_bytes = 0;
    let mut count = |resp: common::Response| body_bytes += resp.body.len();
    for _ in 0..5 {
        count(conn.get("/"));
    }
    for i in 0..3 {
        count(conn.post_form("/login", &format!("deviceid={i}")));
    }
    for i in 0..7 {
        count(conn.get(&format!("/metrics?deviceid={i}&timestamp=t")));
    }
    for _ in 0..2 {
        count(conn.get("/missing"));
    }
    count(conn.post_form("/", "x=1"));
    count(conn.request(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")); // no body bytes served
                                                                // The stats and admin endpoints are not counted.
    server.stats();
    server.stats();

    let stats = server.stats();
    assert_eq!(stats["requests"], 5 + 3 + 7 + 2 + 1 + 1);
    assert_eq!(stats["bytes"], body_bytes);
    assert_eq!(stats["paths"]["/"], 5 + 1 + 1);
    assert_eq!(stats["paths"]["/login"], 3);
    assert_eq!(stats["paths"]["/metrics"], 7);
    assert_eq!(stats["paths"]["other"], 2);
    assert_eq!(stats["status"]["200"], 5 + 3 + 7 + 1);
    assert_eq!(stats["status"]["404"], 2);
    assert_eq!(stats["status"]["405"], 1);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["errors_injected"], 0);
    assert_eq!(stats["delayed"], 0);
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits() {
    let mut server = Server::start(&["--delay", "300ms"]);
    let mut idle = server.connect();
    assert_eq!(idle.get("/login?delay_ms=0").status, 200);
    let mut busy = server.connect();
    busy.send(b"GET /login?deviceid=last HTTP/1.1\r\nHost: t\r\n\r\n");
    let start = Instant::now();
    while server.stats()["in_flight"] != 1 {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(2));
    }
    server.signal(libc::SIGTERM);
    // New connections are refused while the in-flight request is still being delayed
    // (give the signal a moment to arrive).
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "still accepting after SIGTERM"
    );
    // The idle keep-alive connection is closed; the busy one gets its full response.
    assert!(idle.is_closed());
    let resp = busy.read_response(false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "/login - device: last\n");
    assert_eq!(resp.header("connection"), Some("close"));
    let status = server.wait_exit(Duration::from_secs(3));
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigint_exits_cleanly() {
    let mut server = Server::start(&[]);
    assert_eq!(server.connect().get("/").status, 200);
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(3));
    assert!(status.success(), "{status:?}");
}

#[test]
fn shutdown_is_bounded() {
    let mut server = Server::start(&[]);
    let mut conn = server.connect();
    let resp = conn.request(b"POST /_admin/stall?ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 200);
    let mut stuck = Conn::new(server.addr);
    stuck.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    while server.stats()["in_flight"] != 1 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let start = Instant::now();
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(10));
    let took = start.elapsed();
    assert!(
        (Duration::from_millis(4500)..Duration::from_secs(8)).contains(&took),
        "exited after {took:?}"
    );
}
