//! The run directory as a format, in one place: its layout and files (`dir.rs`: `config.toml`,
//! `status.json`, `summary.json`), the metric records (`metrics.rs`: `metrics.jsonl`,
//! [`Measured`]), the files derived from them for people and tools (`plots.rs`: `metrics.csv`
//! and `plots/`; `tensorboard.rs`), checkpoints written and read (`checkpoint/`), the loop's
//! state a checkpoint keeps (`state.rs`) with a followed run's ledger (`follow.rs`), and the
//! listing and comparison behind `stoke runs` (`runs.rs`).
//!
//! Training writes runs; export, report, serve and continual training read them through this
//! module, never through the loop.

pub mod checkpoint;
mod dir;
pub mod follow;
pub mod metrics;
pub mod plots;
pub mod runs;
pub mod state;
pub mod tensorboard;

pub use checkpoint::{CheckpointChoice, Checkpoints, VerifiedCheckpoint};
pub use dir::*;
pub use metrics::{Measured, MetricRecord, SplitName, read_metrics};
