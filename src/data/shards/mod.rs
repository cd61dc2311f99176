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
mod texts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use images::{OpenedShards, ShardedImages, load};
pub use pack::{PackReport, pack};
pub use synth::{SynthOptions, synth};
pub use texts::{ShardedTexts, load_texts};

use super::{DataError, Normalization};
use crate::model::ImageShape;

pub const MANIFEST: &str = "shards.json";
const FORMAT: &str = "stoke-shards";
const VERSION: u32 = 1;

/// The split names a shard directory may hold, in the order they are reported.
pub const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// What a shard directory's records are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    /// IDX pairs: `<name>-images-idx3-ubyte` and `<name>-labels-idx1-ubyte`.
    Images,
    /// JSONL files `<name>.jsonl` of `{"text": ..., "label": ...}` records.
    Texts,
}

impl RecordKind {
    pub fn dataset(self) -> &'static str {
        match self {
            RecordKind::Images => "image-shards",
            RecordKind::Texts => "text-shards",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub records: RecordKind,
    pub classes: Vec<String>,
    /// Image shards: the shape of every image.
    pub image: Option<ImageShape>,
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
    pub fn new(records: RecordKind, classes: Vec<String>, image: Option<ImageShape>) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            records,
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

    /// Reads `dir`'s manifest, refusing one of another record kind than `expected`.
    pub fn read_kind(dir: &Path, expected: RecordKind) -> Result<Option<Self>, DataError> {
        let manifest = Self::read(dir)?;
        if let Some(found) = manifest
            .as_ref()
            .map(|m| m.records)
            .filter(|&r| r != expected)
        {
            return Err(DataError::Corrupt {
                path: dir.join(MANIFEST),
                detail: format!(
                    "holds {found:?} shards; read them with dataset = \"{}\", not \"{}\"",
                    found.dataset(),
                    expected.dataset()
                )
                .to_lowercase(),
            });
        }
        Ok(manifest)
    }

    pub fn records(&self, split: &str) -> u64 {
        self.splits
            .get(split)
            .map_or(0, |shards| shards.iter().map(|s| s.records).sum())
    }
}

/// The names of `dir`'s shards of each split (train, valid, test): the manifest's, or for a
/// directory without one, those whose `<split>-<index><suffix>` files it holds, in order.
pub fn split_shards(
    dir: &Path,
    manifest: Option<&Manifest>,
    suffix: &str,
) -> Result<Vec<Vec<String>>, DataError> {
    if let Some(manifest) = manifest {
        return Ok(SPLITS
            .iter()
            .map(|split| {
                manifest.splits.get(*split).map_or_else(Vec::new, |shards| {
                    shards.iter().map(|shard| shard.name.clone()).collect()
                })
            })
            .collect());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|file| file.strip_suffix(suffix).map(str::to_string))
        .collect();
    names.sort();
    Ok(SPLITS
        .iter()
        .map(|split| {
            names
                .iter()
                .filter(|name| {
                    name.strip_prefix(split)
                        .is_some_and(|rest| rest.starts_with('-'))
                })
                .cloned()
                .collect()
        })
        .collect())
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
