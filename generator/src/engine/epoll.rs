//! The epoll driver: the fallback when io_uring is unavailable (kernels before 6.1, where
//! DEFER_TASKRUN is missing, or container seccomp profiles that return EPERM/ENOSYS for
//! `io_uring_setup`), or chosen with `--io epoll`.
//!
//! It implements the same [`Driver`] contract as the io_uring driver, so the one engine
//! loop and the one connection state machine run unchanged: each queued operation ends as
//! exactly one [`Completion`]. Plain libc epoll rather than mio: the driver needs
//! `recvmsg` with a control buffer (kernel receive timestamps, SO_TIMESTAMPNS) on sockets it
//! does not own, nanosecond wait timeouts (`epoll_pwait2`) for pacing, and nothing else; mio
//! would wrap the sockets in its own types and round timeouts to milliseconds.
//!
//! How an operation completes:
//! - `connect` and `send` are tried at once (a send leaves at the instant the engine
//!   recorded as its send time); only when the socket would block is the operation parked
//!   until epoll reports the socket writable.
//! - `recv` is parked until the socket is readable, then `recvmsg` runs, so the kernel's
//!   arrival timestamp comes back exactly as on io_uring.
//! - Results of syscalls made outside [`Driver::wait`] are held and handed out by the next
//!   `wait`, as io_uring hands out completions.
//!
//! Sockets are registered edge-triggered once per connect; the driver tracks readiness per
//! slot and clears it when a syscall returns EAGAIN (or, for reads, when a read returned
//! less than asked: the socket was drained then, and any later data raises a new edge, the
//! same shortcut tokio takes). Closing a descriptor removes it from the epoll set, so a
//! reused descriptor number never sees stale state: slots are keyed by connection, and
//! every `connect` resets its slot.

use std::io;
use std::os::fd::RawFd;

use socket2::SockAddr;

use super::driver::{Completion, Driver, Op, Wake};

/// Events taken from the kernel per `epoll_wait` call.
const EVENTS: usize = 256;

#[derive(Clone, Copy)]
struct Slot {
    fd: RawFd,
    readable: bool,
    writable: bool,
    /// The peer closed (or the socket failed): sticky, reads never block again. Needed
    /// because the EOF edge can arrive with the last data, before the read that drains it.
    hup: bool,
    connecting: bool,
    /// A parked send: (buffer, length).
    send: Option<(*const u8, usize)>,
    /// A parked receive.
    recv: Option<*mut libc::msghdr>,
}

impl Slot {
    const EMPTY: Slot = Slot {
        fd: -1,
        readable: false,
        writable: false,
        hup: false,
        connecting: false,
        send: None,
        recv: None,
    };
}

pub struct Epoll {
    epfd: RawFd,
    slots: Vec<Slot>,
    /// Completions of operations that finished outside `wait` (immediate sends, errors).
    done: Vec<Completion>,
    events: Vec<libc::epoll_event>,
    /// `epoll_pwait2` (Linux 5.11+) takes a nanosecond timeout; older kernels get
    /// `epoll_wait` with the timeout rounded up to whole milliseconds.
    pwait2: bool,
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the epoll descriptor is ours; sockets belong to the engine.
        unsafe { libc::close(self.epfd) };
    }
}

impl Epoll {
    /// A driver sized for `conns` connections (slots grow if more are used).
    pub fn new(conns: usize) -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            epfd,
            slots: vec![Slot::EMPTY; conns],
            done: Vec::with_capacity(conns * 3 + 16),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
            pwait2: true,
        })
    }

    fn slot(&mut self, conn: u32) -> &mut Slot {
        let i = conn as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, Slot::EMPTY);
        }
        &mut self.slots[i]
    }

    /// Send now; `None` when the socket would block (the send stays parked).
    fn try_send(fd: RawFd, buf: *const u8, len: usize) -> Option<i32> {
        // SAFETY: the caller of `Driver::send` keeps `buf[..len]` valid until completion.
        let n = unsafe { libc::send(fd, buf.cast(), len, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        result(n as i32)
    }

    /// Receive now; `None` when there is nothing to read yet.
    fn try_recv(fd: RawFd, msg: *mut libc::msghdr) -> Option<i32> {
        // SAFETY: the caller of `Driver::recv` keeps `msg` and its buffers valid.
        let n = unsafe { libc::recvmsg(fd, msg, libc::MSG_DONTWAIT) };
        result(n as i32)
    }

    /// Run the parked operations of `conn` that its readiness allows.
    fn progress(&mut self, conn: u32) {
        let Epoll { slots, done, .. } = self;
        let s = &mut slots[conn as usize];
        if s.connecting && s.writable {
            s.connecting = false;
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt into a live c_int of the given size.
            let rc = unsafe {
                libc::getsockopt(
                    s.fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut err as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            let res = if rc < 0 { -errno() } else { -err };
            done.push(Completion {
                conn,
                op: Op::Connect,
                res,
            });
        }
        if let (Some((buf, len)), true) = (s.send, s.writable) {
            match Self::try_send(s.fd, buf, len) {
                Some(res) => {
                    s.send = None;
                    done.push(Completion {
                        conn,
                        op: Op::Send,
                        res,
                    });
                }
                None => s.writable = false,
            }
        }
        if let (Some(msg), true) = (s.recv, s.readable) {
            // SAFETY: `msg` is valid (Driver::recv contract); read its iovec length.
            let want = unsafe { (*(*msg).msg_iov).iov_len };
            match Self::try_recv(s.fd, msg) {
                Some(res) => {
                    s.recv = None;
                    if res > 0 && (res as usize) < want && !s.hup {
                        // Drained; new data (or the peer's FIN) raises a new edge.
                        s.readable = false;
                    }
                    done.push(Completion {
                        conn,
                        op: Op::Recv,
                        res,
                    });
                }
                None => s.readable = s.hup,
            }
        }
    }

    /// Wait for events up to `timeout_ns` and turn them into completions.
    fn poll(&mut self, timeout_ns: u64) -> io::Result<()> {
        let n = self.epoll_wait(timeout_ns)?;
        for k in 0..n {
            let ev = self.events[k];
            let conn = ev.u64 as u32;
            let Some(s) = self.slots.get_mut(conn as usize) else {
                continue;
            };
            let bits = ev.events as libc::c_int;
            if bits & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) != 0 {
                s.writable = true;
            }
            if bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLERR | libc::EPOLLHUP) != 0 {
                s.readable = true;
            }
            if bits & (libc::EPOLLRDHUP | libc::EPOLLERR | libc::EPOLLHUP) != 0 {
                s.hup = true;
            }
            self.progress(conn);
        }
        Ok(())
    }

    fn epoll_wait(&mut self, timeout_ns: u64) -> io::Result<usize> {
        let max = self.events.len() as libc::c_int;
        let ptr = self.events.as_mut_ptr();
        if self.pwait2 {
            let ts = libc::timespec {
                tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
            };
            // SAFETY: `events` holds `max` entries; `ts` is live for the call.
            let n = unsafe { libc::epoll_pwait2(self.epfd, ptr, max, &ts, std::ptr::null()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            match errno() {
                libc::EINTR => return Ok(0),
                libc::ENOSYS => self.pwait2 = false,
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        let ms = timeout_ns.div_ceil(1_000_000).min(i32::MAX as u64) as libc::c_int;
        // SAFETY: as above.
        let n = unsafe { libc::epoll_wait(self.epfd, ptr, max, ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        match errno() {
            libc::EINTR => Ok(0),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
}

impl Driver for Epoll {
    fn name(&self) -> &'static str {
        "epoll"
    }

    unsafe fn connect(&mut self, conn: u32, fd: RawFd, addr: *const SockAddr) {
        let epfd = self.epfd;
        *self.slot(conn) = Slot { fd, ..Slot::EMPTY };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: u64::from(conn),
        };
        // Registered before connecting, so no edge can be missed.
        // SAFETY: plain syscall with a live event struct.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            let res = -errno();
            self.done.push(Completion {
                conn,
                op: Op::Connect,
                res,
            });
            return;
        }
        // SAFETY: the caller keeps `addr` valid for the call (and beyond).
        let addr = unsafe { &*addr };
        // SAFETY: a valid sockaddr and its length.
        let rc = unsafe { libc::connect(fd, addr.as_ptr().cast(), addr.len()) };
        let res = if rc == 0 { 0 } else { -errno() };
        if res == -libc::EINPROGRESS {
            self.slots[conn as usize].connecting = true;
        } else {
            self.done.push(Completion {
                conn,
                op: Op::Connect,
                res,
            });
        }
    }

    unsafe fn send(&mut self, conn: u32, fd: RawFd, buf: *const u8, len: usize) {
        let s = self.slot(conn);
        s.fd = fd;
        s.send = Some((buf, len));
        // Optimistic: a fresh request almost always fits in the socket buffer.
        s.writable = true;
        self.progress(conn);
    }

    unsafe fn recv(&mut self, conn: u32, fd: RawFd, msg: *mut libc::msghdr) {
        let s = self.slot(conn);
        s.fd = fd;
        s.recv = Some(msg);
        if s.readable {
            self.progress(conn);
        }
    }

    fn cancel(&mut self, conn: u32, _fd: RawFd) {
        let s = self.slot(conn);
        let (connecting, send, recv) = (s.connecting, s.send.is_some(), s.recv.is_some());
        s.connecting = false;
        s.send = None;
        s.recv = None;
        for (pending, op) in [
            (connecting, Op::Connect),
            (send, Op::Send),
            (recv, Op::Recv),
        ] {
            if pending {
                self.done.push(Completion {
                    conn,
                    op,
                    res: -libc::ECANCELED,
                });
            }
        }
        self.done.push(Completion {
            conn,
            op: Op::Cancel,
            res: 0,
        });
    }

    fn wait(&mut self, timeout_ns: u64, wake: Wake, out: &mut Vec<Completion>) -> io::Result<()> {
        let timeout = match wake {
            // Completions are timed by the kernel: sleep the whole timeout, then collect
            // everything at once (what DEFER_TASKRUN gives the io_uring driver).
            Wake::Deadline if timeout_ns > 0 => {
                sleep_ns(timeout_ns);
                0
            }
            _ if !self.done.is_empty() => 0,
            // epoll has no minimum wait; a batch wake is a first-completion wake here.
            _ => timeout_ns,
        };
        self.poll(timeout)?;
        out.append(&mut self.done);
        Ok(())
    }
}

/// A syscall result as a completion result; `None` for EAGAIN (not ready yet).
fn result(n: i32) -> Option<i32> {
    if n >= 0 {
        return Some(n);
    }
    match errno() {
        libc::EAGAIN | libc::EINTR => None,
        e => Some(-e),
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn sleep_ns(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: plain syscall; an interrupted sleep just returns early (the loop re-checks).
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &ts, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::super::driver::testing::{collect, socket};
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    fn cq(conn: u32, op: Op, res: i32) -> Completion {
        Completion { conn, op, res }
    }

    #[test]
    fn connect_send_recv_and_cancel_each_complete_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = SockAddr::from(listener.local_addr().unwrap());
        let mut d = Epoll::new(2).unwrap();
        let fd = socket();
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a live c_int.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        unsafe { d.connect(1, fd, &addr) };
        let (mut server, _) = listener.accept().unwrap();
        let c = collect(&mut d, 1);
        assert_eq!(c, vec![cq(1, Op::Connect, 0)]);

        let req = b"ping";
        unsafe { d.send(1, fd, req.as_ptr(), req.len()) };
        let mut conn = crate::engine::conn::Conn::new();
        let msg = conn.rx_msg();
        unsafe { d.recv(1, fd, msg) };
        let mut got = [0u8; 4];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, req);
        // The kernel switches receive timestamps on asynchronously the first time a socket
        // asks (see conn.rs); give it time before the data arrives.
        std::thread::sleep(std::time::Duration::from_millis(200));
        server.write_all(b"pong!").unwrap();
        let mut c = collect(&mut d, 2);
        c.sort_by_key(|c| c.op as u8);
        assert_eq!(c, vec![cq(1, Op::Send, 4), cq(1, Op::Recv, 5)]);
        // The receive carried the kernel's arrival time, as on io_uring.
        assert!(conn.rx_timestamp().is_some(), "no SO_TIMESTAMPNS on epoll");

        // A parked receive is cancelled: it completes with ECANCELED, then the cancel.
        let msg = conn.rx_msg();
        unsafe { d.recv(1, fd, msg) };
        d.cancel(1, fd);
        let c = collect(&mut d, 2);
        assert_eq!(
            c,
            vec![cq(1, Op::Recv, -libc::ECANCELED), cq(1, Op::Cancel, 0)]
        );

        // A server close wakes a parked receive with 0 bytes.
        let msg = conn.rx_msg();
        unsafe { d.recv(1, fd, msg) };
        drop(server);
        let c = collect(&mut d, 1);
        assert_eq!(c[0].op, Op::Recv);
        assert_eq!(c[0].res, 0);
        unsafe { libc::close(fd) };
        drop(listener);
    }

    /// Data and the peer's FIN arriving in one edge: the short read that drains the data must
    /// not make the driver wait for another edge before reporting the end of stream.
    #[test]
    fn eof_arriving_with_the_last_data_is_not_lost() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = SockAddr::from(listener.local_addr().unwrap());
        let mut d = Epoll::new(1).unwrap();
        let fd = socket();
        unsafe { d.connect(0, fd, &addr) };
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(collect(&mut d, 1)[0].res, 0);
        server.write_all(b"partial").unwrap();
        drop(server);
        // Both have arrived before the driver looks (loopback delivers synchronously).
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut conn = crate::engine::conn::Conn::new();
        let msg = conn.rx_msg();
        unsafe { d.recv(0, fd, msg) };
        let c = collect(&mut d, 1);
        assert_eq!((c[0].op, c[0].res), (Op::Recv, 7));
        let msg = conn.rx_msg();
        unsafe { d.recv(0, fd, msg) };
        let mut out = Vec::new();
        // One non-blocking wait must be enough: no new edge will ever come.
        d.wait(0, Wake::FirstCompletion, &mut out).unwrap();
        assert_eq!(out.len(), 1, "end of stream not reported");
        assert_eq!((out[0].op, out[0].res), (Op::Recv, 0));
        unsafe { libc::close(fd) };
    }

    #[test]
    fn refused_connect_completes_with_the_errno() {
        // Bind then drop a listener: its port is closed for a while.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let addr = SockAddr::from(port);
        let mut d = Epoll::new(1).unwrap();
        let fd = socket();
        unsafe { d.connect(0, fd, &addr) };
        let c = collect(&mut d, 1);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].op, c[0].res), (Op::Connect, -libc::ECONNREFUSED));
        unsafe { libc::close(fd) };
    }

    #[test]
    fn a_full_socket_parks_the_send_until_writable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = SockAddr::from(listener.local_addr().unwrap());
        let mut d = Epoll::new(1).unwrap();
        let fd = socket();
        unsafe { d.connect(0, fd, &addr) };
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(collect(&mut d, 1)[0].res, 0);
        // Fill the socket until a send is parked (bounded: 64 MiB).
        let big = vec![7u8; 1 << 20];
        let mut sent = 0usize;
        let mut parked = false;
        for _ in 0..64 {
            unsafe { d.send(0, fd, big.as_ptr(), big.len()) };
            let mut out = Vec::new();
            d.wait(0, Wake::FirstCompletion, &mut out).unwrap();
            match out.first() {
                Some(c) => sent += c.res as usize,
                None => {
                    parked = true;
                    break;
                }
            }
        }
        assert!(parked, "a 64 MiB backlog never blocked");
        // Drain on the server side: the parked send completes.
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0usize;
            while let Ok(n) = server.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n;
            }
            total
        });
        let c = collect(&mut d, 1);
        assert_eq!(c[0].op, Op::Send);
        assert!(c[0].res > 0);
        sent += c[0].res as usize;
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        assert_eq!(reader.join().unwrap(), sent);
        unsafe { libc::close(fd) };
        let _ = listener.as_raw_fd();
    }
}
