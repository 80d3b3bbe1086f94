//! The driver interface: what the engine loop needs from an I/O backend.
//!
//! The loop and the connection state machine ([`super::conn`]) are written once against
//! this trait; io_uring ([`super::uring`]) implements it today and an epoll driver
//! implements the same four operations for kernels or sandboxes without io_uring.
//! Operations complete later, as [`Completion`]s returned by [`Driver::wait`], so a
//! readiness-based backend simply performs the syscall when the socket is ready.

use std::io;
use std::os::fd::RawFd;

use socket2::SockAddr;

/// Which operation completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Connect = 0,
    Send = 1,
    Recv = 2,
    Cancel = 3,
}

impl Op {
    pub(crate) fn from_bits(b: u64) -> Op {
        match b & 3 {
            0 => Op::Connect,
            1 => Op::Send,
            2 => Op::Recv,
            _ => Op::Cancel,
        }
    }
}

/// One finished operation: the connection slot it belongs to, and the syscall-style result
/// (bytes transferred, or a negative errno).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub conn: u32,
    pub op: Op,
    pub res: i32,
}

/// When [`Driver::wait`] may return before its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Only at the timeout: completions wait to be reaped then (they are timed by the
    /// kernel, so reaping later costs no accuracy, and the thread sleeps less often).
    Deadline,
    /// At the first completion.
    FirstCompletion,
    /// At the first completion after `min_wait_us`, so completions arriving close together
    /// are reaped in one wake-up (falls back to `FirstCompletion` where unsupported).
    Batch { min_wait_us: u32 },
}

/// An I/O backend. Every queued operation produces exactly one [`Completion`]; at most one
/// operation of each kind is outstanding per connection, so `(conn, op)` identifies it.
pub trait Driver {
    /// Shown in the report ("io_uring", "epoll").
    fn name(&self) -> &'static str;

    /// Queue a connect of the non-blocking socket `fd` to `addr`.
    ///
    /// # Safety
    /// `addr` must stay valid and unmoved until the completion arrives.
    unsafe fn connect(&mut self, conn: u32, fd: RawFd, addr: *const SockAddr);

    /// Queue a send of `len` bytes at `buf`.
    ///
    /// # Safety
    /// The memory must stay valid and unmodified until the completion arrives.
    unsafe fn send(&mut self, conn: u32, fd: RawFd, buf: *const u8, len: usize);

    /// Queue a `recvmsg` with `msg` (one iovec, and a control buffer for the kernel's
    /// receive timestamp).
    ///
    /// # Safety
    /// `msg` and the memory it points to must stay valid and otherwise untouched until the
    /// completion arrives.
    unsafe fn recv(&mut self, conn: u32, fd: RawFd, msg: *mut libc::msghdr);

    /// Cancel every operation outstanding on `fd`; each still completes (with `-ECANCELED`),
    /// and the cancel itself completes as [`Op::Cancel`].
    fn cancel(&mut self, conn: u32, fd: RawFd);

    /// Connection `conn` owes the driver nothing any more and its descriptor is about to be
    /// closed: drop whatever the driver holds for it (io_uring's registered-file slot would
    /// otherwise keep the socket open after `close`).
    fn release(&mut self, _conn: u32) {}

    /// Submit what is queued and wait up to `timeout_ns`, returning earlier as `wake`
    /// allows. Appends completions to `out` (which keeps its capacity: no allocation).
    fn wait(&mut self, timeout_ns: u64, wake: Wake, out: &mut Vec<Completion>) -> io::Result<()>;
}

/// `user_data` layout shared by drivers: connection slot in the high bits, op in the low 2.
#[inline]
pub(crate) fn user_data(conn: u32, op: Op) -> u64 {
    (u64::from(conn) << 2) | op as u64
}

#[inline]
pub(crate) fn decode(user_data: u64, res: i32) -> Completion {
    Completion {
        conn: (user_data >> 2) as u32,
        op: Op::from_bits(user_data),
        res,
    }
}

/// Helpers for the drivers' own unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::os::fd::IntoRawFd;

    /// A non-blocking IPv4 TCP socket, as the engine opens them.
    pub fn socket() -> RawFd {
        socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM.nonblocking(),
            None,
        )
        .unwrap()
        .into_raw_fd()
    }

    /// Wait until `n` completions arrived (bounded: 200 waits of 10 ms).
    pub fn collect(d: &mut impl Driver, n: usize) -> Vec<Completion> {
        let mut out = Vec::new();
        for _ in 0..200 {
            if out.len() >= n {
                break;
            }
            d.wait(10_000_000, Wake::FirstCompletion, &mut out).unwrap();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        for op in [Op::Connect, Op::Send, Op::Recv, Op::Cancel] {
            for conn in [0, 1, 77, u32::MAX] {
                let c = decode(user_data(conn, op), -4);
                assert_eq!(c, Completion { conn, op, res: -4 });
            }
        }
    }
}
