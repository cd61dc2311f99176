//! Sharded datasets: many files, read lazily as batches are made, in bounded memory.
//!
//! A shard directory holds `shards.json` (the manifest: record kind, classes, image shape,
//! normalisation and each split's shard files with their record counts) and the shards, as
//! `stoke data pack` and `stoke data synth` write them. Image shards are uncompressed IDX
//! pairs (`train-00000-images-idx3-ubyte`, `train-00000-labels-idx1-ubyte`): fixed-size
//! records, so any record is one positioned read away and nothing but the labels is held in
//! memory. A directory of such pairs without a manifest is read too.
//!
//! Shuffling follows a streaming reader (shard order, then a shuffle buffer; see
//! [`super::Ordering::ShardBuffer`]), simulated over record indices so that a checkpoint's
//! (epoch, batch) position rebuilds it exactly.

mod images;
mod pack;
mod synth;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use images::{OpenedShards, ShardedImages, load};
pub use pack::{PackReport, pack};
pub use synth::{SynthOptions, synth};

use super::{DataError, Normalization};
use crate::model::ImageShape;

pub const MANIFEST: &str = "shards.json";
const FORMAT: &str = "stoke-shards";
const VERSION: u32 = 1;

/// The split names a shard directory may hold, in the order they are reported.
pub const SPLITS: [&str; 3] = ["train", "valid", "test"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub classes: Vec<String>,
    pub image: ImageShape,
    /// Per-channel statistics of the training split, measured when the shards were written.
    pub normalization: Option<Normalization>,
    /// Split name → its shards, in order.
    pub splits: BTreeMap<String, Vec<ShardEntry>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// The shard's name: its files are `<name>-images-idx3-ubyte` and `<name>-labels-idx1-ubyte`.
    pub name: String,
    pub records: u64,
}

impl Manifest {
    pub fn new(classes: Vec<String>, image: ImageShape) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            classes,
            image,
            normalization: None,
            splits: BTreeMap::new(),
        }
    }

    /// Reads `dir/shards.json`, or `None` when the directory has none.
    pub fn read(dir: &Path) -> Result<Option<Self>, DataError> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(DataError::Io { path, source }),
        };
        let manifest: Manifest = serde_json::from_str(&text).map_err(|err| DataError::Corrupt {
            path: path.clone(),
            detail: format!("not a shard manifest: {err}"),
        })?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(DataError::Corrupt {
                path,
                detail: format!(
                    "format {} version {}; this stoke reads {FORMAT} version {VERSION}",
                    manifest.format, manifest.version
                ),
            });
        }
        Ok(Some(manifest))
    }

    pub fn records(&self, split: &str) -> u64 {
        self.splits
            .get(split)
            .map_or(0, |shards| shards.iter().map(|s| s.records).sum())
    }
}

/// The image and label files of shard `name` in `dir`.
pub fn shard_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}-images-idx3-ubyte")),
        dir.join(format!("{name}-labels-idx1-ubyte")),
    )
}

/// `<split>-<index>`: names that sort in shard order.
pub fn shard_name(split: &str, index: usize) -> String {
    format!("{split}-{index:05}")
}
