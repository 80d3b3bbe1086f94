//! The cluster: many `gen worker` processes under one `gen coordinator`.
//!
//! - [`wire`]: the JSON messages (heartbeat with interval snapshots, desired state).
//! - [`state`]: the coordinator's decisions without I/O (liveness, shares, exact merging).
//!
//! See `docs/cluster.md` for the protocol and its failure handling.

pub mod agent;
pub mod cmd;
pub mod coordinator;
pub mod exec;
pub mod http;
pub mod state;
pub mod ui;
pub mod wire;
