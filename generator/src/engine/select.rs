//! Which I/O driver a run uses (`--io auto|uring|epoll`), and the process limits a large
//! connection pool needs.
//!
//! `auto` tries io_uring with the exact setup flags the workers use and falls back to epoll
//! when the ring cannot be created: container runtimes' default seccomp profiles answer
//! `io_uring_setup` with EPERM, `kernel.io_uring_disabled=2` gives EPERM too, kernels
//! before 6.1 reject DEFER_TASKRUN with EINVAL, and very old ones have no io_uring at all
//! (ENOSYS). The choice is made once, before any worker starts, so every thread of a run
//! uses the same driver and the report can name it.

use std::io;

use clap::ValueEnum;

use super::uring::Uring;

/// The `--io` flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum IoMode {
    /// io_uring when the kernel allows it, else epoll.
    #[default]
    Auto,
    /// io_uring only: the run fails when a ring cannot be set up.
    Uring,
    /// epoll (readiness-based, non-blocking sockets).
    Epoll,
}

/// The driver every worker of this run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    Uring,
    Epoll,
}

/// Decide the driver for `mode`. `Auto` falls back to epoll when a probe ring cannot be
/// built; the reason is returned so the caller can say it once.
pub fn choose(mode: IoMode) -> (DriverKind, Option<io::Error>) {
    choose_with(mode, || Uring::new(1).map(drop))
}

fn choose_with(
    mode: IoMode,
    probe: impl FnOnce() -> io::Result<()>,
) -> (DriverKind, Option<io::Error>) {
    match mode {
        IoMode::Uring => (DriverKind::Uring, None),
        IoMode::Epoll => (DriverKind::Epoll, None),
        IoMode::Auto => match probe() {
            Ok(()) => (DriverKind::Uring, None),
            Err(e) => (DriverKind::Epoll, Some(e)),
        },
    }
}

/// Raise the soft open-file limit to the hard limit (each connection is a descriptor; the
/// usual soft limit of 1024 is below a large pool). Returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on a live struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return u64::MAX;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// Descriptors open in this process now (stdio, files, ...), from /proc/self/fd.
pub fn fds_in_use() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(3, |d| d.count() as u64)
}

/// A clear sentence when `connections` sockets cannot all be open at once under the limit
/// `nofile`, with `in_use` descriptors already open and one ring or epoll set (plus slack)
/// per thread.
pub fn pool_warning(
    connections: usize,
    threads: usize,
    nofile: u64,
    in_use: u64,
) -> Option<String> {
    let room = nofile.saturating_sub(in_use + 2 * threads as u64 + 4);
    (connections as u64 > room).then(|| {
        format!(
            "the pool of {connections} connections cannot be opened: the open-file limit is \
             {nofile} (ulimit -n; raising the hard limit needs privileges), so at most about \
             {room} connections can be open; the rest are counted as connect errors"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_only_when_the_probe_fails() {
        let eperm = || Err(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(choose_with(IoMode::Auto, || Ok(())).0, DriverKind::Uring);
        let (kind, why) = choose_with(IoMode::Auto, eperm);
        assert_eq!(kind, DriverKind::Epoll);
        assert_eq!(why.unwrap().raw_os_error(), Some(libc::EPERM));
        // Explicit choices never probe.
        let (kind, why) = choose_with(IoMode::Uring, || panic!("probed"));
        assert_eq!(kind, DriverKind::Uring);
        assert!(why.is_none());
        assert_eq!(
            choose_with(IoMode::Epoll, || panic!("probed")).0,
            DriverKind::Epoll
        );
    }

    #[test]
    fn nofile_limit_is_raised_to_the_hard_limit() {
        let soft = raise_nofile_limit();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit on a live struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        assert_eq!(soft, lim.rlim_cur);
    }

    #[test]
    fn pool_warning_names_the_numbers() {
        assert!(pool_warning(100, 2, 1024, 10).is_none());
        let w = pool_warning(5000, 2, 1024, 10).unwrap();
        assert!(
            w.contains("5000") && w.contains("1024") && w.contains("1006"),
            "{w}"
        );
        assert!(fds_in_use() >= 3, "stdio at least");
    }
}
