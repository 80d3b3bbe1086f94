//! The worker's TLS steps: the handshake after TCP connects, and sealing each request into
//! the connection's record buffer. A child of `worker` (it drives the same loop state); the
//! record-level work is [`crate::http::tls::TlsSession`]'s.
//!
//! A handshake failure of any kind (alert, certificate rejected, bad record, the server
//! closing or resetting mid-handshake) counts once as [`ErrorKind::Tls`] and the slot
//! reconnects with the connect backoff; a handshake slower than the timeout counts as
//! [`ErrorKind::Timeout`]. Both are per attempt, like connect errors.

use super::{Conn, Driver, ErrorKind, Phase, Worker};
use crate::http::tls::Status;

impl<D: Driver> Worker<'_, D> {
    /// TCP is up: start the handshake (the ClientHello is in the slot's record buffer).
    pub(super) fn tls_start(&mut self, i: u32, now: u64) {
        let c = &mut self.conns[i as usize];
        let started = match (c.tls.as_mut(), self.tls.as_ref()) {
            (Some(t), Some(client)) => t.start(client).is_ok(),
            _ => false,
        };
        c.phase = Phase::Handshaking;
        c.since = now;
        c.tx_off = 0;
        if !started {
            self.tls_failed(i, now, ErrorKind::Tls);
            return;
        }
        self.send_tx(i);
        self.arm_recv(i);
    }

    /// A receive completed during the handshake.
    pub(super) fn tls_handshake_recv(&mut self, i: u32, res: i32, now: u64) {
        let c = &mut self.conns[i as usize];
        c.recv_armed = false;
        let status = match (res, c.tls.as_mut()) {
            (1.., Some(t)) => {
                t.received(res as usize);
                // Application data before the handshake ends was never asked for: stop.
                t.drive(None, |_| true)
            }
            _ => Ok(Status::PeerClosed),
        };
        match status {
            Ok(Status::Handshaking) => {
                self.send_tx(i);
                self.arm_recv(i);
            }
            Ok(Status::Open) => {
                let resumed = c.tls.as_ref().is_some_and(|t| t.resumed());
                self.rec
                    .record_tls_handshake(now.saturating_sub(c.since), resumed);
                c.phase = Phase::Ready;
                c.backoff = 0;
                if has_tx(c) {
                    // TLS 1.3: our Finished goes out first; the send completion makes the
                    // connection ready (the same path as a response beating its send).
                    self.send_tx(i);
                } else {
                    self.arm_recv(i);
                    self.make_ready(i);
                }
            }
            Ok(Status::Stopped | Status::PeerClosed) | Err(_) => {
                self.tls_failed(i, now, ErrorKind::Tls)
            }
        }
    }

    /// The handshake on `i` failed: count it (after warm-up), reconnect with backoff.
    pub(super) fn tls_failed(&mut self, i: u32, now: u64, kind: ErrorKind) {
        if now >= self.sh.plan.warmup_ns() {
            self.rec.record_error(kind);
        }
        self.close(i, now, true);
    }

    /// `begin` on a TLS connection: encrypt the shared request into the slot's record
    /// buffer (no allocation of ours; see `docs/tls.md` for rustls' own) and send it.
    pub(super) fn tls_send_request(&mut self, i: u32) {
        // The scenario's rendered request for this connection, or the one fixed request.
        let req = match &self.work {
            None => self.sh.request,
            Some(w) => w.bytes(i),
        };
        let c = &mut self.conns[i as usize];
        let sealed = c
            .tls
            .as_mut()
            .is_some_and(|t| t.drive(Some(req), |_| true).is_ok());
        if !sealed {
            self.fail(i, ErrorKind::Tls);
            return;
        }
        self.send_tx(i);
    }

    /// Send what waits in the slot's record buffer, unless a send is already out (its
    /// completion sends the rest).
    fn send_tx(&mut self, i: u32) {
        let c = &mut self.conns[i as usize];
        if c.send_inflight || !has_tx(c) {
            return;
        }
        let rest = &c.tx(&[])[c.tx_off..];
        let (ptr, len) = (rest.as_ptr(), rest.len());
        c.send_inflight = true;
        c.pending += 1;
        // SAFETY: the record buffer belongs to the slot, which never moves; it is neither
        // resized nor rewritten while a send from it is out (TlsSession only appends, and
        // grows only when empty).
        unsafe { self.driver.send(i, c.fd, ptr, len) };
    }
}

fn has_tx(c: &Conn) -> bool {
    c.tx(&[]).len() > c.tx_off
}
