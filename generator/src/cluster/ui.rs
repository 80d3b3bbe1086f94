//! The coordinator's web UI: one self-contained page (no CDN, works offline) that polls
//! `/api/v1/status` once a second and drives runs through the same JSON API.

/// The page served at `/`.
pub const INDEX_HTML: &str = include_str!("ui/index.html");
