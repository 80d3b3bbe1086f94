//! Byte-exact responses, compared with what the tutorial's Flask app (Flask 3.1.3,
//! Werkzeug 3.1.8) returns for the same requests.

mod common;

use common::{Conn, Server};

const HTML: &str = "text/html; charset=utf-8";
const ROOT: &str = "Welcome to the \"Distributed Load Testing Using Kubernetes\" sample web app\n";

fn ok(resp: &common::Response, body: &str) {
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("content-type"), Some(HTML));
    assert_eq!(resp.text(), body);
}

fn post(conn: &mut Conn, target: &str, content_type: &str, body: &[u8]) -> common::Response {
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    conn.request(&raw)
}

#[test]
fn root() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let resp = conn.get("/");
    ok(&resp, ROOT);
    assert_eq!(resp.header("content-length"), Some("74"));
    // Query strings are ignored on `/`.
    ok(&conn.get("/?deviceid=1"), ROOT);
}

#[test]
fn login_and_metrics_from_query_string() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    ok(
        &conn.get("/login?deviceid=0b7c6a4e-1c2d-4a5b-8c9d-0e1f2a3b4c5d"),
        "/login - device: 0b7c6a4e-1c2d-4a5b-8c9d-0e1f2a3b4c5d\n",
    );
    ok(
        &conn.get("/metrics?deviceid=d1&timestamp=2024-01-01+12%3A00%3A00.123456"),
        "/metrics - device: d1, timestamp: 2024-01-01 12:00:00.123456\n",
    );
}

#[test]
fn login_and_metrics_from_form_body() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    ok(
        &conn.post_form("/login", "deviceid=abc"),
        "/login - device: abc\n",
    );
    ok(
        &conn.post_form(
            "/metrics",
            "deviceid=abc&timestamp=2024-01-01+12%3A00%3A00.123456",
        ),
        "/metrics - device: abc, timestamp: 2024-01-01 12:00:00.123456\n",
    );
    // The content type's case and parameters do not matter; another type is not a form.
    let form = "Application/X-WWW-Form-Urlencoded; charset=latin1";
    ok(
        &post(&mut conn, "/login", form, b"deviceid=x"),
        "/login - device: x\n",
    );
    ok(
        &post(&mut conn, "/login", "text/plain", b"deviceid=x"),
        "/login - device: None\n",
    );
    // A body that is not UTF-8 before decoding is no form at all (Werkzeug).
    ok(
        &post(
            &mut conn,
            "/login",
            "application/x-www-form-urlencoded",
            b"deviceid=\xff",
        ),
        "/login - device: None\n",
    );
}

#[test]
fn missing_parameters_print_none() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    ok(&conn.get("/login"), "/login - device: None\n");
    ok(
        &conn.get("/metrics"),
        "/metrics - device: None, timestamp: None\n",
    );
    ok(
        &conn.get("/metrics?timestamp=t"),
        "/metrics - device: None, timestamp: t\n",
    );
    ok(
        &conn.post_form("/metrics", ""),
        "/metrics - device: None, timestamp: None\n",
    );
    // Present but empty is the empty string, not None.
    ok(&conn.get("/login?deviceid="), "/login - device: \n");
    ok(&conn.get("/login?deviceid"), "/login - device: \n");
}

#[test]
fn encoded_characters() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    for (query, device) in [
        ("deviceid=a%20b", "a b"),
        ("deviceid=a+b", "a b"),
        ("deviceid=a%2Bb", "a+b"),
        ("deviceid=%C3%A9t%C3%A9", "été"),
        ("deviceid=%E2%82%AC", "€"),
        ("deviceid=%FF", "%FF"),
        ("deviceid=%E2%82A", "%E2%82A"),
        ("deviceid=%zz%", "%zz%"),
        ("device%69d=x&deviceid=y", "x"),
        ("deviceid=first&deviceid=second", "first"),
        ("deviceid=a=b", "a=b"),
    ] {
        ok(
            &conn.get(&format!("/login?{query}")),
            &format!("/login - device: {device}\n"),
        );
        ok(
            &conn.post_form("/login", query),
            &format!("/login - device: {device}\n"),
        );
    }
}

#[test]
fn query_string_wins_over_body() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    ok(
        &conn.post_form("/login?deviceid=q", "deviceid=b"),
        "/login - device: q\n",
    );
    // Each key is looked up on its own: query for one, body for the other.
    ok(
        &conn.post_form("/metrics?timestamp=qt", "deviceid=bd&timestamp=bt"),
        "/metrics - device: bd, timestamp: qt\n",
    );
    // A GET's body is never read as a form (Werkzeug's request.values).
    let resp = conn.request(
        b"GET /login HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\ndeviceid=b",
    );
    ok(&resp, "/login - device: None\n");
}

#[test]
fn body_arriving_in_pieces() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send(
        b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 25\r\n\r\ndevice",
    );
    for piece in [&b"id=ab"[..], b"c&timestamp", b"=t1"] {
        std::thread::sleep(std::time::Duration::from_millis(20));
        conn.send(piece);
    }
    ok(
        &conn.read_response(false).unwrap(),
        "/metrics - device: abc, timestamp: t1\n",
    );
    // Chunked transfer encoding works too.
    conn.send(
        b"POST /login HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndevi\r\n7\r\nceid=zz\r\n0\r\n\r\n",
    );
    ok(&conn.read_response(false).unwrap(), "/login - device: zz\n");
}

#[test]
fn not_found_and_method_not_allowed() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let not_found = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n";
    for target in ["/nope", "/login/", "/LOGIN", "/metrics/x"] {
        let resp = conn.get(target);
        assert_eq!(resp.status, 404, "{target}");
        assert_eq!(resp.header("content-type"), Some(HTML));
        assert_eq!(resp.text(), not_found);
    }
    assert_eq!(conn.post_form("/nope", "a=b").status, 404);

    let not_allowed = "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n";
    let resp = conn.post_form("/", "a=b");
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(resp.header("content-type"), Some(HTML));
    assert_eq!(resp.text(), not_allowed);
    for method in ["PUT", "DELETE", "PATCH"] {
        let resp = conn.request(
            format!("{method} /login HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        assert_eq!(resp.status, 405, "{method}");
        assert_eq!(resp.header("allow"), Some("GET, HEAD, OPTIONS, POST"));
        assert_eq!(resp.text(), not_allowed);
    }
    // The connection survived all of that.
    ok(&conn.get("/"), ROOT);
}

#[test]
fn head_and_options() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let resp = conn.request(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some(HTML));
    assert_eq!(resp.header("content-length"), Some("74"));
    let resp = conn.request(b"HEAD /login?deviceid=abc HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.header("content-length"), Some("21"));
    // No body bytes followed: the next response on the connection parses cleanly.
    ok(&conn.get("/login?deviceid=abc"), "/login - device: abc\n");
    let resp = conn.request(b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("content-length"), Some("207"));

    let resp = conn.request(b"OPTIONS /login HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("allow"), Some("GET, HEAD, OPTIONS, POST"));
    assert_eq!(resp.header("content-length"), Some("0"));
    ok(&conn.get("/"), ROOT);
}

#[test]
fn percent_encoded_path_matches() {
    let server = Server::start(&[]);
    ok(
        &server.connect().get("/log%69n?deviceid=1"),
        "/login - device: 1\n",
    );
}

#[test]
fn keep_alive_and_pipelining() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    for i in 0..100 {
        ok(
            &conn.get(&format!("/login?deviceid={i}")),
            &format!("/login - device: {i}\n"),
        );
    }
    // Three pipelined requests in one write come back in order.
    conn.send(
        b"GET /login?deviceid=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /login?deviceid=2 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    ok(&conn.read_response(false).unwrap(), "/login - device: 1\n");
    ok(&conn.read_response(false).unwrap(), "/login - device: 2\n");
    ok(&conn.read_response(false).unwrap(), ROOT);
}

#[test]
fn oversized_body_is_413_and_bad_override_is_400() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let big = vec![b'a'; (1 << 20) + 1];
    let resp = post(
        &mut conn,
        "/login",
        "application/x-www-form-urlencoded",
        &big,
    );
    assert_eq!(resp.status, 413);
    assert!(resp.text().contains("413 Request Entity Too Large"));
    let mut conn = server.connect();
    for target in [
        "/login?delay_ms=abc",
        "/login?delay_ms=-1",
        "/login?delay_ms=1e9",
    ] {
        let resp = conn.get(target);
        assert_eq!(resp.status, 400, "{target}");
        assert!(resp.text().contains("delay_ms"));
    }
    let resp = conn.request(b"GET /login HTTP/1.1\r\nHost: t\r\nX-Delay-Ms: soon\r\n\r\n");
    assert_eq!(resp.status, 400);
}

#[test]
fn garbage_input_does_not_take_the_server_down() {
    let server = Server::start(&[]);
    for garbage in [
        &b"\x00\x01\x02\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /\r\n\r\n",
        b"POST /login HTTP/1.1\r\nContent-Length: zz\r\n\r\n",
        b"POST /login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let mut conn = server.connect();
        conn.send(garbage);
        let _ = conn.read_response(false);
    }
    ok(&server.connect().get("/"), ROOT);
}

#[test]
fn thousands_of_concurrent_connections() {
    let server = Server::start(&[]);
    let mut conns: Vec<Conn> = (0..2000).map(|_| server.connect()).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(format!("GET /login?deviceid={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        ok(
            &conn.read_response(false).unwrap(),
            &format!("/login - device: {i}\n"),
        );
    }
}
