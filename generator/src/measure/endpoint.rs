//! Per-request-name figures (the Locust stats table): one [`EndpointStats`] per scenario
//! request name, recorded beside the run's totals and merged the same exact way.
//!
//! A request counts as a failure when it got no response (connect, timeout, reset, ...) or a
//! status outside 2xx, as in the reference workload ("any non-2xx is a failure"). Requests
//! that expired in the wait queue before a connection was free had no request picked yet, so
//! they appear only in the run's totals.

use serde::{Deserialize, Serialize};

use super::Hist;

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
    }

    /// Counts one request that failed without a response.
    #[inline]
    pub fn record_failure(&mut self) {
        self.no_response = self.no_response.saturating_add(1);
    }

    /// Adds `other` (exact).
    pub fn merge(&mut self, other: &EndpointStats) {
        self.response.merge(&other.response);
        self.responses = self.responses.saturating_add(other.responses);
        self.bad_status = self.bad_status.saturating_add(other.bad_status);
        self.no_response = self.no_response.saturating_add(other.no_response);
        self.bytes_received = self.bytes_received.saturating_add(other.bytes_received);
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
        b.record_failure();
        b.record_response(4_000_000, 204, 5);
        a.merge(&b);
        assert_eq!((a.requests(), a.failures(), a.responses), (5, 3, 4));
        assert_eq!(a.bytes_received, 35);
        assert_eq!(a.response.count(), 4);
    }
}
