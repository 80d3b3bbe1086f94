//! The connection state machine, shared by every driver.
//!
//! Sans-io: it never performs a syscall. The engine loop tells it what happened (a connect,
//! send or receive completed with this result) and it answers what that means (send more,
//! receive more, the response is complete, the request failed with this error kind). It owns
//! the connection's receive buffer and response parser; both are allocated once and reused
//! for every request on the slot, including across reconnects.
//!
//! For https the slot also owns a [`TlsSession`]: receives then land in its ciphertext
//! buffer and are decrypted into the receive buffer, and sends come from its record buffer
//! ([`Conn::tx`]) instead of the shared plain request. A TLS connection passes through
//! `Handshaking` between `Connecting` and `Ready` (driven by the worker, `worker_tls.rs`).
//!
//! ```text
//!  Down --connect--> Connecting --ok--> Ready <--response done, keep-alive-- Busy
//!    ^                   |                 \--------begin request---------->  |
//!    |                 error                                            error/close
//!    +---- Draining (fd shut down, waiting for the driver's last completions) <+
//! ```

use crate::http::response::{Done, ResponseParser};
use crate::http::tls::{Status as TlsStatus, TlsSession};
use crate::measure::ErrorKind;

/// Receive buffer: start size, and the limit it may grow to while a header block is
/// incomplete (the parser rejects header blocks over 64 KiB; the rest is slack).
const RX_START: usize = 16 * 1024;
const RX_MAX: usize = 80 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No socket; waits in the reconnect queue.
    Down,
    Connecting,
    /// Connected, no request in flight (a receive stays armed to notice a server close).
    Ready,
    /// TCP is up and the TLS handshake is in progress (`since` is when it started).
    Handshaking,
    /// A request is in flight.
    Busy,
    /// Being closed: the socket is shut down and the driver still owes completions.
    Draining,
}

/// Room for one `SCM_TIMESTAMPNS` control message (a 16-byte header and a timespec),
/// with slack; u64s for the alignment `cmsghdr` needs.
const CMSG_WORDS: usize = 8;

/// Timing of the request in flight, in nanoseconds from the run's start.
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    pub intended: u64,
    pub sent: u64,
    /// 0 until the first byte of the response arrives.
    pub first_byte: u64,
    /// When the last byte arrived (set when the response completes).
    pub done: u64,
    pub bytes: u64,
}

/// What a receive completion meant.
#[derive(Debug, PartialEq)]
pub enum RecvOutcome {
    /// The response is incomplete: arm another receive.
    More,
    /// The response is complete. `clean` is false when the connection must not be reused
    /// (the server asked to close, or sent bytes nobody asked for).
    Complete { done: Done, clean: bool },
    /// The request failed; the connection must be closed.
    Fail(ErrorKind),
    /// The server closed (or wrote to) an idle connection: close it, no request is lost.
    IdleClosed,
}

pub struct Conn {
    pub fd: i32,
    pub phase: Phase,
    /// Operations the driver still owes a completion for.
    pub pending: u8,
    pub send_inflight: bool,
    pub recv_armed: bool,
    /// Bytes of the current request already sent.
    pub tx_off: usize,
    pub req: InFlight,
    /// When the current connect started; also the reconnect time while Down.
    pub since: u64,
    /// Reconnect backoff after a failed connect, doubled per failure.
    pub backoff: u64,
    /// A cancel was issued because the connect took longer than the timeout.
    pub timed_out: bool,
    rx: Vec<u8>,
    head: usize,
    tail: usize,
    parser: ResponseParser,
    /// The receive is a `recvmsg` so the kernel can attach the time the data arrived
    /// (SO_TIMESTAMPNS): the loop then need not wake up for every response to time it.
    /// These point into `rx` and `cmsg`; a `Conn` never moves while a receive is armed
    /// (the slots live in a vector that is never resized).
    msg: libc::msghdr,
    iov: libc::iovec,
    cmsg: [u64; CMSG_WORDS],
    /// https: the slot's TLS state and ciphertext buffers (allocated once per slot).
    pub tls: Option<Box<TlsSession>>,
}

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            fd: -1,
            phase: Phase::Down,
            pending: 0,
            send_inflight: false,
            recv_armed: false,
            tx_off: 0,
            req: InFlight::default(),
            since: 0,
            backoff: 0,
            timed_out: false,
            rx: vec![0; RX_START],
            head: 0,
            tail: 0,
            parser: ResponseParser::new(),
            // SAFETY: msghdr and iovec are plain C structs; all-zero is a valid empty value.
            msg: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            cmsg: [0; CMSG_WORDS],
            tls: None,
        }
    }

    /// The bytes a send takes from: the TLS record buffer, or else the shared plain request.
    #[inline]
    pub fn tx<'a>(&'a self, plain: &'a [u8]) -> &'a [u8] {
        match &self.tls {
            Some(t) => t.tx(),
            None => plain,
        }
    }

    /// A connect completed. Ok: the connection is ready (returns the connect time).
    pub fn on_connect(&mut self, res: i32, now: u64) -> Result<u64, ErrorKind> {
        if res < 0 {
            return Err(if self.timed_out {
                ErrorKind::Timeout
            } else {
                ErrorKind::Connect
            });
        }
        self.phase = Phase::Ready;
        // Over TLS the connection counts as established once the handshake is done: a
        // server that keeps failing handshakes is retried with a growing backoff.
        if self.tls.is_none() {
            self.backoff = 0;
        }
        self.head = 0;
        self.tail = 0;
        Ok(now.saturating_sub(self.since))
    }

    /// Start a request on a Ready connection.
    pub fn begin(&mut self, intended: u64, now: u64, head_request: bool) {
        debug_assert_eq!(self.phase, Phase::Ready);
        self.phase = Phase::Busy;
        self.req = InFlight {
            intended,
            sent: now,
            first_byte: 0,
            done: 0,
            bytes: 0,
        };
        self.tx_off = 0;
        self.parser.reset(head_request);
    }

    /// A send completed; returns whether `total - tx_off` bytes remain to send, or the error.
    pub fn on_send(&mut self, res: i32, total: usize) -> Result<bool, ErrorKind> {
        self.send_inflight = false;
        if res < 0 {
            return Err(errno_kind(-res));
        }
        self.tx_off += res as usize;
        if let Some(t) = self.tls.as_mut() {
            // The record buffer may have grown while the send was out (handshake replies).
            if self.tx_off < t.tx().len() {
                return Ok(true);
            }
            t.sent_all();
            self.tx_off = 0;
            return Ok(false);
        }
        Ok(self.tx_off < total)
    }

    /// The `msghdr` for the next receive: the free part of the receive buffer and a
    /// cleared control buffer for the arrival timestamp. Same contract as [`Self::rx_space`].
    pub fn rx_msg(&mut self) -> *mut libc::msghdr {
        let (ptr, len) = match self.tls.as_mut() {
            Some(t) => t.rx_space(),
            None => self.rx_space(),
        };
        self.iov = libc::iovec {
            iov_base: ptr.cast(),
            iov_len: len,
        };
        self.cmsg = [0; CMSG_WORDS];
        self.msg.msg_name = std::ptr::null_mut();
        self.msg.msg_namelen = 0;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        self.msg.msg_control = self.cmsg.as_mut_ptr().cast();
        self.msg.msg_controllen = std::mem::size_of_val(&self.cmsg);
        self.msg.msg_flags = 0;
        &mut self.msg
    }

    /// The kernel's receive time (CLOCK_REALTIME, ns) of the data the last receive
    /// returned, when the socket has SO_TIMESTAMPNS on and the kernel supplied one.
    pub fn rx_timestamp(&self) -> Option<i128> {
        let len = self
            .msg
            .msg_controllen
            .min(std::mem::size_of_val(&self.cmsg));
        let base = self.cmsg.as_ptr().cast::<u8>();
        let mut off = 0usize;
        let hdr = std::mem::size_of::<libc::cmsghdr>();
        while off + hdr <= len {
            // SAFETY: `off + hdr <= len <= size_of(cmsg)`; read_unaligned copes with layout.
            let h: libc::cmsghdr = unsafe { std::ptr::read_unaligned(base.add(off).cast()) };
            let clen = h.cmsg_len;
            if clen < hdr || off + clen > len {
                return None;
            }
            if h.cmsg_level == libc::SOL_SOCKET
                && h.cmsg_type == libc::SO_TIMESTAMPNS
                && clen >= hdr + std::mem::size_of::<libc::timespec>()
            {
                // SAFETY: the data follows the header and fits (checked above).
                let ts: libc::timespec =
                    unsafe { std::ptr::read_unaligned(base.add(off + hdr).cast()) };
                return Some(ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128);
            }
            off += (clen + 7) & !7;
        }
        None
    }

    /// Where the next receive should write. Compacts or grows the buffer only while no
    /// receive is outstanding (the caller's contract), so the kernel never writes to freed
    /// or moved memory.
    fn rx_space(&mut self) -> (*mut u8, usize) {
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        if self.tail == self.rx.len() {
            if self.head > 0 {
                self.rx.copy_within(self.head..self.tail, 0);
                self.tail -= self.head;
                self.head = 0;
            } else if self.rx.len() < RX_MAX {
                // Rare: a header block bigger than the buffer. Not per request.
                let len = (self.rx.len() * 2).min(RX_MAX);
                self.rx.resize(len, 0);
            }
        }
        let len = self.rx.len() - self.tail;
        // SAFETY: tail <= len, so the pointer stays inside (or one past) the allocation.
        (unsafe { self.rx.as_mut_ptr().add(self.tail) }, len)
    }

    /// A receive completed; `now` is when its data arrived (the kernel's timestamp when
    /// there is one, else when the completion was reaped).
    pub fn on_recv(&mut self, res: i32, now: u64) -> RecvOutcome {
        self.recv_armed = false;
        if res < 0 {
            return if self.phase == Phase::Busy {
                RecvOutcome::Fail(errno_kind(-res))
            } else {
                RecvOutcome::IdleClosed
            };
        }
        if res > 0 && self.tls.is_some() {
            return self.on_tls_recv(res as usize, now);
        }
        if self.phase != Phase::Busy {
            return RecvOutcome::IdleClosed;
        }
        if res == 0 {
            return match self.parser.eof() {
                Ok(Some(done)) => {
                    self.req.done = now;
                    RecvOutcome::Complete { done, clean: false }
                }
                _ => RecvOutcome::Fail(ErrorKind::Closed),
            };
        }
        let n = res as usize;
        self.tail = (self.tail + n).min(self.rx.len());
        self.req.bytes += n as u64;
        if self.req.first_byte == 0 {
            self.req.first_byte = now.max(1);
        }
        self.parse_rx(now)
    }

    /// Parses what the receive buffer holds.
    fn parse_rx(&mut self, now: u64) -> RecvOutcome {
        loop {
            match self.parser.feed(&self.rx[self.head..self.tail]) {
                Err(_) => return RecvOutcome::Fail(ErrorKind::Parse),
                Ok(feed) => {
                    self.head += feed.consumed;
                    if let Some(done) = feed.done {
                        self.req.done = now;
                        // Bytes after the response: nobody asked for them (one request in
                        // flight per connection), so the connection is not trusted further.
                        let clean = done.keep_alive && self.head == self.tail;
                        self.head = 0;
                        self.tail = 0;
                        return RecvOutcome::Complete { done, clean };
                    }
                    if feed.consumed == 0 || self.head == self.tail {
                        break;
                    }
                }
            }
        }
        if self.tail == self.rx.len() && self.head == 0 && self.rx.len() >= RX_MAX {
            // The buffer is full of an incomplete header block: the parser would have said
            // HeadersTooLarge already; never spin on a zero-length receive.
            return RecvOutcome::Fail(ErrorKind::Parse);
        }
        RecvOutcome::More
    }

    /// `n` bytes of ciphertext arrived on a TLS connection (Ready or Busy): decrypt them into
    /// the receive buffer and parse. On an idle connection only non-data records (session
    /// tickets) are expected; data there was never asked for.
    fn on_tls_recv(&mut self, n: usize, now: u64) -> RecvOutcome {
        let Some(mut tls) = self.tls.take() else {
            return RecvOutcome::Fail(ErrorKind::Tls);
        };
        tls.received(n);
        let busy = self.phase == Phase::Busy;
        let mut outcome = None;
        let status = tls.drive(None, |plain| {
            let o = if busy {
                self.feed_plain(plain, now)
            } else {
                RecvOutcome::IdleClosed
            };
            let stop = o != RecvOutcome::More;
            if stop {
                outcome = Some(o);
            }
            stop
        });
        self.tls = Some(tls);
        match (status, outcome) {
            (_, Some(o)) => o,
            (Err(_), None) if busy => RecvOutcome::Fail(ErrorKind::Tls),
            (Err(_), None) => RecvOutcome::IdleClosed,
            // close_notify: the same as a TCP close.
            (Ok(TlsStatus::PeerClosed), None) => self.on_recv(0, now),
            (Ok(_), None) => RecvOutcome::More,
        }
    }

    /// Decrypted response bytes: into the receive buffer (compacted, or grown for a big
    /// header block, as for plain receives), parsed as they come.
    fn feed_plain(&mut self, mut plain: &[u8], now: u64) -> RecvOutcome {
        if self.req.first_byte == 0 {
            self.req.first_byte = now.max(1);
        }
        while !plain.is_empty() {
            let (ptr, room) = self.rx_space();
            let k = room.min(plain.len());
            if k == 0 {
                return RecvOutcome::Fail(ErrorKind::Parse);
            }
            // SAFETY: `ptr` points at `room >= k` writable bytes of `rx`; no receive writes
            // to `rx` on a TLS connection (ciphertext goes to the session's buffer).
            unsafe { std::ptr::copy_nonoverlapping(plain.as_ptr(), ptr, k) };
            plain = &plain[k..];
            self.tail += k;
            self.req.bytes += k as u64;
            match self.parse_rx(now) {
                RecvOutcome::More => {}
                // Bytes after the response: unsolicited, as for plain receives.
                RecvOutcome::Complete { done, .. } if !plain.is_empty() => {
                    return RecvOutcome::Complete { done, clean: false }
                }
                o => return o,
            }
        }
        RecvOutcome::More
    }
}

/// Map a socket errno to the error kind it is counted under.
pub fn errno_kind(errno: i32) -> ErrorKind {
    match errno {
        libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EADDRNOTAVAIL => {
            ErrorKind::Connect
        }
        libc::ETIMEDOUT => ErrorKind::Timeout,
        _ => ErrorKind::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(c: &mut Conn, bytes: &[u8], now: u64) -> RecvOutcome {
        let (ptr, len) = c.rx_space();
        assert!(len >= bytes.len());
        // SAFETY: ptr points at `len` writable bytes of c.rx.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        c.on_recv(bytes.len() as i32, now)
    }

    fn ready() -> Conn {
        let mut c = Conn::new();
        c.since = 10;
        assert_eq!(c.on_connect(0, 25), Ok(15));
        c
    }

    #[test]
    fn response_split_over_receives_completes_once() {
        let mut c = ready();
        c.begin(100, 110, false);
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(feed(&mut c, &resp[..10], 150), RecvOutcome::More);
        assert_eq!(feed(&mut c, &resp[10..40], 160), RecvOutcome::More);
        match feed(&mut c, &resp[40..], 170) {
            RecvOutcome::Complete { done, clean } => {
                assert_eq!(done.status, 200);
                assert!(clean);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.req.first_byte, 150);
        assert_eq!(c.req.bytes, resp.len() as u64);
    }

    #[test]
    fn close_and_garbage_are_classified() {
        let mut c = ready();
        c.begin(0, 0, false);
        assert_eq!(feed(&mut c, b"HTTP/1.1 200 OK\r\n", 1), RecvOutcome::More);
        assert_eq!(c.on_recv(0, 2), RecvOutcome::Fail(ErrorKind::Closed));

        let mut c = ready();
        c.begin(0, 0, false);
        assert_eq!(
            feed(&mut c, b"\x00\x01garbage\r\n\r\n", 1),
            RecvOutcome::Fail(ErrorKind::Parse)
        );

        let mut c = ready();
        c.begin(0, 0, false);
        assert_eq!(
            c.on_recv(-libc::ECONNRESET, 1),
            RecvOutcome::Fail(ErrorKind::Reset)
        );

        // A server closing an idle keep-alive connection loses no request.
        let mut c = ready();
        assert_eq!(c.on_recv(0, 1), RecvOutcome::IdleClosed);
    }

    #[test]
    fn extra_bytes_or_connection_close_make_it_unclean() {
        let mut c = ready();
        c.begin(0, 0, false);
        match feed(&mut c, b"HTTP/1.1 204 No Content\r\n\r\nXX", 1) {
            RecvOutcome::Complete { clean, .. } => assert!(!clean),
            other => panic!("{other:?}"),
        }
        let mut c = ready();
        c.begin(0, 0, false);
        match feed(
            &mut c,
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            1,
        ) {
            RecvOutcome::Complete { clean, .. } => assert!(!clean),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connect_errors_and_partial_sends() {
        let mut c = Conn::new();
        assert_eq!(
            c.on_connect(-libc::ECONNREFUSED, 5),
            Err(ErrorKind::Connect)
        );
        c.timed_out = true;
        assert_eq!(c.on_connect(-libc::ECANCELED, 5), Err(ErrorKind::Timeout));
        let mut c = ready();
        c.begin(0, 0, false);
        c.send_inflight = true;
        assert_eq!(c.on_send(10, 25), Ok(true));
        assert_eq!(c.on_send(15, 25), Ok(false));
        assert_eq!(c.on_send(-libc::EPIPE, 25), Err(ErrorKind::Reset));
    }

    /// The receive path the drivers use: recvmsg with the slot's msghdr on a socket with
    /// SO_TIMESTAMPNS yields the kernel's arrival time, which precedes our read.
    #[test]
    fn recvmsg_carries_the_kernel_arrival_time() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a live c_int.
        let rc = unsafe {
            libc::setsockopt(
                client.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        // The kernel switches receive timestamping on through a deferred work item the
        // first time any socket asks; give it time before the data arrives.
        std::thread::sleep(std::time::Duration::from_millis(200));
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut c = ready();
        c.begin(0, 0, false);
        let msg = c.rx_msg();
        // SAFETY: msg points into `c`, which outlives the call.
        let n = unsafe { libc::recvmsg(client.as_raw_fd(), msg, 0) };
        assert!(n > 0);
        let read_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let arrived = c.rx_timestamp().expect("kernel timestamp");
        let age_ms = (read_at - arrived) as f64 / 1e6;
        assert!(
            (15.0..2000.0).contains(&age_ms),
            "arrived {age_ms} ms before the read"
        );
        assert!(matches!(
            c.on_recv(n as i32, 7),
            RecvOutcome::Complete { .. }
        ));
        assert_eq!(c.req.done, 7);
        // Without the option there is no timestamp, and nothing is made up.
        let mut c = ready();
        let _ = c.rx_msg();
        assert_eq!(c.rx_timestamp(), None);
    }

    /// The TLS receive path over an in-memory rustls server: session tickets on an idle
    /// connection, a response split across receives (and records), unsolicited data, and
    /// close_notify in the middle of a response.
    #[test]
    fn tls_receives_are_decrypted_and_classified() {
        use crate::http::tls::testkit::{from_server, pki, server_config, to_client, to_server};
        use crate::http::tls::{Status, TlsClient, TlsOptions, TlsSession};
        use std::io::Write;

        let p = pki("conn");
        let server_cfg = server_config(&p);
        let opts = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        let client = TlsClient::new(&opts, "localhost").unwrap();
        // Server -> client bytes, through the receive path the drivers use.
        fn deliver(c: &mut Conn, s: &mut rustls::ServerConnection, now: u64) -> Vec<RecvOutcome> {
            let wire = from_server(s);
            let mut outs = Vec::new();
            // Two receives: the split falls inside a record.
            let mid = wire.len() / 2;
            for part in [&wire[..mid], &wire[mid..]] {
                let msg = c.rx_msg();
                // SAFETY: msg's single iovec points at free space in the session's buffer.
                let (base, len) =
                    unsafe { ((*(*msg).msg_iov).iov_base, (*(*msg).msg_iov).iov_len) };
                assert!(part.len() <= len);
                // SAFETY: as above, `part.len() <= len`.
                unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), base.cast(), part.len()) };
                outs.push(c.on_recv(part.len() as i32, now));
            }
            outs
        }
        let connect = |s: &mut rustls::ServerConnection| {
            let mut c = ready();
            let mut t = Box::new(TlsSession::new(64));
            t.start(&client).unwrap();
            for _ in 0..4 {
                to_server(&mut t, s).unwrap();
                to_client(&mut t, &from_server(s));
                if t.drive(None, |_| true) == Ok(Status::Open) {
                    break;
                }
            }
            // Our Finished: the server answers with session tickets, left for the test.
            to_server(&mut t, s).unwrap();
            c.tls = Some(t);
            c
        };

        let mut s = rustls::ServerConnection::new(server_cfg.clone()).unwrap();
        let mut c = connect(&mut s);
        // Tickets on the idle connection: nothing to report, keep receiving.
        assert_eq!(
            deliver(&mut c, &mut s, 5),
            [RecvOutcome::More, RecvOutcome::More]
        );
        c.begin(0, 10, false);
        let req = b"GET / HTTP/1.1\r\n\r\n";
        let t = c.tls.as_mut().unwrap();
        assert_eq!(t.drive(Some(req), |_| true), Ok(Status::Open));
        to_server(t, &mut s).unwrap();
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        s.writer().write_all(resp).unwrap();
        let outs = deliver(&mut c, &mut s, 20);
        assert_eq!(
            outs[0],
            RecvOutcome::More,
            "half a record decrypts to nothing"
        );
        match &outs[1] {
            RecvOutcome::Complete { done, clean } => assert!(done.status == 200 && *clean),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.req.bytes,
            resp.len() as u64,
            "plaintext bytes are counted"
        );
        assert_eq!((c.req.first_byte, c.req.done), (20, 20));
        c.phase = Phase::Ready;
        // Data nobody asked for on an idle connection closes it (no request lost).
        s.writer().write_all(b"surprise").unwrap();
        assert_eq!(deliver(&mut c, &mut s, 30)[1], RecvOutcome::IdleClosed);

        // close_notify in the middle of a response: the same as a TCP close there.
        let mut s = rustls::ServerConnection::new(server_cfg).unwrap();
        let mut c = connect(&mut s);
        c.begin(0, 10, false);
        s.writer()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhel")
            .unwrap();
        s.send_close_notify();
        let outs = deliver(&mut c, &mut s, 40);
        assert_eq!(
            outs.last(),
            Some(&RecvOutcome::Fail(ErrorKind::Closed)),
            "{outs:?}"
        );
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    #[test]
    fn big_header_block_grows_buffer_then_fails_cleanly() {
        let mut c = ready();
        c.begin(0, 0, false);
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        while head.len() < 70 * 1024 {
            head.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let mut out = RecvOutcome::More;
        for chunk in head.chunks(4096) {
            out = feed(&mut c, chunk, 1);
            if out != RecvOutcome::More {
                break;
            }
        }
        assert_eq!(out, RecvOutcome::Fail(ErrorKind::Parse));
    }
}
