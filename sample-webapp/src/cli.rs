//! Command-line flags. Every knob is off by default; a bad value is reported as one line
//! naming it, with exit code 2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;

use crate::knobs::{self, DelayDist};

/// The "Distributed Load Testing Using Kubernetes" sample web app, with latency and fault
/// injection knobs for checking a load generator against a known truth.
#[derive(Debug, Clone, Parser)]
// Values may start with '-' (`--delay -1ms`) so the error names the value, not a "flag".
#[command(name = "sample-webapp", version)]
pub struct Cli {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Runtime worker threads, 1 to 1024 [default: number of cores].
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Fixed delay before every response, e.g. 500us, 2ms, 1.5ms, 1s.
    #[arg(long, value_name = "DURATION", value_parser = knobs::parse_duration,
          conflicts_with = "delay_dist", allow_hyphen_values = true)]
    pub delay: Option<Duration>,

    /// Random delay before every response: exp:MEAN, uniform:LO..HI or fixed:D.
    #[arg(long, value_name = "DIST", value_parser = parse_dist, allow_hyphen_values = true)]
    pub delay_dist: Option<DelayDist>,

    /// Probability that a request that would get 200 gets 500 instead.
    #[arg(long, value_name = "P", default_value = "0", value_parser = knobs::parse_probability,
          allow_hyphen_values = true)]
    pub error_rate: f64,

    /// At most N requests in service; later ones wait for a slot, first come first served.
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_concurrency: Option<u32>,

    /// How long SIGUSR1 stalls all responses, in milliseconds.
    #[arg(long, value_name = "MS", default_value = "1000",
          value_parser = clap::value_parser!(u64).range(0..=3_600_000), allow_hyphen_values = true)]
    pub stall_signal_ms: u64,

    /// Serve HTTPS (HTTP/1.1 over TLS) with a self-signed certificate generated at start
    /// for localhost, 127.0.0.1 and ::1 (or the --tls-cert/--tls-key files).
    #[arg(long)]
    pub tls: bool,

    /// TLS certificate chain (PEM); implies --tls; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Write the generated certificate (PEM) to this file, for clients' --cacert.
    #[arg(long, value_name = "FILE", conflicts_with = "tls_cert")]
    pub tls_cert_out: Option<PathBuf>,

    /// Require TLS client certificates signed by a CA in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
}

fn parse_dist(s: &str) -> Result<DelayDist, knobs::KnobError> {
    s.parse()
}

impl Cli {
    /// The TLS settings when HTTPS is on (`--tls`, or any TLS file flag).
    pub fn tls(&self) -> Option<crate::tls::TlsSettings> {
        let on = self.tls
            || self.tls_cert.is_some()
            || self.tls_cert_out.is_some()
            || self.tls_client_ca.is_some();
        on.then(|| crate::tls::TlsSettings {
            files: self.tls_cert.clone().zip(self.tls_key.clone()),
            cert_out: self.tls_cert_out.clone(),
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The delay distribution in force, if any (`--delay D` is `fixed:D`).
    pub fn delay_dist(&self) -> Option<DelayDist> {
        match (self.delay, self.delay_dist) {
            (Some(d), _) if !d.is_zero() => Some(DelayDist::Fixed(d)),
            (_, Some(DelayDist::Fixed(d))) if d.is_zero() => None,
            (_, dist) => dist,
        }
    }
}

/// Parses the process arguments; on `--help`/`--version` or a bad flag, the exit code to
/// return (after printing help, or one error line on stderr).
pub fn parse() -> Result<Cli, ExitCode> {
    parse_from(std::env::args_os())
}

pub fn parse_from<I, T>(args: I) -> Result<Cli, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args).map_err(|err| match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("sample-webapp: {}", one_line(&err));
            ExitCode::from(2)
        }
    })
}

/// clap's first line already names the argument and the value; its tips and usage follow
/// on other lines, which scripts reading stderr do not want.
fn one_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("sample-webapp").chain(args.iter().copied())).unwrap()
    }

    fn error(args: &[&str]) -> String {
        let err = Cli::try_parse_from(std::iter::once("sample-webapp").chain(args.iter().copied()))
            .unwrap_err();
        one_line(&err)
    }

    #[test]
    fn defaults_are_off() {
        let c = cli(&[]);
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.delay_dist(), None);
        assert_eq!(c.error_rate, 0.0);
        assert_eq!(c.max_concurrency, None);
        assert_eq!(c.stall_signal_ms, 1000);
        assert_eq!(c.workers, None);
        assert_eq!(c.tls(), None);
        let t = cli(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .tls()
            .unwrap();
        assert_eq!(t.files, Some(("c.pem".into(), "k.pem".into())));
        assert!(cli(&["--tls"]).tls().unwrap().files.is_none());
    }

    #[test]
    fn knobs_parse() {
        let c = cli(&[
            "--delay",
            "1.5ms",
            "--error-rate",
            "0.01",
            "--max-concurrency",
            "4",
        ]);
        assert_eq!(
            c.delay_dist(),
            Some(DelayDist::Fixed(Duration::from_micros(1500)))
        );
        assert_eq!(c.error_rate, 0.01);
        assert_eq!(c.max_concurrency, Some(4));
        let c = cli(&["--delay-dist", "exp:2ms", "--workers", "3"]);
        assert_eq!(
            c.delay_dist(),
            Some(DelayDist::Exp(Duration::from_millis(2)))
        );
        assert_eq!(c.workers, Some(3));
        assert_eq!(cli(&["--delay", "0"]).delay_dist(), None);
    }

    #[test]
    fn bad_values_give_one_line_naming_them() {
        for (args, needle) in [
            (&["--delay", "2x"][..], "2x"),
            (&["--delay-dist", "normal:1ms"], "normal:1ms"),
            (&["--error-rate", "1.5"], "1.5"),
            (&["--workers", "0"], "0"),
            (&["--workers", "5000"], "5000"),
            (&["--max-concurrency", "0"], "0"),
            (&["--max-concurrency", "99999999999"], "99999999999"),
            (&["--max-concurrency", "-3"], "-3"),
            (&["--delay", "-1ms"], "-1ms"),
            (&["--error-rate", "-0.5"], "-0.5"),
            (&["--listen", "nowhere"], "nowhere"),
            (&["--stall-signal-ms", "abc"], "abc"),
            (&["--bogus"], "--bogus"),
            (
                &["--delay", "1ms", "--delay-dist", "exp:1ms"],
                "--delay-dist",
            ),
        ] {
            let line = error(args);
            assert!(line.contains(needle), "{args:?}: {line}");
            assert!(!line.contains('\n'));
        }
    }
}
