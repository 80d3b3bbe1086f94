//! How many heap allocations the client side of TLS makes per request once connected:
//! `TlsSession` sealing a request into its buffer and opening a response from its buffer,
//! against an in-memory rustls server. Only the client's calls are counted (a thread-local
//! switch around them). The figure is rustls' own (docs/tls.md): gen's code adds none.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use generator::http::tls::{Status, TlsClient, TlsOptions, TlsSession};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn counted<T>(f: impl FnOnce() -> T) -> T {
    ON.with(|c| c.set(true));
    let r = f();
    ON.with(|c| c.set(false));
    r
}

fn to_server(c: &mut TlsSession, s: &mut rustls::ServerConnection) {
    let mut tx = c.tx();
    while !tx.is_empty() {
        s.read_tls(&mut tx).unwrap();
    }
    c.sent_all();
    s.process_new_packets().unwrap();
}

fn to_client(s: &mut rustls::ServerConnection, c: &mut TlsSession) -> usize {
    let mut wire = Vec::new();
    while s.wants_write() {
        s.write_tls(&mut wire).unwrap();
    }
    let (ptr, len) = c.rx_space();
    assert!(wire.len() <= len);
    // SAFETY: `ptr` points at `len` writable bytes of the session's inbound buffer.
    unsafe { std::ptr::copy_nonoverlapping(wire.as_ptr(), ptr, wire.len()) };
    c.received(wire.len());
    wire.len()
}

#[test]
fn client_allocations_per_request_once_connected() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key: PrivateKeyDer = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into();
    let server_cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap(),
    );
    let client = TlsClient::new(
        &TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        },
        "localhost",
    )
    .unwrap();
    let req = b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 60\r\n\r\ndeviceid=0b0c4d5e-aaaa-bbbb-cccc-0123456789ab&timestamp=12345";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 70\r\n\r\n/metrics - device: 0b0c4d5e-aaaa-bbbb-cccc-0123456789ab, timestamp: 1\n";
    let mut c = TlsSession::new(req.len());
    let mut s = rustls::ServerConnection::new(server_cfg).unwrap();
    c.start(&client).unwrap();
    let mut open = false;
    for _ in 0..8 {
        to_server(&mut c, &mut s);
        to_client(&mut s, &mut c);
        open = c.drive(None, |_| true).unwrap() == Status::Open;
        if open && c.tx().is_empty() {
            break;
        }
    }
    assert!(open);
    to_server(&mut c, &mut s);
    to_client(&mut s, &mut c); // session tickets
    assert_eq!(c.drive(None, |_| true), Ok(Status::Open));

    let n = 1000u64;
    let mut got = vec![0u8; req.len()];
    ALLOCS.store(0, Ordering::Relaxed);
    for i in 0..n + 10 {
        if i == 10 {
            // The first few requests warm up nothing of ours, but let caches settle.
            ALLOCS.store(0, Ordering::Relaxed);
        }
        counted(|| c.drive(Some(req), |_| true)).unwrap();
        to_server(&mut c, &mut s);
        s.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got[..], &req[..]);
        s.writer().write_all(resp).unwrap();
        to_client(&mut s, &mut c);
        let mut plain = 0;
        let st = counted(|| {
            c.drive(None, |d| {
                plain += d.len();
                false
            })
        });
        assert_eq!(st, Ok(Status::Open));
        assert_eq!(plain, resp.len());
    }
    let per_request = ALLOCS.load(Ordering::Relaxed) as f64 / n as f64;
    println!("client-side TLS allocations per request: {per_request:.2}");
    // rustls 0.23: one Vec per record sealed and one per record opened; none of ours.
    assert!(per_request <= 2.0, "{per_request} allocations per request");
    assert!(per_request >= 1.0, "counting works: {per_request}");
}
