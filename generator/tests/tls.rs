//! https targets end to end: gen against sample-webapp `--tls` and nginx with `ssl`, on
//! 127.0.0.1 only. Counts are checked against the server's own, certificate checks both
//! ways, client certificates, and session resumption across server-forced reconnects.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{count, gen, gen_json, Nginx, Webapp};
use serde_json::Value;

/// A scratch directory for certificate files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("gen-tls-it-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for localhost/127.0.0.1 written as `{name}.pem` and
/// `{name}-key.pem`.
fn self_signed(dir: &Dir, name: &str) {
    let names = ["localhost", "127.0.0.1"].map(String::from).to_vec();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    std::fs::write(dir.path(&format!("{name}.pem")), ck.cert.pem()).unwrap();
    std::fs::write(
        dir.path(&format!("{name}-key.pem")),
        ck.signing_key.serialize_pem(),
    )
    .unwrap();
}

/// sample-webapp over TLS with its generated certificate written to `dir/server.pem`.
fn tls_webapp(dir: &Dir, extra: &[&str]) -> Webapp {
    let out = dir.s("server.pem");
    let mut args = vec!["--tls", "--tls-cert-out", &out];
    args.extend_from_slice(extra);
    Webapp::start(&args)
}

/// `GET path` over TLS trusting `ca` (the webapp's own stats endpoint).
fn https_get(addr: &str, path: &str, ca: &Path) -> String {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for c in rustls_pemfile_certs(&pem) {
        roots.add(c).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    // The webapp closes without close_notify after `Connection: close`: EOF is the end.
    let _ = tls.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}

fn stats(app: &Webapp, dir: &Dir) -> Value {
    serde_json::from_str(&https_get(&app.addr, "/_stats", &dir.path("server.pem"))).unwrap()
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

fn errors(r: &Value, kind: &str) -> u64 {
    r["errors"][kind].as_u64().unwrap()
}

/// A run expected to fail: exit code 1 and the JSON report.
fn gen_failing(args: &[&str]) -> Value {
    let mut v = args.to_vec();
    v.push("--json");
    let out = gen(&v);
    assert_eq!(
        out.status.code(),
        Some(1),
        "gen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// Over `--cacert` with the server's generated certificate, closed and open loop: every
/// request gen counts, the server counts; each connection handshakes once and the
/// handshake time is reported.
#[test]
fn https_counts_match_the_server() {
    let dir = Dir::new("counts");
    let app = tls_webapp(&dir, &[]);
    let url = format!("https://localhost:{}/", port(&app.addr));
    let ca = dir.s("server.pem");
    let r = gen_json(&["--cacert", &ca, "-c", "8", "-n", "3000", &url]);
    assert_eq!(count(&r, "successful"), 3000);
    assert_eq!(count(&r, "errors"), 0);
    assert_eq!(r["latency"]["tls_handshake_time"]["count"], 8);
    assert!(
        r["latency"]["tls_handshake_time"]["p50_us"]
            .as_u64()
            .unwrap()
            > 0
    );
    let r2 = gen_json(&[
        "--cacert",
        &ca,
        "--rate",
        "1000",
        "--duration",
        "1s",
        "-c",
        "8",
        &url,
    ]);
    assert_eq!(count(&r2, "successful"), 1000);
    assert_eq!(count(&r2, "errors") + count(&r2, "dropped"), 0);
    let s = stats(&app, &dir);
    assert_eq!(s["requests"], 4000, "{s}");
    // 16 from gen, 1 from the stats request itself.
    assert_eq!(s["tls"]["handshakes"], 17, "{s}");
    assert_eq!(s["tls"]["failed"], 0, "{s}");
}

/// `--insecure` accepts the self-signed server; without it, neither the system store nor a
/// wrong `--cacert` does: every handshake is counted as a `tls` error, nothing reaches the
/// server, exit code 1.
#[test]
fn certificate_checks_insecure_system_store_and_wrong_ca() {
    let dir = Dir::new("verify");
    let app = tls_webapp(&dir, &[]);
    self_signed(&dir, "other");
    let url = format!("https://127.0.0.1:{}/", port(&app.addr));
    let r = gen_json(&["--insecure", "-c", "2", "-n", "200", &url]);
    assert_eq!(count(&r, "successful"), 200);

    let other = dir.s("other.pem");
    for args in [
        vec!["--cacert", &other, "-c", "2", "--duration", "500ms", &url],
        vec!["-c", "2", "--duration", "500ms", &url],
    ] {
        let r = gen_failing(&args);
        assert_eq!(count(&r, "successful"), 0);
        assert!(errors(&r, "tls") >= 2, "{args:?}: {}", r["errors"]);
        assert_eq!(errors(&r, "tls"), count(&r, "errors"), "{}", r["errors"]);
        assert_eq!(r["latency"]["tls_handshake_time"]["count"], 0);
        // Failed handshakes are retried with the connect backoff, not in a tight loop.
        assert!(errors(&r, "tls") < 100, "{}", r["errors"]);
    }
    let s = stats(&app, &dir);
    assert_eq!(s["requests"], 200, "{s}");
    assert!(s["tls"]["failed"].as_u64().unwrap() >= 4, "{s}");
}

/// A server requiring client certificates: without `--cert/--key` every request fails
/// (counted, exit 1); with them, all succeed.
#[test]
fn client_certificate_required_by_the_server() {
    let dir = Dir::new("mtls");
    self_signed(&dir, "client");
    let client_ca = dir.s("client.pem");
    let app = tls_webapp(&dir, &["--tls-client-ca", &client_ca]);
    let url = format!("https://localhost:{}/", port(&app.addr));
    let ca = dir.s("server.pem");
    let key = dir.s("client-key.pem");
    let r = gen_json(&[
        "--cacert", &ca, "--cert", &client_ca, "--key", &key, "-c", "4", "-n", "500", &url,
    ]);
    assert_eq!(count(&r, "successful"), 500);
    assert_eq!(count(&r, "errors"), 0);

    let r = gen_failing(&["--cacert", &ca, "-c", "2", "--duration", "500ms", &url]);
    assert_eq!(count(&r, "successful"), 0);
    // TLS 1.3: the client's handshake is done before the server judges its (missing)
    // certificate; the server's alert then fails the first request as a TLS error.
    assert!(errors(&r, "tls") >= 1, "{}", r["errors"]);
}

/// nginx with `ssl` closing every connection after 5 requests: gen reconnects, loses
/// nothing, and the reconnects resume their sessions (TLS 1.3 tickets, per-thread cache).
#[test]
fn reconnects_over_tls_resume_sessions() {
    let dir = Dir::new("nginx");
    self_signed(&dir, "nginx");
    let Some(nginx) = Nginx::start_tls(
        "keepalive_requests 5;",
        &dir.path("nginx.pem"),
        &dir.path("nginx-key.pem"),
        "",
    ) else {
        return;
    };
    let url = format!("https://localhost:{}/", port(&nginx.addr));
    let ca = dir.s("nginx.pem");
    let r = gen_json(&[
        "--cacert",
        &ca,
        "-c",
        "4",
        "--threads",
        "1",
        "-n",
        "2000",
        &url,
    ]);
    assert_eq!(count(&r, "successful"), 2000);
    assert_eq!(count(&r, "errors"), 0);
    let handshakes = r["latency"]["tls_handshake_time"]["count"]
        .as_u64()
        .unwrap();
    assert!(handshakes >= 390, "about 400 connections: {handshakes}");
    let resumed = count(&r, "tls_resumed");
    // Only the first connections have nothing to resume.
    assert!(
        resumed + 8 >= handshakes,
        "{resumed} of {handshakes} resumed"
    );
}
