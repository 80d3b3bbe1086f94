//! [`Hist`]: the one latency histogram shape used everywhere in `gen`.
//!
//! An HDR histogram of `u64` counts with 3 significant digits, tracking whole microseconds
//! from [`Hist::LOW_US`] (1 µs) to [`Hist::HIGH_US`] (1 h). Every `Hist` has exactly these
//! bounds, so adding two of them is a plain element-wise count addition: merging is exact and
//! cannot fail. Deserialization rejects histograms with any other bounds for the same reason.
//!
//! Recording takes nanoseconds (the engine's clock unit) and converts to microseconds by
//! truncation; anything below 1 µs records as 1 µs, anything above 1 h saturates at 1 h.
//! Recording never allocates and never panics.
//!
//! Serde form: a base64 string (standard alphabet, padded) of the histogram's HdrHistogram V2
//! encoding (uncompressed; the V2 format already run-length encodes empty buckets). Any HDR
//! implementation can decode it.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer as HdrDeserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;

/// V2 encoding cookie (uncompressed; base 0x1c849303 with the word-size bits 0x10), as
/// written by every HdrHistogram implementation.
const V2_COOKIE: u32 = 0x1c84_9313;
/// V2 header: cookie, payload length, normalizing offset, digits, low, high, int/double ratio.
const V2_HEADER_LEN: usize = 4 + 4 + 4 + 4 + 8 + 8 + 8;

/// A latency histogram in microseconds, 1 µs ..= 1 h, 3 significant digits.
#[derive(Clone, PartialEq)]
pub struct Hist(Histogram<u64>);

impl Hist {
    /// Lowest discernible value, µs.
    pub const LOW_US: u64 = 1;
    /// Highest trackable value, µs (1 hour). Larger values saturate here.
    pub const HIGH_US: u64 = 3_600_000_000;
    /// Significant decimal digits kept (relative error below 0.1%).
    pub const SIGFIG: u8 = 3;

    /// An empty histogram. Allocates its bucket array (~190 KiB), so call it off the hot path.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts; a failure here is a programming
        // error caught by every test in this module.
        Hist(
            Histogram::new_with_bounds(Self::LOW_US, Self::HIGH_US, Self::SIGFIG)
                .expect("valid bounds"),
        )
    }

    /// Records one value given in nanoseconds. Never allocates, never panics.
    #[inline]
    pub fn record_ns(&mut self, nanos: u64) {
        self.record_us(nanos / 1_000);
    }

    /// Records one value given in microseconds, clamped to [`Self::LOW_US`]..=[`Self::HIGH_US`].
    #[inline]
    pub fn record_us(&mut self, micros: u64) {
        // hdrhistogram would put 0 in its own zero bucket; the contract is "below 1 µs is 1 µs".
        self.0
            .saturating_record(micros.clamp(Self::LOW_US, Self::HIGH_US));
    }

    /// Records `count` copies of one value in microseconds (clamped like [`Self::record_us`]).
    pub fn record_us_n(&mut self, micros: u64, count: u64) {
        self.0
            .saturating_record_n(micros.clamp(Self::LOW_US, Self::HIGH_US), count);
    }

    /// Adds every count of `other` to `self`. Exact: both have identical bucket layouts.
    pub fn merge(&mut self, other: &Hist) {
        if self.0.add(&other.0).is_err() {
            // Unreachable while all Hists share bounds (enforced by `new` and by
            // deserialization); kept as a non-panicking fallback that re-records by value.
            for v in other.0.iter_recorded() {
                self.0
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// Empties the histogram, keeping its allocation.
    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Value at quantile `q` (0.0..=1.0) in µs: the highest value equivalent to the recorded
    /// sample at that rank (HDR convention, as wrk2 prints). 0 when empty.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        self.0.value_at_quantile(q.clamp(0.0, 1.0))
    }

    /// [`Self::value_at_quantile`] as a [`Duration`].
    pub fn quantile_duration(&self, q: f64) -> Duration {
        Duration::from_micros(self.value_at_quantile(q))
    }

    /// Smallest recorded value in µs (lowest equivalent); 0 when empty.
    pub fn min(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.0.min_nz()
        }
    }

    /// Largest recorded value in µs (highest equivalent); 0 when empty.
    pub fn max(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.0.max()
        }
    }

    /// Mean in µs; 0.0 when empty.
    pub fn mean(&self) -> f64 {
        self.0.mean()
    }

    /// Population standard deviation in µs; 0.0 when empty.
    pub fn stdev(&self) -> f64 {
        self.0.stdev()
    }

    /// The underlying HDR histogram, for iteration (percentile spectrum, Prometheus buckets).
    pub fn inner(&self) -> &Histogram<u64> {
        &self.0
    }

    /// HdrHistogram V2 encoding (uncompressed).
    pub fn to_v2_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail; the only other error is a usize overflow impossible
        // with our fixed bounds.
        V2Serializer::new()
            .serialize(&self.0, &mut out)
            .expect("V2 encoding into a Vec");
        out
    }

    /// Decodes a V2 encoding produced by [`Self::to_v2_bytes`] (or any HDR implementation
    /// using the same bounds). Checks the header first so a hostile payload cannot make the
    /// decoder allocate more than the input size suggests.
    pub fn from_v2_bytes(bytes: &[u8]) -> Result<Self, HistDecodeError> {
        if bytes.len() < V2_HEADER_LEN {
            return Err(HistDecodeError::Truncated);
        }
        let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        if u32_at(0) != V2_COOKIE {
            return Err(HistDecodeError::Format(
                "not an uncompressed HdrHistogram V2 encoding".into(),
            ));
        }
        let payload_len = u32_at(4) as usize;
        if payload_len > bytes.len() - V2_HEADER_LEN {
            return Err(HistDecodeError::Truncated);
        }
        let (digits, low, high) = (u32_at(12), u64_at(16), u64_at(24));
        if digits != u32::from(Self::SIGFIG) || low != Self::LOW_US || high != Self::HIGH_US {
            return Err(HistDecodeError::Bounds { digits, low, high });
        }
        let mut reader = bytes;
        let h: Histogram<u64> = HdrDeserializer::new()
            .deserialize(&mut reader)
            .map_err(|e| HistDecodeError::Format(format!("{e:?}")))?;
        Ok(Hist(h))
    }
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Hist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hist")
            .field("count", &self.count())
            .field("p50_us", &self.value_at_quantile(0.5))
            .field("p99_us", &self.value_at_quantile(0.99))
            .field("max_us", &self.max())
            .finish()
    }
}

/// Why a serialized histogram was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistDecodeError {
    /// Shorter than its header says.
    #[error("histogram encoding is truncated")]
    Truncated,
    /// Not base64, wrong cookie, or a corrupt payload.
    #[error("bad histogram encoding: {0}")]
    Format(String),
    /// Valid HDR data but not our bounds; merging it would not be exact.
    #[error("histogram bounds {low}..{high} with {digits} digits, expected 1..3600000000 with 3")]
    Bounds {
        /// Significant digits in the header.
        digits: u32,
        /// Lowest discernible value in the header.
        low: u64,
        /// Highest trackable value in the header.
        high: u64,
    },
}

impl serde::Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.to_v2_bytes()))
    }
}

impl<'de> serde::Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|e| D::Error::custom(HistDecodeError::Format(e.to_string())))?;
        Hist::from_v2_bytes(&bytes).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_low_and_high() {
        let mut h = Hist::new();
        h.record_ns(0);
        h.record_ns(999);
        h.record_ns(u64::MAX);
        assert_eq!(h.count(), 3);
        assert_eq!(h.min(), 1);
        assert_eq!(h.value_at_quantile(0.5), 1);
        assert!(h.max() >= Hist::HIGH_US);
        assert!(h.max() < Hist::HIGH_US + Hist::HIGH_US / 1000);
    }

    #[test]
    fn empty_is_all_zero() {
        let h = Hist::new();
        assert!(h.is_empty());
        assert_eq!((h.min(), h.max(), h.value_at_quantile(0.99)), (0, 0, 0));
        assert_eq!(h.mean(), 0.0);
    }

    #[test]
    fn truncates_ns_to_us_with_three_digits() {
        let mut h = Hist::new();
        h.record_ns(1_500_999);
        assert_eq!(h.value_at_quantile(1.0), 1500);
        h.reset();
        h.record_ns(123_456_789_000);
        // 123_456_789 µs at 3 significant digits: within 0.1%.
        let v = h.value_at_quantile(1.0) as f64;
        assert!((v - 123_456_789.0).abs() / 123_456_789.0 < 0.001);
    }

    #[test]
    fn v2_round_trip_and_rejections() {
        let mut h = Hist::new();
        for v in [1, 10, 1_000, 1_000_000, 3_600_000_000] {
            h.record_us(v);
        }
        let bytes = h.to_v2_bytes();
        assert_eq!(Hist::from_v2_bytes(&bytes).unwrap(), h);
        assert_eq!(
            Hist::from_v2_bytes(&bytes[..10]),
            Err(HistDecodeError::Truncated)
        );
        assert_eq!(
            Hist::from_v2_bytes(&bytes[..bytes.len() - 1]),
            Err(HistDecodeError::Truncated)
        );
        let mut other = Vec::new();
        let foreign = Histogram::<u64>::new_with_bounds(1, 1_000, 2).unwrap();
        V2Serializer::new().serialize(&foreign, &mut other).unwrap();
        assert!(matches!(
            Hist::from_v2_bytes(&other),
            Err(HistDecodeError::Bounds { .. })
        ));
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Hist>(&json).unwrap(), h);
        assert!(serde_json::from_str::<Hist>("\"!!not base64\"").is_err());
    }
}
