//! The I/O drivers end to end (docs/drivers.md): both give the same exact counts on the same
//! workload, and under a seccomp filter that makes `io_uring_setup` fail with EPERM (what
//! container runtimes' default profiles do) `--io auto` runs on epoll and says so once,
//! while `--io uring` fails with one line naming the error.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use common::*;

/// Install, in the child before exec, a seccomp filter: io_uring_setup -> EPERM, everything
/// else allowed.
#[cfg(target_arch = "x86_64")]
fn block_io_uring(cmd: &mut Command) {
    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
    // SAFETY: only prctl calls between fork and exec (async-signal-safe), on stack data.
    unsafe {
        cmd.pre_exec(|| {
            let mut filter = [
                // A = seccomp_data.nr (offset 0)
                stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
                libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 1,
                    k: libc::SYS_io_uring_setup as u32,
                },
                stmt(
                    libc::BPF_RET | libc::BPF_K,
                    libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
                ),
                stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
            ];
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(target_arch = "x86_64")]
fn gen_without_io_uring(args: &[&str]) -> Output {
    let mut cmd = Command::new(gen_bin());
    cmd.args(args).arg("--quiet").env_remove("GEN_IO");
    block_io_uring(&mut cmd);
    cmd.output().expect("running gen under the seccomp filter")
}

#[cfg(target_arch = "x86_64")]
#[test]
fn auto_falls_back_to_epoll_when_seccomp_blocks_io_uring() {
    let app = Webapp::start(&[]);
    let before = app.requests();
    let out = gen_without_io_uring(&[
        "--io",
        "auto",
        "--rate",
        "500",
        "--duration",
        "1s",
        "--threads",
        "1",
        "--json",
        &app.url("/"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["run"]["driver"], "epoll");
    assert_eq!(count(&r, "successful"), 500);
    assert_eq!(app.requests() - before, 500);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("io_uring is unavailable")
            && stderr.contains("os error 1")
            && stderr.contains("epoll"),
        "{stderr}"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn forced_io_uring_under_the_filter_fails_with_one_line() {
    let out = gen_without_io_uring(&["--io", "uring", "-n", "10", "http://127.0.0.1:9/"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("io_uring setup failed") && stderr.contains("os error 1"),
        "{stderr}"
    );
}

/// The same open-loop workload on both drivers: exact counts by the server's own tally on
/// each. Latencies are printed for comparison (timing goals are benchmarks, see
/// docs/drivers.md for measured figures).
#[test]
fn both_drivers_send_exactly_the_schedule_on_the_same_workload() {
    let app = Webapp::start(&[]);
    for io in ["uring", "epoll"] {
        let before = app.requests();
        let r = gen_json(&[
            "--io",
            io,
            "--rate",
            "1000",
            "--duration",
            "2s",
            "--threads",
            "1",
            &app.url("/"),
        ]);
        assert_eq!(
            r["run"]["driver"],
            if io == "uring" { "io_uring" } else { "epoll" }
        );
        assert_eq!(count(&r, "sent"), 2000, "{io}");
        assert_eq!(count(&r, "successful"), 2000, "{io}");
        assert_eq!(count(&r, "errors") + count(&r, "dropped"), 0, "{io}");
        assert_eq!(
            app.requests() - before,
            2000,
            "{io}: the server's own count"
        );
        println!(
            "{io}: response time p50 {} µs, p99 {} µs; schedule lag p99 {} µs",
            lat(&r, "response_time", "p50_us"),
            lat(&r, "response_time", "p99_us"),
            lat(&r, "schedule_lag", "p99_us"),
        );
    }
}
