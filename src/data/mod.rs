//! Datasets and batching: IDX files and image folders read into memory, split into
//! train/valid/test, and batched ahead of the training step on worker threads.
//!
//! To add an image dataset: read it into an [`ImageSet`] and branch to it in
//! [`load_splits`]; batching, splitting and normalisation come with it.

mod dataset;
mod idx;
mod image_folder;
mod loader;

use std::path::PathBuf;

pub use dataset::{ImageSet, Normalization, Split, Splits, load_splits};
pub use loader::{BatchStream, Batcher, HostBatch, StreamPlan, batch_count, epoch_order};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("dataset {dataset} not found at {}: {detail}{}", path.display(), fetch_hint(.fetch))]
    Missing {
        dataset: String,
        path: PathBuf,
        detail: String,
        fetch: Option<String>,
    },
    #[error("{}: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{}: no {what} found", path.display())]
    Empty { path: PathBuf, what: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn fetch_hint(fetch: &Option<String>) -> String {
    match fetch {
        Some(command) => format!("\n  fetch it with: {command}"),
        None => String::new(),
    }
}
