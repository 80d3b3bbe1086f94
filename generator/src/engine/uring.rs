//! The io_uring driver: one ring per worker thread, SINGLE_ISSUER | DEFER_TASKRUN.
//!
//! DEFER_TASKRUN measured +20–50% over a plain ring here (completion work runs only when
//! this thread enters the kernel, in a batch, instead of interrupting it). The consequence:
//! completions appear only inside [`Driver::wait`], which always enters with GETEVENTS and a
//! timeout, even a zero one.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types, IoUring};
use socket2::SockAddr;

use super::driver::{decode, user_data, Completion, Driver, Op, Wake};

pub struct Uring {
    ring: IoUring,
    /// More completions than can ever be outstanding: waiting for this many means
    /// "sleep until the timeout".
    never: usize,
    /// The kernel supports a minimum wait before returning with fewer completions (6.12+).
    min_wait: bool,
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
        Ok(Uring {
            ring,
            never: cq as usize + 1,
            min_wait,
        })
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
        let sqe = opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len())
            .build()
            .user_data(user_data(conn, Op::Connect));
        self.push(sqe);
    }

    unsafe fn send(&mut self, conn: u32, fd: RawFd, buf: *const u8, len: usize) {
        let sqe = opcode::Send::new(types::Fd(fd), buf, len.min(u32::MAX as usize) as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(conn, Op::Send));
        self.push(sqe);
    }

    unsafe fn recv(&mut self, conn: u32, fd: RawFd, msg: *mut libc::msghdr) {
        let sqe = opcode::RecvMsg::new(types::Fd(fd), msg)
            .build()
            .user_data(user_data(conn, Op::Recv));
        self.push(sqe);
    }

    fn cancel(&mut self, conn: u32, fd: RawFd) {
        let sqe = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(user_data(conn, Op::Cancel));
        self.push(sqe);
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
