//! stoke: a deep-learning trainer on burn, driven by TOML experiment configs.
//!
//! Data flows one way: [`config`] → [`data`] + [`model`] + optimizer → [`train`] loop → run
//! directory. [`backend`] picks the device once; [`cli`] is the command line over all of it.

pub mod backend;
pub mod cli;
pub mod config;
pub mod data;
pub mod distributed;
mod error;
pub mod export;
pub mod files;
pub mod kernels;
pub mod model;
pub mod plot;
pub mod report;
pub mod serve;
pub mod train;
pub mod weights;

pub use error::Error;
