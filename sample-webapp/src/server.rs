//! The listener, connections and lifecycle: bind, print the ready line, accept with
//! TCP_NODELAY, serve HTTP/1.1 keep-alive, SIGUSR1 stalls, and graceful shutdown on
//! SIGTERM/SIGINT (stop accepting, let in-flight requests finish, at most
//! [`SHUTDOWN_GRACE`]).

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::app::{App, Knobs};
use crate::cli::Cli;

/// How long in-flight requests get to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Listen backlog: thousands of connections may arrive at once when a generator starts (the
/// kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 8192;

/// Runs the app as the binary does: builds the runtime, serves until SIGTERM/SIGINT.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    raise_fd_limit();
    let workers = cli.workers.map_or_else(default_workers, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("sample-webapp-worker")
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let knobs = Knobs {
        delay: cli.delay_dist(),
        error_rate: cli.error_rate,
        max_concurrency: cli.max_concurrency.map(|n| n as usize),
    };
    let stall_signal = Duration::from_millis(cli.stall_signal_ms);
    let tls = cli
        .tls()
        .map(|t| crate::tls::server_config(&t))
        .transpose()?
        .map(tokio_rustls::TlsAcceptor::from);
    let listen = cli.listen;
    runtime.block_on(async move {
        let app = Arc::new(App::new(knobs).context("cannot start the timer thread")?);
        // Handlers go in before the ready line: a signal sent right after it must be ours,
        // not the default action (which for SIGUSR1 is to terminate).
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut usr1 = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;
        let listener = bind(listen)?;
        let addr = listener.local_addr()?;
        announce(addr);

        let stall_app = Arc::clone(&app);
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                stall_app.stall(stall_signal);
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        serve_with(listener, app, tls, shutdown).await;
        Ok::<(), anyhow::Error>(())
    })?;
    // Connections still open after the grace period are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Prints the one line tests and scripts wait for, with the real port.
fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "sample-webapp listening on {addr}");
    let _ = out.flush();
}

/// Binds with SO_REUSEADDR (restarts don't wait for TIME_WAIT) and a deep backlog.
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("cannot create the listening socket")?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot listen on {addr}"))?;
    socket
        .listen(BACKLOG)
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and waits (at most
/// [`SHUTDOWN_GRACE`]) for open connections to finish their in-flight requests; idle
/// keep-alive connections are closed at once.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    serve_with(listener, app, None, shutdown).await;
}

/// [`serve`], over TLS when `tls` is given (the handshake runs in the connection's task).
pub async fn serve_with(
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        // No per-request header timer: the generator, not the server, decides pacing, and
        // idle connections are closed at shutdown anyway.
        .header_read_timeout(None)
        // Pipelined requests get their responses in one write.
        .pipeline_flush(true);
    let (stop_tx, stop_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    if !is_per_connection(&err) {
                        // Out of file descriptors or similar: back off instead of spinning.
                        eprintln!("sample-webapp: accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let http = http.clone();
        let app = Arc::clone(&app);
        let stop = stop_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_conn(stream, http, app, stop).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let resumed = stream.get_ref().1.handshake_kind()
                            == Some(rustls::HandshakeKind::Resumed);
                        app.stats().tls_handshake(resumed);
                        serve_conn(stream, http, app, stop).await;
                    }
                    Err(_) => app.stats().tls_failed(),
                },
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(());
    if tokio::time::timeout(SHUTDOWN_GRACE, stop_tx.closed())
        .await
        .is_err()
    {
        eprintln!(
            "sample-webapp: {} connection(s) still busy after {:?}; exiting",
            stop_tx.receiver_count(),
            SHUTDOWN_GRACE
        );
    }
}

/// Serves one connection until it ends or shutdown begins (then finishes in-flight requests).
async fn serve_conn<I>(io: I, http: http1::Builder, app: Arc<App>, mut stop: watch::Receiver<()>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(|req| app.handle(req));
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    // Dropping `stop` here tells the shutdown wait this connection is done.
}

/// Errors that concern only the connection being accepted (the client gave up).
fn is_per_connection(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// Thousands of connections need more than the usual soft limit of 1024 descriptors.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for both calls; failure leaves the limit unchanged.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
