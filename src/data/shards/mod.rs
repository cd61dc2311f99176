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
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use images::{OpenedShards, ShardedImages, load};
pub use pack::{PackReport, pack};
pub use synth::{SynthOptions, synth};
pub use texts::{ShardedTexts, load_texts};

use super::{DataError, Dataset, Normalization, Ordering, Split, TEST_SPLIT_SALT, split_off};
use crate::config::DataConfig;
use crate::data::ImageShape;

pub const MANIFEST: &str = "shards.json";
/// Records in the shuffle buffer unless `data.shuffle_buffer` says otherwise.
pub const DEFAULT_SHUFFLE_BUFFER: usize = 16_384;
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
                    "holds {}; read them with dataset = \"{}\", not \"{}\"",
                    format!("{found:?}").to_lowercase(),
                    found.dataset(),
                    expected.dataset()
                ),
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

/// Splits `records` of the training shards into those kept for training and those held out
/// for validation and test (seeded as for data in memory), for each split the directory has
/// no shards of its own for; a split with its own shards gets an empty list here.
pub(super) fn hold_out(
    records: Vec<u32>,
    own_valid: bool,
    own_test: bool,
    config: &DataConfig,
    seed: u64,
) -> [Vec<u32>; 3] {
    let (pool, test) = if own_test {
        (records, Vec::new())
    } else {
        split_off(records, config.test_fraction, seed ^ TEST_SPLIT_SALT)
    };
    let (train, valid) = if own_valid {
        (pool, Vec::new())
    } else {
        split_off(pool, config.valid_fraction, seed)
    };
    [train, valid, test]
}

/// A validation or test split read from shards of its own: the dataset and the records to use.
pub(super) type OwnShards = Option<(Arc<dyn Dataset>, Vec<u32>)>;

/// A streamed dataset's train, valid and test splits. Training reads `train` in shard order
/// through the shuffle buffer; validation and test read their own shards (the dataset and the
/// records to use) where given, else the training records [`hold_out`] set aside.
pub(super) fn streamed_splits(
    train: Arc<dyn Dataset>,
    shard_starts: Vec<u32>,
    [train_indices, valid_indices, test_indices]: [Vec<u32>; 3],
    [own_valid, own_test]: [OwnShards; 2],
    config: &DataConfig,
) -> [Split; 3] {
    let held_out = |own: OwnShards, indices| match own {
        Some((data, records)) => Split::new(data, records),
        None => Split::new(train.clone(), indices),
    };
    let valid = held_out(own_valid, valid_indices);
    let test = held_out(own_test, test_indices);
    let mut training = Split::new(train.clone(), train_indices);
    training.ordering = Ordering::ShardBuffer {
        shard_starts: Arc::new(shard_starts),
        buffer: config.shuffle_buffer.unwrap_or(DEFAULT_SHUFFLE_BUFFER),
    };
    [training, valid, test]
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
