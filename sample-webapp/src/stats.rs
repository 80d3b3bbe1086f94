//! Counters behind `GET /_stats`: what was served since start, as the known truth a load
//! generator's own counts are compared with.
//!
//! Every counter is a relaxed atomic: the request path takes no lock. `/_stats` and
//! `/_admin/*` calls are not counted, so polling the stats does not change them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Which counted route a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Root,
    Login,
    Metrics,
    /// Any other path (answered 404).
    Other,
}

impl Route {
    const ALL: [Route; 4] = [Route::Root, Route::Login, Route::Metrics, Route::Other];

    fn name(self) -> &'static str {
        match self {
            Route::Root => "/",
            Route::Login => "/login",
            Route::Metrics => "/metrics",
            Route::Other => "other",
        }
    }
}

/// Upper bounds (µs, exclusive) of the release-lateness histogram buckets; a last bucket
/// takes the rest.
const LATENESS_BOUNDS_US: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000];

/// Status codes the app can answer with; anything else lands in `other`.
const STATUSES: [u16; 6] = [200, 400, 404, 405, 413, 500];

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    requests: AtomicU64,
    bytes: AtomicU64,
    in_flight: AtomicU64,
    delayed: AtomicU64,
    errors_injected: AtomicU64,
    stalls: AtomicU64,
    routes: [AtomicU64; Route::ALL.len()],
    statuses: [AtomicU64; STATUSES.len() + 1],
    /// How late held responses were released past their due time: the server's own view of
    /// the delay knobs' precision.
    lateness: [AtomicU64; LATENESS_BOUNDS_US.len() + 1],
    /// `--tls`: completed handshakes, how many resumed a session, and failed ones.
    tls_handshakes: AtomicU64,
    tls_resumed: AtomicU64,
    tls_failed: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            errors_injected: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            routes: Default::default(),
            statuses: Default::default(),
            lateness: Default::default(),
            tls_handshakes: AtomicU64::new(0),
            tls_resumed: AtomicU64::new(0),
            tls_failed: AtomicU64::new(0),
        }
    }
}

/// Counts a request as in flight until dropped, which also covers a client that hangs up
/// while its response is still waiting.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Stats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl Stats {
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }

    /// Records a response handed to the connection; `body_bytes` is what goes on the wire
    /// (0 for HEAD).
    pub fn served(&self, route: Route, status: u16, body_bytes: usize) {
        self.requests.fetch_add(1, Relaxed);
        self.bytes.fetch_add(body_bytes as u64, Relaxed);
        self.routes[route as usize].fetch_add(1, Relaxed);
        let slot = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len());
        self.statuses[slot].fetch_add(1, Relaxed);
    }

    pub fn delayed(&self) {
        self.delayed.fetch_add(1, Relaxed);
    }

    /// Records how late (ns) a held response was released.
    pub fn released_late_by(&self, ns: u64) {
        let us = ns / 1_000;
        let slot = LATENESS_BOUNDS_US
            .iter()
            .position(|&bound| us < bound)
            .unwrap_or(LATENESS_BOUNDS_US.len());
        self.lateness[slot].fetch_add(1, Relaxed);
    }

    pub fn error_injected(&self) {
        self.errors_injected.fetch_add(1, Relaxed);
    }

    pub fn stalled(&self) {
        self.stalls.fetch_add(1, Relaxed);
    }

    /// A TLS handshake completed (`resumed`: with an earlier session).
    pub fn tls_handshake(&self, resumed: bool) {
        self.tls_handshakes.fetch_add(1, Relaxed);
        self.tls_resumed.fetch_add(u64::from(resumed), Relaxed);
    }

    /// A TLS handshake failed (bad certificate, no client certificate, garbage).
    pub fn tls_failed(&self) {
        self.tls_failed.fetch_add(1, Relaxed);
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    /// The `/_stats` document; `config` describes the knobs in force.
    pub fn to_json(&self, config: serde_json::Value) -> serde_json::Value {
        let routes: serde_json::Map<_, _> = Route::ALL
            .iter()
            .map(|&r| {
                (
                    r.name().to_owned(),
                    self.routes[r as usize].load(Relaxed).into(),
                )
            })
            .collect();
        let mut statuses: serde_json::Map<_, _> = STATUSES
            .iter()
            .zip(&self.statuses)
            .map(|(s, n)| (s.to_string(), n.load(Relaxed).into()))
            .collect();
        statuses.insert(
            "other".into(),
            self.statuses[STATUSES.len()].load(Relaxed).into(),
        );
        let mut lateness = serde_json::Map::new();
        for (i, n) in self.lateness.iter().enumerate() {
            let key = match LATENESS_BOUNDS_US.get(i) {
                Some(bound) => format!("<{bound}"),
                None => format!(">={}", LATENESS_BOUNDS_US[LATENESS_BOUNDS_US.len() - 1]),
            };
            lateness.insert(key, n.load(Relaxed).into());
        }
        serde_json::json!({
            "requests": self.requests.load(Relaxed),
            "bytes": self.bytes.load(Relaxed),
            "in_flight": self.in_flight.load(Relaxed),
            "delayed": self.delayed.load(Relaxed),
            "errors_injected": self.errors_injected.load(Relaxed),
            "stalls": self.stalls.load(Relaxed),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "paths": routes,
            "status": statuses,
            "release_lateness_us": lateness,
            "tls": {
                "handshakes": self.tls_handshakes.load(Relaxed),
                "resumed": self.tls_resumed.load(Relaxed),
                "failed": self.tls_failed.load(Relaxed),
            },
            "config": config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reports() {
        let stats = Stats::default();
        {
            let _guard = stats.enter();
            assert_eq!(stats.in_flight(), 1);
            stats.served(Route::Login, 200, 20);
        }
        stats.served(Route::Other, 404, 207);
        stats.served(Route::Root, 599, 0);
        stats.error_injected();
        stats.released_late_by(3_500);
        stats.released_late_by(9_000_000);
        stats.tls_handshake(false);
        stats.tls_handshake(true);
        stats.tls_failed();
        let json = stats.to_json(serde_json::Value::Null);
        assert_eq!(json["requests"], 3);
        assert_eq!(json["bytes"], 227);
        assert_eq!(json["in_flight"], 0);
        assert_eq!(json["paths"]["/login"], 1);
        assert_eq!(json["paths"]["other"], 1);
        assert_eq!(json["status"]["200"], 1);
        assert_eq!(json["status"]["404"], 1);
        assert_eq!(json["status"]["other"], 1);
        assert_eq!(json["errors_injected"], 1);
        assert_eq!(json["release_lateness_us"]["<5"], 1);
        assert_eq!(json["release_lateness_us"][">=5000"], 1);
        assert_eq!(json["release_lateness_us"]["<1"], 0);
        assert_eq!(json["tls"]["handshakes"], 2);
        assert_eq!(json["tls"]["resumed"], 1);
        assert_eq!(json["tls"]["failed"], 1);
    }
}
