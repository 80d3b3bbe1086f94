//! The engine loop: one per worker thread, the same for every load shape and driver.
//!
//! Each iteration: release the requests that are due (open model) into a bounded queue,
//! hand queued requests to ready connections, reconnect closed ones, expire timeouts, flush
//! the interval snapshot once a second, then wait for completions or the next deadline,
//! whichever is first. Nothing here allocates, locks or logs per request: the queue, the
//! ready list, the reconnect queue and the completion batch are all sized at start.
//!
//! The users model is the closed model with a gate: a connection slot is a user, and it
//! enters the ready list only when both its connection is idle and its user is due (spawned,
//! and done thinking). Users waiting for their time sit in a min-heap of (time, slot) sized
//! to the slot count at start, so thinking costs no allocation and no timer per user; the
//! loop sleeps until the heap's earliest entry like any other deadline, on either driver.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::mpsc::Sender;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::conn::{Conn, Phase, RecvOutcome};
use super::driver::{Completion, Driver, Op, Wake};
use crate::http::tls::{TlsClient, TlsSession};
use crate::measure::{ErrorKind, Recorder, Snapshot};
use crate::plan::{Plan, Think, Users};
use crate::scenario::{Scenario, Workload};

const SEC: u64 = 1_000_000_000;
/// How often in-flight and queued requests are checked against the timeout.
const SCAN_NS: u64 = 10_000_000;
const BACKOFF_MIN: u64 = 10_000_000;
const BACKOFF_MAX: u64 = SEC;
/// Bound on how early a due wake-up is requested (and so on the CPU spun per wake-up).
const MAX_EARLY_NS: u64 = 200_000;

/// One second's (or the final partial second's) figures from one thread.
pub struct Interval {
    /// Index of the second since the end of warm-up.
    pub index: u64,
    pub snapshot: Snapshot,
}

/// What a worker needs to know, shared read-only by all workers.
pub struct Shared<'a> {
    pub plan: &'a Plan,
    pub request: &'a [u8],
    pub head_request: bool,
    pub addr: SockAddr,
    /// The host did not resolve: every connect fails (and is counted) without a socket.
    pub no_address: bool,
    pub timeout_ns: u64,
    pub max_queue: usize,
    pub threads: usize,
    /// Pacing resolution: wake-ups that release due requests are at least this far apart.
    pub resolution_ns: u64,
    /// Outside steering: stop, plan replacement (checked once per scan tick).
    pub control: &'a super::Control,
    /// https: the TLS client configuration (each worker takes its own copy).
    pub tls: Option<TlsClient>,
    /// A scenario picks and renders each request; `None` sends `request` every time.
    pub scenario: Option<&'a Scenario>,
    pub seed: u64,
    /// Run-wide number of this process's first user (a cluster worker's offset).
    pub first_user: u64,
}

/// What a worker reports when it ends.
#[derive(Debug, Default)]
pub struct WorkerEnd {
    /// Offset (from the run start) of the last completion, for request-bounded runs.
    pub last_ns: u64,
    /// Offset of the last send: a generator that fell behind sends past the planned end,
    /// and the achieved rate must be computed over the time it really took.
    pub last_sent_ns: u64,
    /// Connections that were open when the clock started.
    pub connected_at_start: usize,
}

/// Users model: which slots may send (see the module docs).
struct UserGate {
    think: Think,
    /// (time, slot) of users not yet spawned or thinking: at most one entry per slot.
    wake: BinaryHeap<Reverse<(u64, u32)>>,
    /// The slot's connection is idle but its user is not due yet.
    idle: Vec<bool>,
    /// The slot's user is due but its connection is not idle yet (connecting, busy sending).
    due: Vec<bool>,
    /// Think times, from the run's seed (per thread).
    rng: SmallRng,
}

pub struct Worker<'a, D: Driver> {
    sh: &'a Shared<'a>,
    driver: D,
    conns: Vec<Conn>,
    /// Ready connections (a stack: the most recently used is warmest in cache).
    ready: Vec<u32>,
    /// Connections to (re)open, in order of their retry time.
    down: VecDeque<u32>,
    /// Intended times of requests due but not yet sent.
    queue: VecDeque<u64>,
    busy: usize,
    rec: Recorder,
    completions: Vec<Completion>,
    origin: Instant,
    /// Open model: this thread's next global request index (i = id, id+T, ...).
    next_i: u64,
    /// Closed model: measured requests this thread may still start.
    quota: u64,
    last_ns: u64,
    last_sent_ns: u64,
    /// CLOCK_REALTIME minus our clock, to read the kernel's receive timestamps;
    /// refreshed every second so a slewing wall clock cannot drift far.
    real_offset: i128,
    /// Receives that came without a kernel timestamp. A few are normal (the kernel turns
    /// timestamping on asynchronously); past a handful the loop stops relying on them and
    /// wakes for every completion instead.
    untimed: u32,
    /// https: this thread's TLS client, with its own session cache.
    tls: Option<TlsClient>,
    /// The scenario's per-thread state (picks, rendered requests, user ids).
    work: Option<Workload<'a>>,
    /// Users model only: the gate between idle connections and due users.
    users: Option<UserGate>,
}

impl<'a, D: Driver> Worker<'a, D> {
    pub fn new(id: usize, sh: &'a Shared<'a>, driver: D, conns: usize) -> Self {
        let tls = sh.tls.as_ref().map(TlsClient::for_thread);
        Worker {
            sh,
            driver,
            conns: (0..conns)
                .map(|_| {
                    let mut c = Conn::new();
                    if tls.is_some() {
                        c.tls = Some(Box::new(TlsSession::new(sh.request.len())));
                    }
                    c
                })
                .collect(),
            ready: Vec::with_capacity(conns),
            down: (0..conns as u32).collect(),
            queue: VecDeque::with_capacity(sh.max_queue),
            busy: 0,
            rec: match sh.scenario {
                Some(sc) => Recorder::with_endpoints(sc.names.len()),
                None => Recorder::new(),
            },
            completions: Vec::with_capacity(conns * 4 + 64),
            origin: Instant::now(),
            next_i: id as u64,
            quota: sh.plan.quota(id, sh.threads),
            last_ns: 0,
            last_sent_ns: 0,
            real_offset: 0,
            untimed: 0,
            tls,
            work: sh.scenario.map(|sc| {
                Workload::new(sc, sh.seed, id, sh.threads, conns).numbered_from(sh.first_user)
            }),
            users: sh.plan.users().map(|u| {
                // Slot c of thread t is user c*T + t of the run (as for CSV rows), so the
                // threads' spawn times interleave into one global k / spawn_rate sequence.
                let mut wake = BinaryHeap::with_capacity(conns);
                for c in 0..conns {
                    let k = Users::user_of(c, id, sh.threads);
                    wake.push(Reverse((u.spawn_ns(k), c as u32)));
                }
                UserGate {
                    think: u.think,
                    wake,
                    idle: vec![false; conns],
                    due: vec![false; conns],
                    rng: SmallRng::seed_from_u64(
                        sh.seed
                            ^ 0x7468_696e_6b00
                            ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    ),
                }
            }),
        }
    }

    /// Connection `i` is idle: it joins the ready list, or in the users model waits there
    /// for its user to be due.
    #[inline]
    fn make_ready(&mut self, i: u32) {
        match &mut self.users {
            Some(g) if !g.due[i as usize] => g.idle[i as usize] = true,
            Some(g) => {
                g.due[i as usize] = false;
                self.ready.push(i);
            }
            None => self.ready.push(i),
        }
    }

    /// Users model: the user of slot `i` finished a request (response or failure) and
    /// thinks before its next one.
    #[inline]
    fn user_thinks(&mut self, i: u32, now: u64) {
        if let Some(g) = &mut self.users {
            let at = now.saturating_add(g.think.sample_ns(g.rng.next_u64()));
            g.wake.push(Reverse((at, i)));
        }
    }

    /// Users model: users whose spawn or think time has come become due.
    fn wake_users(&mut self, now: u64) {
        let Some(g) = &mut self.users else { return };
        while let Some(&Reverse((at, i))) = g.wake.peek() {
            if at > now {
                break;
            }
            g.wake.pop();
            if std::mem::take(&mut g.idle[i as usize]) {
                self.ready.push(i);
            } else {
                g.due[i as usize] = true;
            }
        }
    }

    /// Connections open and idle (ready, or waiting for their user).
    fn idle_count(&self) -> usize {
        self.ready.len()
            + self
                .users
                .as_ref()
                .map_or(0, |g| g.idle.iter().filter(|&&b| b).count())
    }

    pub fn driver_name(&self) -> &'static str {
        self.driver.name()
    }

    #[inline]
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn refresh_clock(&mut self) {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime fills a plain struct.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        let real = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        self.real_offset = real - self.now() as i128;
        if let Some(w) = &mut self.work {
            w.refresh_clock(ts.tv_sec);
        }
    }

    /// Open every connection before the clock starts; returns how many succeeded.
    /// Connect times are recorded; failures are counted and retried during the run.
    pub fn connect_all(&mut self) -> std::io::Result<usize> {
        self.refresh_clock();
        let deadline = self.now() + self.sh.timeout_ns;
        self.reconnect(self.now());
        while self.conns.iter().any(|c| {
            matches!(c.phase, Phase::Connecting | Phase::Handshaking)
                || (c.phase == Phase::Ready && c.send_inflight)
        }) {
            let now = self.now();
            if now >= deadline {
                self.expire(now);
            }
            self.driver.wait(
                deadline.saturating_sub(now).min(SCAN_NS),
                Wake::FirstCompletion,
                &mut self.completions,
            )?;
            self.complete_batch();
        }
        // Failed connects retry at once when the run starts.
        for &i in &self.down {
            self.conns[i as usize].since = 0;
        }
        Ok(self.idle_count())
    }

    /// Run the plan from `start` (the common instant all threads use) to its end.
    pub fn run(mut self, start: Instant, tx: &Sender<Interval>) -> std::io::Result<WorkerEnd> {
        let connected_at_start = self.idle_count();
        self.origin = start;
        self.refresh_clock();
        for c in &mut self.conns {
            c.since = 0;
        }
        let mut plan: std::sync::Arc<Plan> = std::sync::Arc::new(self.sh.plan.clone());
        let mut plan_seen = 0u64;
        let open = plan.is_open();
        let warm = plan.warmup_ns();
        let end = plan.end_ns();
        let threads = self.sh.threads as u64;
        let mut next_due = plan.due_ns(self.next_i);
        let mut next_tick = warm + SEC;
        let mut index = 0;
        let mut next_scan = SCAN_NS;
        let mut hard_stop = u64::MAX;
        // When the last wake-up released due requests; the next one waits at least
        // `resolution_ns` after it, so at high rates one wake-up sends a batch.
        let mut last_release = 0u64;
        // How late timed wake-ups return (EWMA, ns): a sleeping vCPU takes tens of µs to
        // run again. Long sleeps until a due request end this much early and the rest is
        // spun through with non-blocking polls, so requests leave on time.
        let mut oversleep = 0u64;

        loop {
            let now = self.now();
            if open && next_due.is_some_and(|d| d <= now) {
                last_release = now;
                while let Some(due) = next_due {
                    if due > now {
                        break;
                    }
                    self.enqueue(due, warm);
                    self.next_i += threads;
                    next_due = plan.due_ns(self.next_i);
                }
            }
            self.reconnect(now);
            if open {
                self.dispatch_queue(now);
            } else {
                self.wake_users(now);
                self.dispatch_closed(now, warm, end);
            }
            if now >= next_scan {
                self.expire(now);
                next_scan = now + SCAN_NS;
                if let Some(p) = self.sh.control.newer_plan(&mut plan_seen) {
                    plan = p;
                    next_due = plan.due_ns(self.next_i);
                }
                if self.sh.control.stopped() {
                    next_due = None;
                    self.quota = 0;
                }
            }
            if now >= next_tick {
                self.refresh_clock();
                self.flush(tx, index);
                index += 1;
                next_tick += SEC;
            }
            let schedule_over = if open {
                next_due.is_none()
            } else {
                self.quota == 0 || end.is_some_and(|e| now >= e)
            };
            if schedule_over {
                if self.queue.is_empty() && self.busy == 0 {
                    break;
                }
                if hard_stop == u64::MAX {
                    // Everything outstanding times out by then; this is only a backstop.
                    hard_stop = now + self.sh.timeout_ns + SEC;
                } else if now >= hard_stop {
                    break;
                }
            }
            let mut deadline = next_tick.min(next_scan);
            let mut due_wake = false;
            if let Some(due) = next_due {
                let release_at = due.max(last_release + self.sh.resolution_ns);
                if release_at < deadline {
                    deadline = release_at;
                    due_wake = true;
                }
            }
            if let Some(&i) = self.down.front() {
                deadline = deadline.min(self.conns[i as usize].since);
            }
            if let Some(Reverse((at, _))) = self.users.as_ref().and_then(|g| g.wake.peek()) {
                deadline = deadline.min(*at);
            }
            let before = self.now();
            // Waking early costs a spin of about the wake-up jitter; only worth it when the
            // sleep is long next to it (at high rates the loop is awake anyway, and spinning
            // through every short gap would burn the core).
            let wake_at = if due_wake && deadline.saturating_sub(before) >= 2 * oversleep {
                deadline.saturating_sub(oversleep)
            } else {
                deadline
            };
            let timeout = wake_at.saturating_sub(before);
            // Responses are timed by the kernel (SO_TIMESTAMPNS), so the loop need not wake
            // per response: the open model sleeps until its next deadline unless a request
            // waits for a connection; the closed model lets completions collect for the
            // pacing resolution before waking.
            let wake = if open && self.queue.is_empty() && !schedule_over && self.untimed < 64 {
                Wake::Deadline
            } else {
                Wake::Batch {
                    min_wait_us: (self.sh.resolution_ns / 1000) as u32,
                }
            };
            self.driver.wait(timeout, wake, &mut self.completions)?;
            if due_wake && timeout > 0 {
                let now = self.now();
                // Learn only from waits the timer ended.
                if now >= wake_at && (wake == Wake::Deadline || self.completions.is_empty()) {
                    oversleep = (oversleep * 7 + (now - wake_at).min(MAX_EARLY_NS)) / 8;
                }
            }
            self.complete_batch();
        }
        let closed = self.shutdown();
        self.flush(tx, index);
        closed?;
        Ok(WorkerEnd {
            last_ns: self.last_ns,
            last_sent_ns: self.last_sent_ns,
            connected_at_start,
        })
    }

    fn flush(&mut self, tx: &Sender<Interval>, index: u64) {
        let snapshot = self.rec.take_snapshot();
        // The receiver only goes away if the main thread died; nothing left to report to.
        let _ = tx.send(Interval { index, snapshot });
    }

    /// A request is due: queue it, or count it as dropped when the queue is full.
    #[inline]
    fn enqueue(&mut self, due: u64, warm: u64) {
        if self.queue.len() < self.sh.max_queue {
            self.queue.push_back(due);
        } else if due >= warm {
            self.rec.record_dropped();
        }
    }

    fn dispatch_queue(&mut self, now: u64) {
        while !self.queue.is_empty() {
            let Some(i) = self.ready.pop() else { break };
            let intended = self.queue.pop_front().unwrap_or(now);
            self.begin(i, intended, now);
        }
    }

    fn dispatch_closed(&mut self, now: u64, warm: u64, end: Option<u64>) {
        if end.is_some_and(|e| now >= e) {
            return;
        }
        while self.quota > 0 {
            let Some(i) = self.ready.pop() else { break };
            if now >= warm {
                self.quota -= 1;
            }
            self.begin(i, now, now);
        }
    }

    #[inline]
    fn begin(&mut self, i: u32, intended: u64, now: u64) {
        let (req, head) = match &mut self.work {
            None => (self.sh.request, self.sh.head_request),
            Some(w) => {
                let (_, head) = w.next(i, (now as i128 + self.real_offset) as i64);
                (w.bytes(i), head)
            }
        };
        let c = &mut self.conns[i as usize];
        c.begin(intended, now, head);
        self.busy += 1;
        self.last_sent_ns = now;
        if intended >= self.sh.plan.warmup_ns() {
            self.rec.record_sent(req.len() as u64);
        }
        if c.tls.is_some() {
            self.tls_send_request(i);
            return;
        }
        c.send_inflight = true;
        c.pending += 1;
        // SAFETY: the request bytes live in `Shared`, which outlives the worker and its
        // driver, or in this connection's buffer in `work`, untouched until the send is done
        // (a connection gets its next request only when Ready with no send in flight).
        unsafe { self.driver.send(i, c.fd, req.as_ptr(), req.len()) };
    }

    fn arm_recv(&mut self, i: u32) {
        let c = &mut self.conns[i as usize];
        let msg = c.rx_msg();
        c.recv_armed = true;
        c.pending += 1;
        // SAFETY: the message, receive buffer and control buffer belong to the connection
        // slot, which is never moved, dropped or resized while a receive is armed (rx_msg is
        // only called with none outstanding).
        unsafe { self.driver.recv(i, c.fd, msg) };
    }

    /// Open sockets for the connections whose retry time has come.
    fn reconnect(&mut self, now: u64) {
        while let Some(&i) = self.down.front() {
            let c = &mut self.conns[i as usize];
            if c.since > now {
                break;
            }
            self.down.pop_front();
            let opened = if self.sh.no_address {
                Err(std::io::ErrorKind::AddrNotAvailable.into())
            } else {
                open_socket(&self.sh.addr)
            };
            match opened {
                Ok(fd) => {
                    c.fd = fd;
                    c.phase = Phase::Connecting;
                    c.since = now;
                    c.timed_out = false;
                    c.pending += 1;
                    // SAFETY: `addr` lives in `Shared`, which outlives the driver.
                    unsafe { self.driver.connect(i, fd, &self.sh.addr) };
                }
                Err(_) => {
                    // Out of file descriptors or ports: counted, retried with backoff.
                    if now >= self.sh.plan.warmup_ns() {
                        self.rec.record_error(ErrorKind::Connect);
                    }
                    c.backoff = (c.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    c.since = now + c.backoff;
                    self.down.push_back(i);
                }
            }
        }
    }

    /// Time out requests that waited (queued or in flight) longer than the timeout, and
    /// connects that take too long.
    fn expire(&mut self, now: u64) {
        let limit = now.saturating_sub(self.sh.timeout_ns);
        let warm = self.sh.plan.warmup_ns();
        while let Some(&due) = self.queue.front() {
            if due > limit {
                break;
            }
            self.queue.pop_front();
            if due >= warm {
                self.rec.record_error(ErrorKind::Timeout);
            }
        }
        for i in 0..self.conns.len() as u32 {
            let c = &mut self.conns[i as usize];
            match c.phase {
                Phase::Busy if c.req.sent <= limit => self.fail(i, ErrorKind::Timeout),
                Phase::Handshaking if c.since <= limit => {
                    self.tls_failed(i, now, ErrorKind::Timeout)
                }
                Phase::Connecting if c.since <= limit && !c.timed_out => {
                    c.timed_out = true;
                    c.pending += 1;
                    self.driver.cancel(i, c.fd);
                }
                _ => {}
            }
        }
    }

    fn complete_batch(&mut self) {
        if self.completions.is_empty() {
            return;
        }
        let now = self.now();
        // Swap out to iterate while mutating self; the vector keeps its capacity.
        let mut batch = std::mem::take(&mut self.completions);
        for c in batch.drain(..) {
            self.complete(c, now);
        }
        self.completions = batch;
    }

    fn complete(&mut self, cq: Completion, now: u64) {
        let i = cq.conn;
        let c = &mut self.conns[i as usize];
        c.pending = c.pending.saturating_sub(1);
        if c.phase == Phase::Draining {
            if c.pending == 0 {
                self.finish_close(i, now);
            }
            return;
        }
        let warm = self.sh.plan.warmup_ns();
        match cq.op {
            Op::Cancel => {}
            Op::Connect => match c.on_connect(cq.res, now) {
                Ok(ns) => {
                    self.rec.record_connect(ns);
                    if self.tls.is_some() {
                        self.tls_start(i, now);
                        return;
                    }
                    self.arm_recv(i);
                    self.make_ready(i);
                }
                Err(kind) => {
                    if now >= warm {
                        self.rec.record_error(kind);
                    }
                    self.close(i, now, true);
                }
            },
            Op::Send => {
                let request = match &self.work {
                    None => self.sh.request,
                    Some(w) => w.bytes(i),
                };
                let total = request.len();
                match c.on_send(cq.res, total) {
                    Ok(true) => {
                        let off = c.tx_off;
                        c.send_inflight = true;
                        c.pending += 1;
                        let rest = &c.tx(request)[off..];
                        // SAFETY: as in `begin`; a TLS record buffer never moves while a send
                        // from it is out (it only grows when empty).
                        unsafe { self.driver.send(i, c.fd, rest.as_ptr(), rest.len()) };
                    }
                    Ok(false) => {
                        // The response may have completed before the send's completion
                        // was seen; the connection is reusable only once both are done.
                        if c.phase == Phase::Ready && !c.recv_armed {
                            self.arm_recv(i);
                            self.make_ready(i);
                        }
                    }
                    Err(kind) => {
                        if c.phase == Phase::Busy {
                            self.fail(i, kind);
                        } else if c.phase == Phase::Handshaking {
                            self.tls_failed(i, now, ErrorKind::Tls);
                        } else {
                            self.close(i, now, false);
                        }
                    }
                }
            }
            Op::Recv if c.phase == Phase::Handshaking => self.tls_handshake_recv(i, cq.res, now),
            Op::Recv => {
                match c.on_recv(
                    cq.res,
                    arrival(c, cq.res, self.real_offset, now, &mut self.untimed),
                ) {
                    RecvOutcome::More => self.arm_recv(i),
                    RecvOutcome::Complete { done, clean } => {
                        let r = c.req;
                        c.phase = Phase::Ready;
                        self.busy -= 1;
                        self.last_ns = now;
                        if r.intended >= warm {
                            self.rec.record_response(
                                r.intended,
                                r.sent,
                                r.first_byte,
                                r.done,
                                done.status,
                                r.bytes,
                            );
                            if let Some(w) = &self.work {
                                let ep = w.endpoint(i);
                                self.rec.record_endpoint(
                                    ep,
                                    r.intended,
                                    r.done,
                                    done.status,
                                    r.bytes,
                                );
                            }
                        }
                        // Think time runs from the response's arrival (kernel time), not from its reaping.
                        self.user_thinks(i, r.done);
                        if clean {
                            if !self.conns[i as usize].send_inflight {
                                self.arm_recv(i);
                                self.make_ready(i);
                            }
                        } else {
                            self.close(i, now, false);
                        }
                    }
                    RecvOutcome::Fail(kind) => self.fail(i, kind),
                    RecvOutcome::IdleClosed => self.close(i, now, false),
                }
            }
        }
    }

    /// The request in flight on `i` failed: count it, close the connection.
    fn fail(&mut self, i: u32, kind: ErrorKind) {
        let now = self.now();
        let c = &self.conns[i as usize];
        if c.phase == Phase::Busy {
            if c.req.intended >= self.sh.plan.warmup_ns() {
                self.rec.record_error(kind);
                if let Some(w) = &self.work {
                    self.rec.record_endpoint_failure(w.endpoint(i), kind);
                }
            }
            self.last_ns = now;
            self.user_thinks(i, now);
        }
        self.close(i, now, false);
    }

    /// Close connection `i`; once the driver owes it nothing, it is reconnected (after a
    /// backoff when `failed_connect`).
    fn close(&mut self, i: u32, now: u64, failed_connect: bool) {
        if let Some(p) = self.ready.iter().position(|&r| r == i) {
            self.ready.swap_remove(p);
            // Users model: a ready slot's user was due; it stays due for the new connection.
            if let Some(g) = &mut self.users {
                g.due[i as usize] = true;
            }
        }
        if let Some(g) = &mut self.users {
            g.idle[i as usize] = false;
        }
        let c = &mut self.conns[i as usize];
        if c.phase == Phase::Busy {
            self.busy -= 1;
        }
        c.phase = Phase::Draining;
        c.backoff = if failed_connect {
            (c.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
        } else {
            0
        };
        if c.pending > 0 {
            // Wakes a pending receive with 0 bytes; its completion finishes the close.
            // SAFETY: plain syscall on a descriptor this connection owns.
            unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
        } else {
            self.finish_close(i, now);
        }
    }

    fn finish_close(&mut self, i: u32, now: u64) {
        let c = &mut self.conns[i as usize];
        if c.fd >= 0 {
            self.driver.release(i);
            // SAFETY: the descriptor is ours and no operation references it any more.
            unsafe { libc::close(c.fd) };
            c.fd = -1;
        }
        c.phase = Phase::Down;
        c.send_inflight = false;
        c.recv_armed = false;
        c.since = now + c.backoff;
        self.down.push_back(i);
    }

    /// End of run: whatever is still queued or in flight (only possible at the backstop) is
    /// counted as timed out, never silently dropped. Then every socket is shut down and the
    /// driver's last completions are collected before the buffers they point into are freed.
    fn shutdown(&mut self) -> std::io::Result<()> {
        let warm = self.sh.plan.warmup_ns();
        for due in self.queue.drain(..) {
            if due >= warm {
                self.rec.record_error(ErrorKind::Timeout);
            }
        }
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            if c.phase == Phase::Busy && c.req.intended >= warm {
                self.rec.record_error(ErrorKind::Timeout);
                if let Some(w) = &self.work {
                    self.rec
                        .record_endpoint_failure(w.endpoint(i as u32), ErrorKind::Timeout);
                }
            }
            if c.fd >= 0 && c.pending > 0 {
                // SAFETY: plain syscall on a descriptor this connection owns.
                unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
                c.pending += 1;
                self.driver.cancel(i as u32, c.fd);
            }
        }
        let deadline = self.now() + SEC;
        while self.conns.iter().any(|c| c.pending > 0) && self.now() < deadline {
            self.driver
                .wait(SCAN_NS, Wake::FirstCompletion, &mut self.completions)?;
            for cq in self.completions.drain(..) {
                let c = &mut self.conns[cq.conn as usize];
                c.pending = c.pending.saturating_sub(1);
            }
        }
        for (i, c) in self.conns.iter_mut().enumerate() {
            if c.fd >= 0 {
                self.driver.release(i as u32);
                // SAFETY: descriptor owned by this connection; nothing references it now.
                unsafe { libc::close(c.fd) };
                c.fd = -1;
            }
        }
        Ok(())
    }
}

// The TLS steps of this loop (handshake, sealing requests), kept beside it in their own file.
#[path = "worker_tls.rs"]
mod tls;

/// When the data of a receive arrived, on our clock: the kernel's timestamp when it gave
/// one, bounded by the send and by `reaped` (clock steps cannot produce nonsense), else the
/// time the completion was reaped.
#[inline]
fn arrival(c: &Conn, res: i32, real_offset: i128, reaped: u64, untimed: &mut u32) -> u64 {
    if c.phase != Phase::Busy || res <= 0 {
        return reaped;
    }
    match c.rx_timestamp() {
        Some(real) => (real - real_offset).clamp(c.req.sent as i128, reaped as i128) as u64,
        None => {
            *untimed = untimed.saturating_add(1);
            reaped
        }
    }
}

/// A non-blocking TCP socket with Nagle off (requests are written whole; Nagle would hold
/// back a partial last segment) and kernel receive timestamps on.
fn open_socket(addr: &SockAddr) -> std::io::Result<i32> {
    let s = Socket::new(
        Domain::from(i32::from(addr.family())),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_tcp_nodelay(true)?;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int and its size. Failure only costs
    // precision (responses are then timed when reaped), so it is not an error.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Ok(s.into_raw_fd())
}
