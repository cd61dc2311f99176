//! stoke: a deep-learning trainer on burn, driven by TOML experiment configs.
//!
//! Data flows one way: [`config`] → [`data`] + [`model`] + optimizer → [`train`] loop → run
//! directory. [`backend`] picks the device once; [`cli`] is the command line over all of it.
//!
//! stoke is also a library: a model of your own ([`Model`]) and data of your own ([`Data`])
//! train through the same loop, with every guarantee, from a binary of your own:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     stoke::Cli::with_builtins() // .model::<MyModel>().data::<MyData>()
//!         .run()
//! }
//! ```

pub mod backend;
pub mod cli;
pub mod config;
pub mod data;
pub mod decoders;
pub mod distributed;
mod error;
pub mod export;
mod fault;
pub mod files;
pub mod follow;
pub mod kernels;
pub mod model;
pub mod panics;
pub mod plot;
mod process;
pub mod registry;
pub mod report;
pub mod run;
pub mod serve;
pub mod task;
pub mod train;
pub mod weights;

pub use cli::Cli;
pub use data::{Batch, BatchContext, Data, DataContext, DataSpec, Parts, Spec};
pub use error::Error;
pub use model::Model;
pub use task::{Output, Scored, Task, TaskSpec};

/// The integration tests' table of checks that need optional tools (Python packages,
/// Chromium, a Vulkan driver, Open MPI), included here so that the library's unit tests,
/// which `cargo test` runs first, list once what this machine will skip.
#[cfg(test)]
#[allow(dead_code)] // The tests' side of the table: only `summary` is used here.
#[path = "../tests/common/optional.rs"]
mod optional_checks;

#[cfg(test)]
#[test]
fn list_the_optional_checks_this_machine_skips() {
    if let Some(summary) = optional_checks::summary() {
        use std::io::Write;
        // Straight to stderr: libtest hides what passing tests print.
        let _ = std::io::stderr().write_all(summary.as_bytes());
    }
}
