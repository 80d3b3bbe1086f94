//! The io_uring driver: one ring per worker thread, SINGLE_ISSUER | DEFER_TASKRUN.
//!
//! DEFER_TASKRUN measured +20–50% over a plain ring here (completion work runs only when
//! this thread enters the kernel, in a batch, instead of interrupting it). The consequence:
//! completions appear only inside [`Driver::wait`], which always enters with GETEVENTS and a
//! timeout, even a zero one.
//!
//! Per-request kernel work is trimmed where io_uring allows it (measured in
//! docs/benchmarks.md, "Where the generator's CPU goes"): sockets are registered files
//! (one table slot per connection, so each operation skips the descriptor lookup and
//! reference count), and receives poll first (a receive is armed when the connection goes
//! idle, so an immediate attempt would only find the socket empty).

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types, IoUring};
use socket2::SockAddr;

use super::driver::{decode, user_data, Completion, Driver, Op, Wake};

/// `IORING_RECVSEND_POLL_FIRST`: arm the poll without trying the receive first
/// (io_uring.h; the crate keeps its `sys` module private.)
const POLL_FIRST: u16 = 1;

/// An operation's socket: a registered-file slot or a plain descriptor.
enum Target {
    Fixed(types::Fixed),
    Fd(types::Fd),
}

pub struct Uring {
    ring: IoUring,
    /// More completions than can ever be outstanding: waiting for this many means
    /// "sleep until the timeout".
    never: usize,
    /// The kernel supports a minimum wait before returning with fewer completions (6.12+).
    min_wait: bool,
    /// Per connection: its socket sits in the registered-file table at the connection's
    /// index (false where registration is unavailable: plain descriptors then).
    registered: Vec<bool>,
    /// The ring has a sparse file table of one slot per connection.
    table: bool,
}

impl Uring {
    /// A ring sized for `conns` connections: at most three operations are outstanding per
    /// connection (recv, send, cancel), so the completion queue cannot overflow.
    pub fn new(conns: usize) -> io::Result<Uring> {
        let sq = (conns * 2).clamp(64, 4096).next_power_of_two() as u32;
        let cq = (conns * 4 + 64).next_power_of_two().min(1 << 20) as u32;
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(cq)
            .build(sq)?;
        let min_wait = ring.params().is_feature_min_timeout();
        // Without a table (old kernel, or a seccomp filter on io_uring_register) every
        // operation uses the plain descriptor: slower by a lookup, same results.
        let table =
            u32::try_from(conns).is_ok_and(|n| ring.submitter().register_files_sparse(n).is_ok());
        Ok(Uring {
            ring,
            never: cq as usize + 1,
            min_wait,
            registered: vec![false; conns],
            table,
        })
    }

    /// The target for an operation on `conn`: its registered slot, or the descriptor.
    #[inline]
    fn target(&self, conn: u32, fd: RawFd) -> Target {
        if self.registered.get(conn as usize).copied().unwrap_or(false) {
            Target::Fixed(types::Fixed(conn))
        } else {
            Target::Fd(types::Fd(fd))
        }
    }

    #[inline]
    fn push(&mut self, sqe: squeue::Entry) {
        // SAFETY (of the caller's contract): buffers referenced by `sqe` outlive it, see the
        // Driver trait. A full SQ is flushed to the kernel first; submit never blocks here.
        loop {
            let pushed = unsafe { self.ring.submission().push(&sqe) };
            if pushed.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                // EBUSY: the CQ is backed up; reaping happens in wait(). Nothing else is
                // expected; retrying is the only safe move with the entry in hand.
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    std::thread::yield_now();
                }
            }
        }
    }
}

impl Driver for Uring {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    unsafe fn connect(&mut self, conn: u32, fd: RawFd, addr: *const SockAddr) {
        // SAFETY: the caller keeps `addr` alive until the completion.
        let addr = unsafe { &*addr };
        if self.table {
            // One syscall per connect (not per request); a failure only costs the fast path.
            let ok = self
                .ring
                .submitter()
                .register_files_update(conn, &[fd])
                .is_ok();
            if let Some(r) = self.registered.get_mut(conn as usize) {
                *r = ok;
            }
        }
        let sqe = match self.target(conn, fd) {
            Target::Fixed(f) => opcode::Connect::new(f, addr.as_ptr().cast(), addr.len()).build(),
            Target::Fd(f) => opcode::Connect::new(f, addr.as_ptr().cast(), addr.len()).build(),
        };
        self.push(sqe.user_data(user_data(conn, Op::Connect)));
    }

    unsafe fn send(&mut self, conn: u32, fd: RawFd, buf: *const u8, len: usize) {
        let len = len.min(u32::MAX as usize) as u32;
        let sqe = match self.target(conn, fd) {
            Target::Fixed(f) => opcode::Send::new(f, buf, len),
            Target::Fd(f) => opcode::Send::new(f, buf, len),
        };
        let sqe = sqe
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(conn, Op::Send));
        self.push(sqe);
    }

    unsafe fn recv(&mut self, conn: u32, fd: RawFd, msg: *mut libc::msghdr) {
        let sqe = match self.target(conn, fd) {
            Target::Fixed(f) => opcode::RecvMsg::new(f, msg),
            Target::Fd(f) => opcode::RecvMsg::new(f, msg),
        };
        let sqe = sqe
            .ioprio(POLL_FIRST)
            .build()
            .user_data(user_data(conn, Op::Recv));
        self.push(sqe);
    }

    fn cancel(&mut self, conn: u32, fd: RawFd) {
        let how = match self.target(conn, fd) {
            Target::Fixed(f) => types::CancelBuilder::fd(f),
            Target::Fd(f) => types::CancelBuilder::fd(f),
        };
        let sqe = opcode::AsyncCancel2::new(how.all())
            .build()
            .user_data(user_data(conn, Op::Cancel));
        self.push(sqe);
    }

    fn release(&mut self, conn: u32) {
        if let Some(r) = self.registered.get_mut(conn as usize) {
            if std::mem::take(r) {
                // The table's reference would keep the socket open after close(2).
                let _ = self.ring.submitter().register_files_update(conn, &[-1]);
            }
        }
    }

    fn wait(&mut self, timeout_ns: u64, wake: Wake, out: &mut Vec<Completion>) -> io::Result<()> {
        // With DEFER_TASKRUN the kernel wakes a waiter only once `want` completions are
        // ready, so a large `want` really sleeps until the timeout (or the minimum wait).
        let (want, min_wait_us) = match wake {
            _ if timeout_ns == 0 => (1, 0),
            Wake::Deadline => (self.never, 0),
            Wake::Batch { min_wait_us } if self.min_wait && min_wait_us > 0 => {
                (self.never, min_wait_us)
            }
            Wake::Batch { .. } | Wake::FirstCompletion => (1, 0),
        };
        let ts = types::Timespec::new()
            .sec(timeout_ns / 1_000_000_000)
            .nsec((timeout_ns % 1_000_000_000) as u32);
        let args = types::SubmitArgs::new()
            .min_wait_usec(min_wait_us)
            .timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {}
                _ => return Err(e),
            },
        }
        for cqe in self.ring.completion() {
            out.push(decode(cqe.user_data(), cqe.result()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::driver::testing::{collect, socket};
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// A ring with connection `conn` connected to a fresh listener: the ring, the socket and
    /// the accepted peer; `None` (after saying why) where this kernel or sandbox has no
    /// io_uring, so the test checks nothing there.
    fn connected(conns: usize, conn: u32) -> Option<(Uring, RawFd, TcpStream)> {
        let mut d = match Uring::new(conns) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("skipped: io_uring unavailable here ({e})");
                return None;
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = SockAddr::from(listener.local_addr().unwrap());
        let fd = socket();
        // SAFETY: `addr` outlives the completion collected here.
        unsafe { d.connect(conn, fd, &addr) };
        assert_eq!(
            collect(&mut d, 1),
            vec![decode(user_data(conn, Op::Connect), 0)]
        );
        assert_eq!(d.table, d.registered[conn as usize], "connect registers");
        let (peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Some((d, fd, peer))
    }

    /// A receive message with one iovec and no control buffer.
    fn msg_over(iov: &mut libc::iovec) -> libc::msghdr {
        // SAFETY: an all-zero msghdr is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov;
        msg.msg_iovlen = 1;
        msg
    }

    #[test]
    fn registered_sockets_carry_a_request_and_close_for_real_on_release() {
        let Some((mut d, fd, mut peer)) = connected(2, 1) else {
            return;
        };
        let req = b"ping";
        let mut buf = [0u8; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg = msg_over(&mut iov);
        // SAFETY: `msg`, `iov` and `buf` outlive the completions; `req` is static.
        unsafe {
            d.recv(1, fd, &mut msg);
            d.send(1, fd, req.as_ptr(), req.len());
        }
        assert_eq!(collect(&mut d, 1), vec![decode(user_data(1, Op::Send), 4)]);
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, req);
        peer.write_all(b"pong!").unwrap();
        assert_eq!(collect(&mut d, 1), vec![decode(user_data(1, Op::Recv), 5)]);
        assert_eq!(&buf[..5], b"pong!");

        // Released and closed, the socket must really close: the peer reads EOF (a
        // registered slot still holding the file would keep the connection open).
        d.release(1);
        assert!(!d.registered[1]);
        // SAFETY: our descriptor; nothing references it any more.
        unsafe { libc::close(fd) };
        let mut rest = [0u8; 1];
        assert_eq!(peer.read(&mut rest).unwrap(), 0, "peer sees the close");
    }

    #[test]
    fn cancel_by_registered_slot_ends_a_pending_receive() {
        let Some((mut d, fd, _peer)) = connected(1, 0) else {
            return;
        };
        let mut buf = [0u8; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg = msg_over(&mut iov);
        // SAFETY: `msg` outlives the completions collected below.
        unsafe { d.recv(0, fd, &mut msg) };
        d.cancel(0, fd);
        let mut got = collect(&mut d, 2);
        got.sort_by_key(|c| c.op as u8);
        assert_eq!(
            got,
            vec![
                decode(user_data(0, Op::Recv), -libc::ECANCELED),
                decode(user_data(0, Op::Cancel), 1),
            ]
        );
        d.release(0);
        // SAFETY: our descriptor; nothing references it any more.
        unsafe { libc::close(fd) };
    }
}
