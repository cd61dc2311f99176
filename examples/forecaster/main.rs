//! stoke as a library: a model and a dataset of a user's own, trained through stoke's loop
//! with all of it (TOML config and `--set`, exact kill-safe resume, accumulation, clipping,
//! mixed precision, checkpoints, logs, evaluation, export) from a binary of their own.
//!
//! The model (`model.rs`) is a GRU over windows of engine sensor readings that forecasts each
//! engine's remaining useful life, with a loss of its own; the data kind (`data.rs`) reads
//! the windows from a CSV of run-to-failure records. This file is all the binary needs:
//!
//! ```sh
//! cargo run --release --example forecaster -- train examples/forecaster/forecaster.toml
//! cargo run --release --example forecaster -- train --resume runs/<run>
//! cargo run --release --example forecaster -- export runs/<run> --out models/forecaster
//! ```

mod data;
mod model;

/// The allocator the stock binary uses too (freed tensor buffers stay mapped).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stoke::Cli::with_builtins()
        .model::<model::Forecaster>()
        .data::<data::EngineWindows>()
        .run()
}
