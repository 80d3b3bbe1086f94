//! Per-request-name figures (the Locust stats table): one [`EndpointStats`] per scenario
//! request name, recorded beside the run's totals and merged the same exact way.
//!
//! A request counts as a failure when it got no response (connect, timeout, reset, ...) or a
//! status outside 2xx, as in the reference workload ("any non-2xx is a failure"). Requests
//! that expired in the wait queue before a connection was free had no request picked yet, so
//! they appear only in the run's totals.

use serde::{Deserialize, Serialize};

use super::{ErrorKind, Hist};

/// Figures of one request name over an interval (or, merged, over a run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// Response time (`done - intended`) of every response, failed statuses included.
    pub response: Hist,
    /// Responses received (any status).
    pub responses: u64,
    /// Responses with a status outside 2xx.
    pub bad_status: u64,
    /// Requests that ended without a response (connect, timeout, reset, ...).
    pub no_response: u64,
    /// Bytes received in responses.
    pub bytes_received: u64,
    /// Responses per status class, `[other, 1xx, 2xx, 3xx, 4xx, 5xx]` (as the run's totals):
    /// the per-name `gen_requests_total{endpoint,status}`.
    #[serde(default)]
    pub status: [u64; 6],
    /// Failures per [`ErrorKind`] (a response >= 400 counts as `status`, as in the totals):
    /// the per-name `gen_errors_total{endpoint,kind}`.
    #[serde(default)]
    pub errors: [u64; ErrorKind::COUNT],
}

impl EndpointStats {
    /// Requests that ended: responses plus failures without a response.
    pub fn requests(&self) -> u64 {
        self.responses.saturating_add(self.no_response)
    }

    /// Failed requests: a status outside 2xx, or no response.
    pub fn failures(&self) -> u64 {
        self.bad_status.saturating_add(self.no_response)
    }

    /// Records one response.
    #[inline]
    pub fn record_response(&mut self, response_ns: u64, status: u16, bytes: u64) {
        self.response.record_ns(response_ns);
        self.responses = self.responses.saturating_add(1);
        self.bytes_received = self.bytes_received.saturating_add(bytes);
        if !(200..300).contains(&status) {
            self.bad_status = self.bad_status.saturating_add(1);
        }
        super::count_status(&mut self.status, &mut self.errors, status);
    }

    /// Counts one request that failed without a response, of error `kind`.
    #[inline]
    pub fn record_failure(&mut self, kind: ErrorKind) {
        self.no_response = self.no_response.saturating_add(1);
        let e = &mut self.errors[kind.index()];
        *e = e.saturating_add(1);
    }

    /// Adds `other` (exact).
    pub fn merge(&mut self, other: &EndpointStats) {
        self.response.merge(&other.response);
        self.responses = self.responses.saturating_add(other.responses);
        self.bad_status = self.bad_status.saturating_add(other.bad_status);
        self.no_response = self.no_response.saturating_add(other.no_response);
        self.bytes_received = self.bytes_received.saturating_add(other.bytes_received);
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a = a.saturating_add(*b);
        }
        for (a, b) in self.errors.iter_mut().zip(&other.errors) {
            *a = a.saturating_add(*b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_non_2xx_or_no_response_and_merge_exactly() {
        let mut a = EndpointStats::default();
        a.record_response(1_000_000, 200, 10);
        a.record_response(2_000_000, 302, 10);
        a.record_response(3_000_000, 500, 10);
        let mut b = EndpointStats::default();
        b.record_failure(ErrorKind::Timeout);
        b.record_response(4_000_000, 204, 5);
        a.merge(&b);
        assert_eq!((a.requests(), a.failures(), a.responses), (5, 3, 4));
        assert_eq!(a.bytes_received, 35);
        assert_eq!(a.response.count(), 4);
        // The same classes and kinds as the run's totals.
        assert_eq!(a.status, [0, 0, 2, 1, 0, 1]);
        assert_eq!(a.errors[ErrorKind::Status.index()], 1);
        assert_eq!(a.errors[ErrorKind::Timeout.index()], 1);
    }
}
