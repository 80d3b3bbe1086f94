//! TLS for `https://` targets: rustls driven over in-memory buffers, so it runs on any driver.
//!
//! Two parts:
//! - [`TlsClient`]: the client configuration, built once at start-up from the flags
//!   (`--insecure`, `--cacert`, `--cert`/`--key`), with ALPN `http/1.1` and SNI from the URL's
//!   host. Each worker thread takes its own copy ([`TlsClient::for_thread`]) with its own
//!   session cache, so reconnects resume sessions without any lock shared between threads.
//! - [`TlsSession`]: one per connection slot. Sans-io: the driver receives ciphertext straight
//!   into the session's inbound buffer ([`TlsSession::rx_space`]) and sends from its outbound
//!   buffer ([`TlsSession::tx`]); [`TlsSession::drive`] runs rustls' unbuffered state machine
//!   over them (handshake messages, decryption, encryption of the pre-encoded request).
//!   Both buffers are allocated once per slot and reused across requests and reconnects.
//!
//! Why the unbuffered API: it encrypts the request straight into our buffer and decrypts
//! records in our buffer, with no intermediate queues to copy through. rustls 0.23 still
//! allocates one short-lived `Vec` per record it encrypts or decrypts internally (see
//! `docs/tls.md`); nothing else on the path allocates.
//!
//! Provider: ring. It builds with only a C compiler (aws-lc-rs needs more build time and,
//! on some targets, cmake), and its AES-GCM / ChaCha20 code is the same assembly class as
//! aws-lc's for the per-request (record) work that dominates a load test; handshakes, where
//! aws-lc-rs is faster, happen once per connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, UnbufferedClientConnection};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore, SignatureScheme};

/// TLS flags as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Accept any server certificate (signatures are still checked).
    pub insecure: bool,
    /// Trust only the certificates in this PEM file (instead of the system store).
    pub cacert: Option<PathBuf>,
    /// Client certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub key: Option<PathBuf>,
}

/// Why the TLS configuration cannot be built. Each message names the bad value.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what} {path} contains no PEM certificate")]
    NoCert { what: &'static str, path: PathBuf },
    #[error("CA file {path} has no usable certificate: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("--cert and --key go together (only {given} was given)")]
    CertWithoutKey { given: &'static str },
    #[error("client certificate {cert} with key {key} rejected: {source}")]
    ClientAuth {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("{host:?} is not a valid TLS server name")]
    ServerName { host: String },
    #[error(
        "no trusted root certificates in the system store (install ca-certificates, or give \
         --cacert FILE or --insecure)"
    )]
    NoRoots,
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client side of TLS for one target: configuration and server name.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

/// Sessions kept per thread for resumption (TLS 1.3 tickets are used once each).
const SESSIONS_PER_THREAD: usize = 1024;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsClient {
    /// Builds the configuration for `host` (a DNS name or an IP literal, IPv6 unbracketed).
    pub fn new(opts: &TlsOptions, host: &str) -> Result<TlsClient, TlsConfigError> {
        let server_name =
            ServerName::try_from(host.to_owned()).map_err(|_| TlsConfigError::ServerName {
                host: host.to_owned(),
            })?;
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        } else {
            builder.with_root_certificates(roots(opts.cacert.as_deref())?)
        };
        let mut config = match (&opts.cert, &opts.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err(TlsConfigError::CertWithoutKey { given: "--cert" }),
            (None, Some(_)) => return Err(TlsConfigError::CertWithoutKey { given: "--key" }),
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "client certificate")?;
                let der =
                    PrivateKeyDer::from_pem_file(key).map_err(|source| TlsConfigError::Read {
                        what: "client key",
                        path: key.clone(),
                        source,
                    })?;
                builder
                    .with_client_auth_cert(chain, der)
                    .map_err(|source| TlsConfigError::ClientAuth {
                        cert: cert.clone(),
                        key: key.clone(),
                        source,
                    })?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_THREAD);
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    /// A copy for one worker thread: the same settings with its own session cache, so
    /// resumption on reconnect never contends on a lock with another thread.
    pub fn for_thread(&self) -> TlsClient {
        let mut config = (*self.config).clone();
        config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_THREAD);
        TlsClient {
            config: Arc::new(config),
            server_name: self.server_name.clone(),
        }
    }

    fn connect(&self) -> Result<UnbufferedClientConnection, rustls::Error> {
        UnbufferedClientConnection::new(self.config.clone(), self.server_name.clone())
    }
}

fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsConfigError::Read {
            what,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCert {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// `--cacert FILE` alone (like curl), else the system store.
fn roots(cacert: Option<&Path>) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    match cacert {
        Some(path) => {
            for cert in read_certs(path, "CA file")? {
                store.add(cert).map_err(|e| TlsConfigError::BadCa {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            // Unreadable entries are skipped, as every TLS client does with the system store.
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(TlsConfigError::NoRoots);
            }
        }
    }
    Ok(store)
}

/// `--insecure`: any certificate chain is accepted, but handshake signatures are still
/// verified (so the handshake costs what a real one costs).
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Inbound ciphertext buffer: one maximal TLS record (16 KiB of plaintext plus up to 2 KiB
/// of expansion and the 5-byte header) always fits after the complete records before it are
/// consumed, so a receive can always make progress.
const IN_BUF: usize = 16 * 1024 + 2048 + 5 + 1024;
/// Outbound buffer floor: a handshake flight (client Finished, or a certificate chain).
const OUT_MIN: usize = 8 * 1024;
/// Record overhead bound per 16 KiB fragment (header, explicit nonce, tag, content type).
const RECORD_OVERHEAD: usize = 64;

/// Where [`TlsSession::drive`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The handshake needs more data from the server.
    Handshaking,
    /// The handshake is complete and every complete record received has been processed.
    Open,
    /// `on_data` asked to stop; call `drive` again later for the rest.
    Stopped,
    /// The server sent close_notify: no more data will come.
    PeerClosed,
}

/// Why a session failed (counted as [`crate::measure::ErrorKind::Tls`]).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TlsError {
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    #[error("no TLS session on this connection")]
    NotStarted,
    #[error("TLS record buffer full ({0} bytes needed)")]
    BufferFull(usize),
    #[error("TLS keys exhausted")]
    Exhausted,
}

/// The TLS state of one connection slot: rustls' connection (replaced on reconnect) and the
/// slot's ciphertext buffers (kept).
pub struct TlsSession {
    conn: Option<UnbufferedClientConnection>,
    /// Ciphertext received, `inb[..in_len]` not yet consumed by rustls.
    inb: Vec<u8>,
    in_len: usize,
    /// Ciphertext to send, `out[..out_len]`; the engine sends it and calls [`Self::sent_all`].
    out: Vec<u8>,
    out_len: usize,
}

impl TlsSession {
    /// Buffers for a slot that sends requests of `request_len` bytes.
    pub fn new(request_len: usize) -> TlsSession {
        let records = request_len / (16 * 1024) + 1;
        TlsSession {
            conn: None,
            inb: vec![0; IN_BUF],
            in_len: 0,
            out: vec![0; OUT_MIN.max(request_len + records * RECORD_OVERHEAD + 1024)],
            out_len: 0,
        }
    }

    /// A new TCP connection: start a handshake (the ClientHello lands in [`Self::tx`]).
    /// Allocates rustls' connection state: once per connection, not per request.
    pub fn start(&mut self, client: &TlsClient) -> Result<(), TlsError> {
        self.conn = Some(client.connect()?);
        self.in_len = 0;
        self.out_len = 0;
        self.drive(None, |_| true).map(|_| ())
    }

    /// Where the next receive should write ciphertext. Only valid while no receive is
    /// outstanding (the buffer is never moved or resized).
    pub fn rx_space(&mut self) -> (*mut u8, usize) {
        let len = self.inb.len() - self.in_len;
        // SAFETY: in_len <= inb.len(), so the pointer stays inside or one past the allocation.
        (unsafe { self.inb.as_mut_ptr().add(self.in_len) }, len)
    }

    /// `n` bytes of ciphertext arrived at [`Self::rx_space`].
    pub fn received(&mut self, n: usize) {
        self.in_len = (self.in_len + n).min(self.inb.len());
    }

    /// Ciphertext waiting to be sent.
    pub fn tx(&self) -> &[u8] {
        &self.out[..self.out_len]
    }

    /// Everything in [`Self::tx`] has been sent.
    pub fn sent_all(&mut self) {
        self.out_len = 0;
    }

    /// Whether the last handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| c.handshake_kind() == Some(HandshakeKind::Resumed))
    }

    /// Runs rustls over the ciphertext received so far: handshake messages are answered
    /// (appended to [`Self::tx`]), application data is handed to `on_data` record by record
    /// (it returns true to stop), and `send`, once the handshake allows it, is encrypted and
    /// appended to [`Self::tx`].
    pub fn drive(
        &mut self,
        mut send: Option<&[u8]>,
        mut on_data: impl FnMut(&[u8]) -> bool,
    ) -> Result<Status, TlsError> {
        let conn = self.conn.as_mut().ok_or(TlsError::NotStarted)?;
        loop {
            let UnbufferedStatus { mut discard, state } =
                conn.process_tls_records(&mut self.inb[..self.in_len]);
            let mut status = None;
            // The outbound buffer only grows while nothing in it waits to be sent, so a send
            // in flight never sees its memory move.
            let may_grow = self.out_len == 0;
            match state? {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec?;
                        discard += rec.discard;
                        if on_data(rec.payload) {
                            status = Some(Status::Stopped);
                            break;
                        }
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => loop {
                    match e.encode(&mut self.out[self.out_len..]) {
                        Ok(n) => {
                            self.out_len += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(s)) if may_grow => {
                            self.out.resize(s.required_size, 0);
                        }
                        Err(EncodeError::InsufficientSize(s)) => {
                            return Err(TlsError::BufferFull(s.required_size))
                        }
                        Err(EncodeError::AlreadyEncoded) => break,
                    }
                },
                // The bytes stay in `out` until the engine has sent them, in order.
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::BlockedHandshake => status = Some(Status::Handshaking),
                ConnectionState::WriteTraffic(mut w) => {
                    if let Some(plain) = send.take() {
                        loop {
                            match w.encrypt(plain, &mut self.out[self.out_len..]) {
                                Ok(n) => {
                                    self.out_len += n;
                                    break;
                                }
                                Err(EncryptError::InsufficientSize(s)) if may_grow => {
                                    self.out.resize(s.required_size, 0);
                                }
                                Err(EncryptError::InsufficientSize(s)) => {
                                    return Err(TlsError::BufferFull(s.required_size))
                                }
                                Err(EncryptError::EncryptExhausted) => {
                                    return Err(TlsError::Exhausted)
                                }
                            }
                        }
                    }
                    status = Some(Status::Open);
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    status = Some(Status::PeerClosed)
                }
                // Early data is a server-side state; anything newer is not understood.
                _ => return Err(TlsError::Rustls(rustls::Error::HandshakeNotComplete)),
            }
            if discard > 0 {
                self.inb.copy_within(discard..self.in_len, 0);
                self.in_len -= discard;
            }
            if let Some(s) = status {
                return Ok(s);
            }
        }
    }
}

/// In-memory TLS server plumbing for unit tests (this module's and the engine's).
#[cfg(test)]
pub(crate) mod testkit {
    use super::*;
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::ServerConnection;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// A self-signed certificate for `localhost`, also written as `cert.pem`/`key.pem`.
    pub struct Pki {
        pub cert: CertificateDer<'static>,
        pub key: PrivateKeyDer<'static>,
        pub dir: PathBuf,
    }

    pub fn pki(tag: &str) -> Pki {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("gen-tls-unit-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        Pki {
            cert: ck.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into(),
            dir,
        }
    }

    pub fn server_config(p: &Pki) -> Arc<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![p.cert.clone()], p.key.clone_key())
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    pub fn server(p: &Pki) -> ServerConnection {
        ServerConnection::new(server_config(p)).unwrap()
    }

    /// Everything the client has queued, into the server, which processes it.
    pub fn to_server(c: &mut TlsSession, s: &mut ServerConnection) -> Result<(), TlsError> {
        let mut tx = c.tx();
        while !tx.is_empty() {
            s.read_tls(&mut tx).unwrap();
        }
        c.sent_all();
        s.process_new_packets().map_err(TlsError::Rustls)?;
        Ok(())
    }

    /// Everything the server has queued, as wire bytes.
    pub fn from_server(s: &mut ServerConnection) -> Vec<u8> {
        let mut wire = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        wire
    }

    /// Wire bytes into the session's inbound buffer, as a receive would put them.
    pub fn to_client(c: &mut TlsSession, wire: &[u8]) {
        let (ptr, len) = c.rx_space();
        assert!(wire.len() <= len);
        // SAFETY: ptr points at `len >= wire.len()` writable bytes of the session's buffer.
        unsafe { std::ptr::copy_nonoverlapping(wire.as_ptr(), ptr, wire.len()) };
        c.received(wire.len());
    }

    /// Runs the handshake: client and server flights back and forth until the client is
    /// open with nothing left to send (or fails).
    pub fn pump(c: &mut TlsSession, s: &mut ServerConnection) -> Result<Status, TlsError> {
        let mut status = Status::Handshaking;
        for _ in 0..10 {
            to_server(c, s)?;
            to_client(c, &from_server(s));
            status = c.drive(None, |_| true)?;
            if status == Status::Open && c.tx().is_empty() {
                break;
            }
        }
        Ok(status)
    }

    /// Counts allocations made by threads that switched counting on (only those).
    struct Counting;

    thread_local! {
        static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
    }

    // SAFETY: forwards every call to the system allocator; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
            // SAFETY: the caller's contract is the system allocator's.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;

    /// Runs `f` and returns its result with the heap allocations it made on this thread.
    pub fn counted_allocs<T>(f: impl FnOnce() -> T) -> (T, u64) {
        COUNT.with(|c| c.set(Some(0)));
        let r = f();
        let n = COUNT.with(|c| c.replace(None)).unwrap_or(0);
        (r, n)
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{from_server, pki, pump, server, server_config, to_client, to_server};
    use super::*;
    use rustls::ServerConnection;
    use std::io::{Read, Write};

    #[test]
    fn handshake_request_response_and_resumption_in_memory() {
        let p = pki("a");
        let opts = TlsOptions {
            cacert: Some(p.dir.join("cert.pem")),
            ..TlsOptions::default()
        };
        let client = TlsClient::new(&opts, "localhost").unwrap().for_thread();
        let req = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let mut c = TlsSession::new(req.len());
        let server_cfg = server_config(&p);
        let mut s = ServerConnection::new(server_cfg.clone()).unwrap();
        c.start(&client).unwrap();
        assert!(!c.tx().is_empty(), "ClientHello queued");
        assert_eq!(pump(&mut c, &mut s), Ok(Status::Open));
        assert!(!c.resumed());
        assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(s.server_name(), Some("localhost"));

        // The request is encrypted into the session's buffer; the server reads it back.
        assert_eq!(c.drive(Some(req), |_| true), Ok(Status::Open));
        to_server(&mut c, &mut s).unwrap();
        let mut got = vec![0; req.len()];
        s.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got[..], &req[..]);

        // The response comes back through on_data.
        s.writer().write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        to_client(&mut c, &from_server(&mut s));
        let mut plain = Vec::new();
        let st = c.drive(None, |d| {
            plain.extend_from_slice(d);
            false
        });
        assert_eq!(st, Ok(Status::Open));
        assert_eq!(plain, b"HTTP/1.1 200 OK\r\n\r\n");

        // A second connection from the same thread's client resumes with a ticket.
        // (Resumption needs the same server configuration: it holds the ticket keys.)
        let mut s2 = ServerConnection::new(server_cfg).unwrap();
        c.start(&client).unwrap();
        assert_eq!(pump(&mut c, &mut s2), Ok(Status::Open));
        assert!(c.resumed(), "second handshake resumed");
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    #[test]
    fn wrong_ca_fails_the_handshake() {
        let p = pki("b");
        let other = pki("c");
        let opts = TlsOptions {
            cacert: Some(other.dir.join("cert.pem")),
            ..TlsOptions::default()
        };
        let client = TlsClient::new(&opts, "localhost").unwrap();
        let mut c = TlsSession::new(10);
        let mut s = server(&p);
        c.start(&client).unwrap();
        let r = pump(&mut c, &mut s);
        assert!(
            matches!(
                r,
                Err(TlsError::Rustls(rustls::Error::InvalidCertificate(_)))
            ),
            "{r:?}"
        );
        // --insecure accepts the same server.
        let insecure = TlsClient::new(
            &TlsOptions {
                insecure: true,
                ..TlsOptions::default()
            },
            "localhost",
        )
        .unwrap();
        let mut s = server(&p);
        c.start(&insecure).unwrap();
        assert_eq!(pump(&mut c, &mut s), Ok(Status::Open));
        for d in [&p.dir, &other.dir] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn bad_files_are_named() {
        let msg = |o: TlsOptions| TlsClient::new(&o, "localhost").unwrap_err().to_string();
        let e = msg(TlsOptions {
            cacert: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        });
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let e = msg(TlsOptions {
            cert: Some("/x/c.pem".into()),
            ..TlsOptions::default()
        });
        assert!(e.contains("--key"), "{e}");
        let p = pki("d");
        let e = msg(TlsOptions {
            cert: Some(p.dir.join("cert.pem")),
            key: Some("/nonexistent/key.pem".into()),
            ..TlsOptions::default()
        });
        assert!(e.contains("/nonexistent/key.pem"), "{e}");
        // A key file given as the CA: no certificate in it.
        let e = msg(TlsOptions {
            cacert: Some(p.dir.join("key.pem")),
            ..TlsOptions::default()
        });
        assert!(
            e.contains("key.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    /// Heap allocations on the client side per keep-alive request once connected: sealing
    /// the request and opening the response (the tutorial's `POST /metrics`), counted by
    /// a global allocator switched on around the client's calls only. The figure is
    /// rustls' own (one Vec per record each way, docs/tls.md); gen's code adds none.
    #[test]
    fn client_allocations_per_request_once_connected() {
        use super::testkit::counted_allocs;
        let p = pki("alloc");
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
        let mut s = server(&p);
        c.start(&client).unwrap();
        assert_eq!(pump(&mut c, &mut s), Ok(Status::Open));
        to_server(&mut c, &mut s).unwrap();
        to_client(&mut c, &from_server(&mut s)); // session tickets
        assert_eq!(c.drive(None, |_| true), Ok(Status::Open));
        let n = 1000;
        let mut got = vec![0u8; req.len()];
        let mut allocs = 0;
        for i in 0..n + 10 {
            if i == 10 {
                // The first requests may size things once (rustls' queues); count after.
                allocs = 0;
            }
            let (sealed, a) = counted_allocs(|| c.drive(Some(req), |_| true));
            assert_eq!(sealed, Ok(Status::Open));
            allocs += a;
            to_server(&mut c, &mut s).unwrap();
            s.reader().read_exact(&mut got).unwrap();
            assert_eq!(&got[..], &req[..]);
            s.writer().write_all(resp).unwrap();
            to_client(&mut c, &from_server(&mut s));
            let mut plain = 0;
            let (opened, a) = counted_allocs(|| {
                c.drive(None, |d| {
                    plain += d.len();
                    false
                })
            });
            assert_eq!(opened, Ok(Status::Open));
            assert_eq!(plain, resp.len());
            allocs += a;
        }
        let per_request = allocs as f64 / f64::from(n);
        println!("client-side TLS allocations per request: {per_request:.2}");
        assert!(per_request <= 2.0, "{per_request} allocations per request");
        assert!(per_request >= 1.0, "the counter counts: {per_request}");
        std::fs::remove_dir_all(&p.dir).unwrap();
    }
}
