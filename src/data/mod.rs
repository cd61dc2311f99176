//! Datasets and batching. Image sets (IDX files, image folders) and text sets (labelled CSV or
//! JSONL, plain-text corpora) are read into memory, split into train/valid/test, and batched
//! ahead of the training step on worker threads, in an order fixed by the seed.
//!
//! Every dataset is a [`Dataset`]: it turns sample indices into a [`HostBatch`]. Its
//! [`DataSpec`] says what a model needs to know about it (input shape, classes, vocabulary)
//! and travels with runs and checkpoints.
//!
//! To add a dataset: read it in `image/` or `text/`, implement [`Dataset`] (or reuse one),
//! and branch to it in [`load_splits`].

mod batch;
mod custom;
pub(crate) mod image;
pub mod inspect;
mod loader;
pub(crate) mod parquet;
pub mod preview;
mod shape;
pub mod shards;
mod slices;
pub mod tabular;
pub(crate) mod text;

use std::path::PathBuf;
use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use batch::{AnyBatch, Batch, BatchContext, DeviceBatch, Input, Targets};
#[cfg(feature = "burn-dataset")]
pub use custom::BurnData;
pub(crate) use custom::load as load_custom;
pub use custom::{Data, DataContext, Parts, Spec};
pub use image::transform::{Picture, Region, random_resized_region};
pub use image::{
    ImageSet, Normalization, Origins, Resize, decode_image, decode_pixels, normalized, read_image,
};
pub use loader::{
    BatchStream, Ordering, Part, Passes, StreamPlan, batch_count, epoch_order, part_of_batches,
};
pub use shape::ImageShape;
pub use slices::{FOLDER_FIELD, SliceBy, slice_values};
pub use text::{Tokenizer, labelled_texts};

use crate::config::{DataConfig, DatasetKind, OnError};
use crate::task::TaskSpec;

/// Samples the loop batches by index onto a device: every dataset a run trains on, the
/// built-in ones (through [`Samples`]) and a user's (through [`Data`]).
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples `indices` names, as one batch on `context.device`.
    fn batch(&self, indices: &[u32], context: &BatchContext) -> AnyBatch;

    /// Host memory the dataset holds, for `data.memory_budget` (0 where it does not say).
    fn resident_bytes(&self) -> usize {
        0
    }

    /// Host memory one sample takes in a batch (at most; 0 where it does not say).
    fn sample_bytes(&self) -> usize {
        0
    }

    /// Where sample `index` came from and, for images, what it shows (for reports); `None`
    /// where the dataset keeps no such record.
    fn example(&self, _index: u32) -> Option<Example> {
        None
    }

    /// The samples as a host batch, where the dataset is a built-in one (`stoke bench
    /// --data-only` times this part alone).
    fn host_batch(&self, _indices: &[u32]) -> Option<HostBatch> {
        None
    }
}

/// A built-in dataset: samples batched by index in host memory, moved onto the device as a
/// [`DeviceBatch`].
pub trait Samples: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        Samples::len(self) == 0
    }

    /// The samples `indices` names, as one batch.
    fn batch(&self, indices: &[u32]) -> HostBatch;

    /// Host memory the dataset holds, for `data.memory_budget`.
    fn resident_bytes(&self) -> usize;

    /// Host memory one sample takes in a [`HostBatch`] (at most).
    fn sample_bytes(&self) -> usize;

    /// Where sample `index` came from and, for images, what it shows (for reports); `None`
    /// where the dataset keeps no such record (streamed shards, LM windows).
    fn example(&self, _index: u32) -> Option<Example> {
        None
    }
}

impl<S: Samples> Dataset for S {
    fn len(&self) -> usize {
        Samples::len(self)
    }

    fn batch(&self, indices: &[u32], context: &BatchContext) -> AnyBatch {
        AnyBatch::new(DeviceBatch::new(
            Samples::batch(self, indices),
            &context.device,
        ))
    }

    fn resident_bytes(&self) -> usize {
        Samples::resident_bytes(self)
    }

    fn sample_bytes(&self) -> usize {
        Samples::sample_bytes(self)
    }

    fn example(&self, index: u32) -> Option<Example> {
        Samples::example(self, index)
    }

    fn host_batch(&self, indices: &[u32]) -> Option<HostBatch> {
        Some(Samples::batch(self, indices))
    }
}

/// One sample as a person finds and sees it: where it came from and what it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The file it was read from, if known.
    pub file: Option<PathBuf>,
    /// Its 1-based line (text records) or record number (IDX files) in `file`; `None` for
    /// an image file of its own. (A text record's fields are read from there when wanted,
    /// rather than kept in memory for every record.)
    pub line: Option<usize>,
    /// An image as the model saw it before normalisation: its shape and channel-major bytes.
    pub image: Option<(ImageShape, Vec<u8>)>,
}

impl Example {
    /// `file:line`, the file, or `None` when the origin is unknown.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?.display();
        Some(match self.line {
            Some(line) => format!("{file}:{line}"),
            None => file.to_string(),
        })
    }
}

/// A batch in host memory, before it moves to the device.
#[derive(Debug, Clone, PartialEq)]
pub enum HostBatch {
    /// Normalised images `[batch, channels, height, width]` and their classes.
    Images {
        pixels: Vec<f32>,
        shape: [usize; 4],
        labels: Vec<i64>,
        /// A training batch mixed with mixup or CutMix: each image's partner and λ.
        mixed: Option<MixedLabels>,
    },
    /// Token ids `[batch, length]`, padded after each sequence's `lengths[i]` real tokens,
    /// and their classes.
    Tokens {
        ids: Vec<i64>,
        shape: [usize; 2],
        lengths: Vec<usize>,
        labels: Vec<i64>,
    },
    /// Windows of a corpus `[batch, length]` and the next token at every position.
    Sequences {
        inputs: Vec<i64>,
        targets: Vec<i64>,
        shape: [usize; 2],
    },
    /// Table rows: standardised numeric features `[batch, numeric_width]`, category ids
    /// `[batch, categorical_width]` and the rows' targets.
    Rows {
        numeric: Vec<f32>,
        numeric_width: usize,
        categorical: Vec<i64>,
        categorical_width: usize,
        targets: RowTargets,
    },
}

/// The labels of a batch mixed with itself (`image::mix`): each row's partner class, and the
/// share λ of each image that is its own.
#[derive(Debug, Clone, PartialEq)]
pub struct MixedLabels {
    pub partners: Vec<i64>,
    pub weight: f32,
}

/// What table rows are scored against.
#[derive(Debug, Clone, PartialEq)]
pub enum RowTargets {
    Classes(Vec<i64>),
    /// Standardised values, `width` per row.
    Values {
        values: Vec<f32>,
        width: usize,
    },
    /// Each label's presence (0 or 1), `width` per row.
    Labels {
        present: Vec<i64>,
        width: usize,
    },
}

/// Rows `indices` of `values`, `width` values per row.
pub(crate) fn rows_of<T: Copy>(values: &[T], width: usize, indices: &[u32]) -> Vec<T> {
    indices
        .iter()
        .flat_map(|&i| &values[i as usize * width..(i as usize + 1) * width])
        .copied()
        .collect()
}

impl RowTargets {
    /// The targets of rows `indices`, in that order.
    pub fn select(&self, indices: &[u32]) -> RowTargets {
        match self {
            RowTargets::Classes(classes) => {
                RowTargets::Classes(indices.iter().map(|&i| classes[i as usize]).collect())
            }
            RowTargets::Values { values, width } => RowTargets::Values {
                values: rows_of(values, *width, indices),
                width: *width,
            },
            RowTargets::Labels { present, width } => RowTargets::Labels {
                present: rows_of(present, *width, indices),
                width: *width,
            },
        }
    }

    /// `more` (targets of the same kind and width) after these.
    pub fn append(&mut self, more: RowTargets) {
        match (self, more) {
            (RowTargets::Classes(all), RowTargets::Classes(more)) => all.extend(more),
            (RowTargets::Values { values, .. }, RowTargets::Values { values: more, .. }) => {
                values.extend(more)
            }
            (RowTargets::Labels { present, .. }, RowTargets::Labels { present: more, .. }) => {
                present.extend(more)
            }
            _ => unreachable!("rows of one spec have one kind of target"),
        }
    }
}

impl HostBatch {
    /// Samples in the batch.
    pub fn size(&self) -> usize {
        match self {
            HostBatch::Images { shape, .. } => shape[0],
            HostBatch::Tokens { shape, .. } | HostBatch::Sequences { shape, .. } => shape[0],
            HostBatch::Rows { targets, .. } => match targets {
                RowTargets::Classes(classes) => classes.len(),
                RowTargets::Values { values, width } => values.len() / width.max(&1),
                RowTargets::Labels { present, width } => present.len() / width.max(&1),
            },
        }
    }

    /// Tokens the model reads (0 for images).
    pub fn tokens(&self) -> usize {
        match self {
            HostBatch::Images { .. } | HostBatch::Rows { .. } => 0,
            HostBatch::Tokens { lengths, .. } => lengths.iter().sum(),
            HostBatch::Sequences { shape, .. } => shape[0] * shape[1],
        }
    }
}

/// A subset of a dataset, by index (sorted), and how it is shuffled for training.
#[derive(Clone)]
pub struct Split {
    pub data: Arc<dyn Dataset>,
    pub indices: Arc<Vec<u32>>,
    pub ordering: Ordering,
}

impl Split {
    pub fn new(data: Arc<dyn Dataset>, indices: Vec<u32>) -> Self {
        Self {
            data,
            indices: Arc::new(indices),
            ordering: Ordering::Permutation,
        }
    }

    pub fn all(data: Arc<dyn Dataset>) -> Self {
        let indices = (0..data.len() as u32).collect();
        Self::new(data, indices)
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// What a model is built for and an artifact must reproduce: the task, its inputs and its
/// outputs. A user's data kind describes itself in [`DataSpec::Custom`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "kebab-case")]
pub enum DataSpec {
    ImageClassification {
        input: ImageShape,
        classes: Vec<String>,
        normalization: Normalization,
        /// Photos kept at their aspect: how an image becomes an input (unset: squashed to
        /// `input`, as runs before it was added did).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resize: Option<Resize>,
    },
    TextClassification {
        classes: Vec<String>,
        vocab_size: usize,
        max_length: usize,
        pad_id: u32,
    },
    LanguageModel {
        vocab_size: usize,
        context_length: usize,
        /// Characters per token in the training text, to turn nats per token into bits per
        /// character.
        chars_per_token: f64,
    },
    /// Table rows (`dataset = "tabular"`): the feature columns, how to read them, and the
    /// task their targets pose.
    Tabular {
        numeric: Vec<NumericColumn>,
        categorical: Vec<CategoricalColumn>,
        target: TaskSpec,
    },
    /// A user's data kind, with the spec it wrote (read back by the models trained on it).
    Custom {
        kind: String,
        target: TaskSpec,
        summary: String,
        spec: serde_json::Value,
    },
}

/// A numeric feature column and how it is standardised: `(x - mean) / std`, from the
/// training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericColumn {
    pub name: String,
    pub mean: f64,
    pub std: f64,
}

/// A categorical feature column and the values seen in training: value `i` has id `i + 1`,
/// any other value id 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalColumn {
    pub name: String,
    pub values: Vec<String>,
}

impl CategoricalColumn {
    /// The id `value` is read as: `i + 1` for the `i`-th value seen in training, 0 for one
    /// it has not seen.
    pub fn id(&self, value: &str) -> i64 {
        self.values
            .iter()
            .position(|known| known == value)
            .map_or(0, |i| i as i64 + 1)
    }
}

impl DataSpec {
    /// The task the data's targets pose.
    pub fn task(&self) -> TaskSpec {
        match self {
            DataSpec::ImageClassification { classes, .. }
            | DataSpec::TextClassification { classes, .. } => TaskSpec::Classification {
                classes: classes.clone(),
            },
            DataSpec::LanguageModel {
                vocab_size,
                context_length,
                chars_per_token,
            } => TaskSpec::LanguageModel {
                vocab_size: *vocab_size,
                context_length: *context_length,
                chars_per_token: *chars_per_token,
            },
            DataSpec::Tabular { target, .. } | DataSpec::Custom { target, .. } => target.clone(),
        }
    }

    /// Classes, for single-label classification.
    pub fn classes(&self) -> Option<Vec<String>> {
        self.task().classes().map(<[String]>::to_vec)
    }

    /// A user data kind's spec, as its data wrote it.
    pub fn custom<S: Spec>(kind: &str, spec: &S) -> Self {
        DataSpec::Custom {
            kind: kind.to_string(),
            target: spec.task(),
            summary: spec.describe(),
            spec: serde_json::to_value(spec).expect("a data spec serializes"),
        }
    }

    /// The spec a user's data kind wrote, read back as `S`.
    pub fn custom_spec<S: Spec>(&self) -> Result<S, String> {
        match self {
            DataSpec::Custom { kind, spec, .. } => serde_json::from_value(spec.clone())
                .map_err(|err| format!("the spec of data kind \"{kind}\" does not read: {err}")),
            other => Err(format!(
                "this model takes a data kind of its own, not {}",
                other.describe()
            )),
        }
    }

    /// One line for people: what the data is.
    pub fn describe(&self) -> String {
        match self {
            DataSpec::ImageClassification { input, classes, .. } => {
                format!("images of {input}, {} classes", classes.len())
            }
            DataSpec::TextClassification {
                classes,
                vocab_size,
                max_length,
                ..
            } => format!(
                "texts of up to {max_length} tokens ({vocab_size} in the vocabulary), {} classes",
                classes.len()
            ),
            DataSpec::LanguageModel {
                vocab_size,
                context_length,
                ..
            } => format!("windows of {context_length} tokens ({vocab_size} in the vocabulary)"),
            DataSpec::Tabular {
                numeric,
                categorical,
                target,
            } => format!(
                "table rows of {} numeric and {} categorical columns, {} of {}",
                numeric.len(),
                categorical.len(),
                target.name(),
                target.outputs()
            ),
            DataSpec::Custom { kind, summary, .. } => format!("{kind}: {summary}"),
        }
    }
}

/// Records a lenient load (`data.on_error = "skip"`) passed over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub count: usize,
    /// The first few, as `file:line: reason`.
    pub examples: Vec<String>,
}

impl Skipped {
    const EXAMPLES: usize = 50;

    /// A bad record at `path:line`: the error that stops the load (`data.on_error = "fail"`),
    /// or counted and passed over (`"skip"`).
    pub fn bad_record(
        &mut self,
        on_error: OnError,
        path: &std::path::Path,
        line: usize,
        detail: String,
    ) -> Result<(), DataError> {
        match on_error {
            OnError::Fail => Err(DataError::Record {
                path: path.to_path_buf(),
                line,
                detail,
                skippable: true,
            }),
            OnError::Skip => {
                self.add(format!("{}:{line}: {detail}", path.display()));
                Ok(())
            }
        }
    }

    pub fn add(&mut self, location: String) {
        self.count += 1;
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push(location);
        }
    }
}

pub struct Splits {
    pub train: Split,
    pub valid: Split,
    pub test: Split,
    pub spec: DataSpec,
    /// The text tokenizer, trained on the training split or given.
    pub tokenizer: Option<Arc<Tokenizer>>,
    pub skipped: Skipped,
    /// Table rows: per categorical column, the validation and test values not seen in
    /// training (read as unknown).
    pub unseen_categories: std::collections::BTreeMap<String, usize>,
}

impl Splits {
    /// Host memory the data path holds while training at `batch_size` with evaluation at
    /// `eval_batch_size`: the datasets, the split indices and epoch order, and the batches
    /// the workers prepare ahead.
    pub fn memory(
        &self,
        batch_size: usize,
        eval_batch_size: usize,
        data: &DataConfig,
    ) -> MemoryUse {
        let splits = [&self.train, &self.valid, &self.test];
        let mut seen: Vec<*const ()> = Vec::new();
        let mut datasets = 0;
        for split in splits {
            let identity = Arc::as_ptr(&split.data) as *const ();
            if !seen.contains(&identity) {
                seen.push(identity);
                datasets += split.data.resident_bytes();
            }
        }
        let buffer = match &self.train.ordering {
            Ordering::Permutation => 0,
            Ordering::ShardBuffer { buffer, .. } => *buffer,
        };
        let indices = splits.iter().map(|s| s.len()).sum::<usize>() + self.train.len() + buffer;
        let queued = data.workers.max(1) * data.prefetch + 1;
        let batches = queued * self.train.data.sample_bytes() * batch_size
            + queued * self.valid.data.sample_bytes() * eval_batch_size;
        MemoryUse {
            datasets: datasets as u64,
            indices: indices as u64 * 4,
            batches: batches as u64,
        }
    }
}

/// Where the data path's host memory goes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryUse {
    /// What the datasets hold: all samples for in-memory data, labels for streamed data.
    pub datasets: u64,
    /// Split indices and the epoch order.
    pub indices: u64,
    /// Batches prepared ahead for training and evaluation.
    pub batches: u64,
}

impl MemoryUse {
    pub fn total(&self) -> u64 {
        self.datasets + self.indices + self.batches
    }
}

impl std::fmt::Display for MemoryUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::config::format_bytes;
        write!(
            f,
            "about {} (datasets {}, indices and order {}, batches in flight {})",
            format_bytes(self.total()),
            format_bytes(self.datasets),
            format_bytes(self.indices),
            format_bytes(self.batches)
        )
    }
}

/// Loads the dataset `config` names and splits it. A text dataset reuses `tokenizer` when
/// given (a resumed or evaluated run) and trains one on its training split otherwise.
pub fn load_splits(
    config: &DataConfig,
    seed: u64,
    tokenizer: Option<Tokenizer>,
) -> Result<Splits, DataError> {
    match &config.dataset {
        DatasetKind::Mnist
        | DatasetKind::FashionMnist
        | DatasetKind::ImageFolder
        | DatasetKind::ImageParquet => image::load(config, seed),
        DatasetKind::Tabular => tabular::load(config, seed),
        DatasetKind::Custom(name) => Err(DataError::Corrupt {
            path: config.path.clone(),
            detail: format!(
                "data kind \"{name}\" is a registered one: load it through the registry"
            ),
        }),
        DatasetKind::ImageShards => shards::load(config, seed),
        DatasetKind::TextShards => shards::load_texts(config, seed, tokenizer),
        DatasetKind::TextClassification => text::load_classification(config, seed, tokenizer),
        DatasetKind::TextCorpus => text::load_corpus(config, tokenizer),
    }
}

/// The classes of `labels`, in numeric order when all are integers, else alphabetical.
pub(crate) fn classes_of<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut classes: Vec<String> = labels
        .map(str::to_string)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.iter().all(|c| c.parse::<i64>().is_ok()) {
        classes.sort_by_key(|c| c.parse::<i64>().unwrap_or_default());
    }
    classes
}

/// Keeps a test split drawn from the training pool independent of the validation split.
pub(crate) const TEST_SPLIT_SALT: u64 = 0x7e57_5917;

/// Moves a seeded random `fraction` of `indices` out; returns (kept, held out), each sorted.
pub(crate) fn split_off(mut indices: Vec<u32>, fraction: f64, seed: u64) -> (Vec<u32>, Vec<u32>) {
    indices.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let held_out = (indices.len() as f64 * fraction).round() as usize;
    let mut kept = indices.split_off(held_out);
    indices.sort_unstable();
    kept.sort_unstable();
    (kept, indices)
}

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
    #[error("{}:{line}: {detail}{}", path.display(), if *.skippable { "\n  set data.on_error = \"skip\" to skip and count such records" } else { "" })]
    Record {
        path: PathBuf,
        line: usize,
        detail: String,
        skippable: bool,
    },
    #[error("{}: no {what} found", path.display())]
    Empty { path: PathBuf, what: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data.memory_budget = {budget} is too small: the data path needs {needed}\n  {advice}")]
    OverBudget {
        budget: String,
        needed: MemoryUse,
        advice: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

fn fetch_hint(fetch: &Option<String>) -> String {
    match fetch {
        Some(command) => format!("\n  fetch it with: {command}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let (train, valid) = split_off((0..100).collect(), 0.1, 7);
        assert_eq!((train.len(), valid.len()), (90, 10));
        let mut all: Vec<u32> = train.iter().chain(valid.iter()).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<u32>>());
        assert_eq!(split_off((0..100).collect(), 0.1, 7).1, valid);
        assert_ne!(split_off((0..100).collect(), 0.1, 8).1, valid);
    }
}
