//! The experiment schema: every key a TOML config may hold, with its default.
//!
//! Each struct denies unknown keys and fills missing ones from `Default`, so a config file is a
//! short diff over these defaults. The README's config reference mirrors this file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One experiment: what to train, on what, and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    pub run: RunConfig,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub optimizer: OptimizerConfig,
    pub scheduler: SchedulerConfig,
    pub train: TrainConfig,
    pub checkpoint: CheckpointConfig,
    pub log: LogConfig,
    pub eval: EvalConfig,
    /// How the task's loss is computed (regression loss, multi-label threshold). Left out at
    /// its defaults, so that runs from before it existed keep their definition.
    #[serde(skip_serializing_if = "crate::task::TaskConfig::is_default")]
    pub task: crate::task::TaskConfig,
    /// `stoke train --follow`: continual training on shards as they land in a directory.
    /// Left out at its defaults, so runs from before it keep their definition.
    #[serde(skip_serializing_if = "FollowConfig::is_default")]
    pub follow: FollowConfig,
}

/// `[follow]`: how `stoke train --follow DIR` takes new shards, trains on them, and decides
/// whether a candidate may replace the served model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FollowConfig {
    /// Seconds between two looks at the directory.
    pub poll_s: f64,
    /// Stop after this many seconds without a new shard (0: follow until stopped).
    pub idle_exit_s: f64,
    /// Stop after this many shards taken in all (0: no limit).
    pub max_shards: usize,
    /// Passes over each new shard.
    pub passes: usize,
    pub replay: ReplayConfig,
    pub gate: GateConfig,
    /// What a refused candidate leaves in the learner.
    pub on_refuse: OnRefuse,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self {
            poll_s: 1.0,
            idle_exit_s: 0.0,
            max_shards: 0,
            passes: 1,
            replay: ReplayConfig::default(),
            gate: GateConfig::default(),
            on_refuse: OnRefuse::default(),
        }
    }
}

/// `follow.on_refuse`: what becomes of the learner when the gate refuses a round's candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRefuse {
    /// The round leaves no trace: the learner returns to the promoted version's weights,
    /// optimizer and scheduler state, and the refused shard's records never enter the replay
    /// reservoir, so one bad delivery cannot hold back the rounds after it.
    #[default]
    Revert,
    /// Training goes on from the refused candidate and its shard is replayed like any other;
    /// only promotion is gated.
    Continue,
}

impl FollowConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[follow.replay]`: a reservoir of past records mixed into every step against forgetting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// The share of each training batch drawn from the reservoir (0: no replay).
    pub fraction: f64,
    /// Records the reservoir keeps (a uniform sample of everything taken so far).
    pub capacity: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            fraction: 0.0,
            capacity: 10_000,
        }
    }
}

/// `[follow.gate]`: when a candidate may be promoted over the current model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// The metric compared on the holdout (`accuracy`, `loss`, ...; default: the one
    /// `checkpoint.monitor` watches).
    pub metric: Option<String>,
    /// How much worse than the current model's the candidate's metric may be.
    pub tolerance: f64,
}

/// The evaluation report written into `<run>/report/` at the end of a run (and by `stoke
/// eval --report`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Write the report at the end of the run.
    pub report: bool,
    /// Group the test examples by this field of the text records (image folders: `folder`,
    /// the folder above the class folders) and flag a group the model fails.
    pub slice_by: Option<String>,
    /// Or by an attribute per image file: a CSV of `path,<attribute>` with a header row.
    pub slice_file: Option<PathBuf>,
    /// The most confidently wrong examples to list.
    pub worst_errors: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            report: true,
            slice_by: None,
            slice_file: None,
            worst_errors: 16,
        }
    }
}

/// Logs beside `metrics.jsonl` (which is always written, with `metrics.csv` and the plots).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Also write TensorBoard event files into `<run>/tensorboard/`.
    pub tensorboard: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Run name; the run directory is `<runs_dir>/<name>-<timestamp>`. Empty: the config file's
    /// stem.
    pub name: String,
    pub seed: u64,
    pub backend: BackendChoice,
    /// The CPU backend `backend = "auto"` falls back to when no GPU adapter opens.
    pub cpu_backend: CpuBackend,
    pub runs_dir: PathBuf,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            seed: 42,
            backend: BackendChoice::Auto,
            cpu_backend: CpuBackend::Flex,
            runs_dir: PathBuf::from("runs"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// wgpu on a real GPU adapter, else `run.cpu_backend`.
    Auto,
    Wgpu,
    Flex,
    Ndarray,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuBackend {
    Flex,
    Ndarray,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Where the dataset lives. Empty: `datasets/<dataset>` for the IDX sets.
    pub path: PathBuf,
    /// Share of the training data held out for validation (seeded by `run.seed`; for a text
    /// corpus, the tail before the test tail).
    pub valid_fraction: f64,
    /// Share held out as the test split when the dataset has no test files of its own.
    pub test_fraction: f64,
    /// Cap on the samples read from each split file (for smoke tests).
    pub limit: Option<usize>,
    /// What a bad record (undecodable, missing field, unknown label) does: stop with its
    /// location, or be skipped and counted.
    pub on_error: OnError,
    /// Threads that decode and batch ahead of the training step.
    pub workers: usize,
    /// Batches each worker prepares ahead.
    pub prefetch: usize,
    /// The most memory the data path may hold ("512MiB", "2GB", bytes): checked when the
    /// data is opened, so that a dataset too large for it fails before training starts.
    pub memory_budget: Option<String>,
    /// Sharded datasets only: records in the shuffle buffer that follows the per-epoch shard
    /// order (default 16384). Larger shuffles better and reads less sequentially.
    pub shuffle_buffer: Option<usize>,
    /// Image datasets only; filled with defaults for them.
    pub image: Option<ImageDataConfig>,
    /// Image folders only: per-sample augmentation of the training split. Images keep their
    /// aspect (`data.image.crop_pct`, 1 when not set).
    pub augment: Option<AugmentConfig>,
    /// Text datasets only; filled with defaults for them.
    pub text: Option<TextDataConfig>,
    /// Text datasets only; filled with defaults for them.
    pub tokenizer: Option<TokenizerConfig>,
    /// `dataset = "tabular"` only: which columns are features and targets.
    pub tabular: Option<TabularDataConfig>,
    /// A user's data kind's own keys, read by the kind registered under its name.
    #[serde(flatten)]
    pub settings: toml::Table,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Mnist,
            path: PathBuf::new(),
            valid_fraction: 0.1,
            test_fraction: 0.1,
            limit: None,
            on_error: OnError::Fail,
            workers: 2,
            prefetch: 4,
            memory_budget: None,
            shuffle_buffer: None,
            image: None,
            augment: None,
            text: None,
            tokenizer: None,
            tabular: None,
            settings: toml::Table::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    Fail,
    Skip,
}

/// `data.dataset`: a built-in kind, or a user's kind registered under its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetKind {
    Mnist,
    FashionMnist,
    ImageFolder,
    /// Labelled texts in CSV or JSONL files.
    TextClassification,
    /// One plain-text corpus for language modelling.
    TextCorpus,
    /// IDX image shards (`stoke data pack`, `stoke data synth`) streamed from disk.
    ImageShards,
    /// Parquet files of encoded images and labels (as Hugging Face datasets write them).
    ImageParquet,
    /// JSONL shards of labelled texts (`stoke data pack`) streamed from disk.
    TextShards,
    /// Rows of a CSV or Parquet table (`[data.tabular]` names the columns).
    Tabular,
    /// A data kind a user's binary registered (`Cli::data::<D>()`).
    Custom(String),
}

impl DatasetKind {
    /// The built-in kinds.
    pub const BUILT_IN: [DatasetKind; 9] = [
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::ImageFolder,
        DatasetKind::TextClassification,
        DatasetKind::TextCorpus,
        DatasetKind::ImageShards,
        DatasetKind::ImageParquet,
        DatasetKind::TextShards,
        DatasetKind::Tabular,
    ];

    pub fn name(&self) -> &str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::ImageFolder => "image-folder",
            DatasetKind::TextClassification => "text-classification",
            DatasetKind::TextCorpus => "text-corpus",
            DatasetKind::ImageShards => "image-shards",
            DatasetKind::ImageParquet => "image-parquet",
            DatasetKind::TextShards => "text-shards",
            DatasetKind::Tabular => "tabular",
            DatasetKind::Custom(name) => name,
        }
    }

    /// Read from disk as batches are made instead of held in memory.
    pub fn is_streamed(&self) -> bool {
        matches!(self, DatasetKind::ImageShards | DatasetKind::TextShards)
    }

    /// Kinds whose files are not found under `datasets/<name>` by default.
    pub fn needs_path(&self) -> bool {
        !matches!(self, DatasetKind::Mnist | DatasetKind::FashionMnist)
    }

    pub fn is_text(&self) -> bool {
        matches!(
            self,
            DatasetKind::TextClassification | DatasetKind::TextCorpus | DatasetKind::TextShards
        )
    }

    pub fn is_image(&self) -> bool {
        matches!(
            self,
            DatasetKind::Mnist
                | DatasetKind::FashionMnist
                | DatasetKind::ImageFolder
                | DatasetKind::ImageShards
                | DatasetKind::ImageParquet
        )
    }
}

impl Serialize for DatasetKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for DatasetKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(Self::BUILT_IN
            .into_iter()
            .find(|kind| kind.name() == name)
            .unwrap_or(DatasetKind::Custom(name)))
    }
}

/// `[data.tabular]`: which columns of the table are what. A name may hold `*` (any run of
/// characters) or `?` (one): `numeric = ["Att*"]` is every column whose name starts `Att`, in
/// the file's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TabularDataConfig {
    /// Numeric feature columns, standardised with the training split's statistics.
    pub numeric: Vec<String>,
    /// Categorical feature columns, each value embedded (a value unseen in training reads as
    /// unknown).
    pub categorical: Vec<String>,
    /// Target columns: one or more numbers (regression), one class (classification), or one
    /// 0/1 column per label (multi-label).
    pub targets: Vec<String>,
    pub task: TabularTask,
    /// `auto` goes by the file extension (.parquet, else CSV).
    pub format: TableFormat,
    /// Regression: train on standardised targets (metrics are reported in the targets' own
    /// units either way).
    pub standardize_targets: bool,
    /// A column that assigns each row to `train`, `valid` or `test`, instead of holding out
    /// `data.valid_fraction` and `data.test_fraction` at random.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split_column: Option<String>,
}

impl Default for TabularDataConfig {
    fn default() -> Self {
        Self {
            numeric: Vec::new(),
            categorical: Vec::new(),
            targets: Vec::new(),
            task: TabularTask::Regression,
            format: TableFormat::Auto,
            standardize_targets: true,
            split_column: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TabularTask {
    Regression,
    Classification,
    MultiLabel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableFormat {
    Auto,
    Csv,
    Parquet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageDataConfig {
    /// `[height, width]` images are resized to (image folders; IDX sets keep their own size).
    pub size: [usize; 2],
    pub color: ColorMode,
    /// Per-channel normalisation; empty: computed from the training split.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Image folders: keep each image's aspect, resizing its shorter side to
    /// `size / crop_pct` and centre-cropping `size` for evaluation (timm's evaluation
    /// transform; ImageNet checkpoints use 0.875). Unset: images are squashed to `size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop_pct: Option<f64>,
    /// How images kept at their aspect are resampled (as Pillow does it); images squashed
    /// to `size` are resampled bilinearly.
    pub interpolation: Interpolation,
    /// Images kept at their aspect: the most an image's shorter side may be enlarged to reach
    /// `size / crop_pct`. A smaller image (an icon, a thumbnail, a 1-pixel sliver) is too
    /// small for the crop and follows `data.on_error`.
    #[serde(skip_serializing_if = "is_default_upscale")]
    pub max_upscale: f64,
}

const DEFAULT_UPSCALE: f64 = 10.0;

/// Left out of recorded configs at its default, so runs from before the key existed keep
/// their definition hash (and resume).
fn is_default_upscale(value: &f64) -> bool {
    *value == DEFAULT_UPSCALE
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

impl Default for ImageDataConfig {
    fn default() -> Self {
        Self {
            size: [28, 28],
            color: ColorMode::Grayscale,
            mean: Vec::new(),
            std: Vec::new(),
            crop_pct: None,
            interpolation: Interpolation::Bilinear,
            max_upscale: DEFAULT_UPSCALE,
        }
    }
}

/// Resampling filters, named as timm's `pretrained_cfg.interpolation` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interpolation {
    #[default]
    Bilinear,
    Bicubic,
}

/// `[data.augment]`: what each training sample goes through, drawn afresh every epoch from
/// (seed, epoch, index). Evaluation never augments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Random resized crop: the share of the image's area a crop covers, drawn uniformly.
    pub crop_scale: [f64; 2],
    /// Random resized crop: the crop's aspect ratio (width / height), drawn log-uniformly.
    pub crop_ratio: [f64; 2],
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// Colour jitter, as torchvision's `ColorJitter`: each factor is drawn from
    /// [1 − x, 1 + x] and the three are applied in a random order (0: off).
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    /// Colour jitter's hue shift, drawn from [−hue, hue] of the colour circle (at most 0.5;
    /// RGB images only), applied in the same random order as the other three. Left out of
    /// recorded configs at 0, so runs from before it keep their definition hash.
    #[serde(skip_serializing_if = "is_zero")]
    pub hue: f64,
    /// Mixup (timm's `Mixup`, batch mode): each training batch blended with itself reversed,
    /// by a weight drawn from Beta(α, α); the loss weighs both classes alike (0: off).
    #[serde(skip_serializing_if = "is_zero")]
    pub mixup_alpha: f64,
    /// CutMix: a box of the reversed batch pasted in, its area drawn from Beta(α, α) (0: off).
    #[serde(skip_serializing_if = "is_zero")]
    pub cutmix_alpha: f64,
    /// With mixup or CutMix: the probability that a batch is mixed at all.
    #[serde(skip_serializing_if = "is_one")]
    pub mix_prob: f64,
    /// With both: the probability that a mixed batch uses CutMix rather than mixup.
    #[serde(skip_serializing_if = "is_half")]
    pub switch_prob: f64,
    /// An automatic augmentation policy after the crop, flip and jitter: torchvision's
    /// `"trivial"` (TrivialAugmentWide) or `"rand"` (RandAugment; off when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_augment: Option<AutoAugmentKind>,
    /// RandAugment: operations per sample (torchvision's `num_ops`).
    #[serde(skip_serializing_if = "is_two")]
    pub rand_ops: usize,
    /// RandAugment: the strength of every operation, a bin from 0 to 30 (`magnitude`).
    #[serde(skip_serializing_if = "is_nine")]
    pub rand_magnitude: usize,
}

/// `data.augment.auto_augment`'s policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutoAugmentKind {
    Trivial,
    Rand,
}

/// An automatic augmentation policy with its settings, as the data workers apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoAugment {
    /// One operation of fourteen, its strength drawn from 31 bins.
    Trivial,
    /// `ops` operations, each at strength bin `magnitude`.
    Rand { ops: usize, magnitude: usize },
}

impl AugmentConfig {
    pub fn auto_augment_policy(&self) -> Option<AutoAugment> {
        self.auto_augment.map(|kind| match kind {
            AutoAugmentKind::Trivial => AutoAugment::Trivial,
            AutoAugmentKind::Rand => AutoAugment::Rand {
                ops: self.rand_ops,
                magnitude: self.rand_magnitude,
            },
        })
    }
}

fn is_two(value: &usize) -> bool {
    *value == 2
}

fn is_nine(value: &usize) -> bool {
    *value == 9
}

fn is_one(value: &f64) -> bool {
    *value == 1.0
}

fn is_half(value: &f64) -> bool {
    *value == 0.5
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            crop_scale: [0.08, 1.0],
            crop_ratio: [0.75, 4.0 / 3.0],
            hflip: 0.5,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            mixup_alpha: 0.0,
            cutmix_alpha: 0.0,
            mix_prob: 1.0,
            switch_prob: 0.5,
            auto_augment: None,
            rand_ops: 2,
            rand_magnitude: 9,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextDataConfig {
    /// `auto` goes by the file extension (.csv, .jsonl).
    pub format: TextFormat,
    pub text_field: String,
    pub label_field: String,
    /// Classification: tokens kept from the start of each text.
    pub max_length: usize,
    /// Language modelling: tokens the model sees at once.
    pub context_length: usize,
    /// Language modelling: tokens between the starts of consecutive training windows
    /// (default: `context_length`, windows that do not overlap).
    pub stride: Option<usize>,
}

impl Default for TextDataConfig {
    fn default() -> Self {
        Self {
            format: TextFormat::Auto,
            text_field: "text".into(),
            label_field: "label".into(),
            max_length: 256,
            context_length: 128,
            stride: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextFormat {
    Auto,
    Csv,
    Jsonl,
    Parquet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    pub kind: TokenizerKind,
    /// Subword vocabulary size to train (bpe, wordpiece).
    pub vocab_size: usize,
    /// A Hugging Face `tokenizer.json` to use as is (kind = "file").
    pub path: PathBuf,
    pub lowercase: bool,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            kind: TokenizerKind::Bpe,
            vocab_size: 4000,
            path: PathBuf::new(),
            lowercase: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    /// One token per character of the training text.
    Char,
    /// Byte-level BPE trained on the training split (Hugging Face tokenizers).
    Bpe,
    /// WordPiece trained on the training split (Hugging Face tokenizers).
    Wordpiece,
    /// An existing tokenizer.json (`path`).
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColorMode {
    Grayscale,
    Rgb,
}

impl ColorMode {
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Grayscale => 1,
            ColorMode::Rgb => 3,
        }
    }
}

/// The `[model]` table: the network (`kind` and its keys) and where its weights start.
///
/// `init_from`, `freeze` and `lr_by_prefix` apply to every kind, so they sit beside the
/// network's keys rather than in each kind's table. The kind's own keys are read by the kind
/// registered under that name (`crate::registry`), which refuses keys it does not know and
/// fills the rest with their defaults when the config is loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    pub kind: String,
    /// The kind's own keys, completed with its defaults.
    #[serde(flatten)]
    pub settings: toml::Table,
    /// Start from these weights instead of random ones: a Hugging Face folder (`config.json`
    /// + `model.safetensors`), a stoke run directory or a stoke artifact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// With `init_from` a run directory: which of its checkpoints (`best`, `last` or `step-<N>`).
    // Left out at its default, so that runs from before it existed keep their definition.
    #[serde(skip_serializing_if = "is_best")]
    pub init_checkpoint: String,
    /// Parameter name prefixes kept as they are (no gradient step), e.g. ["embeddings"].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<String>,
    /// A learning rate of its own for the parameters under each name prefix (e.g. the new
    /// head), following the same schedule as `optimizer.lr`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub lr_by_prefix: BTreeMap<String, f64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: "mlp".into(),
            settings: toml::Table::new(),
            init_from: None,
            init_checkpoint: "best".into(),
            freeze: Vec::new(),
            lr_by_prefix: BTreeMap::new(),
        }
    }
}

fn is_best(choice: &str) -> bool {
    choice == "best"
}

impl ModelConfig {
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// A model of `kind` with the keys of `settings` (its config struct).
    pub fn of<T: Serialize>(kind: &str, settings: &T) -> Self {
        Self {
            kind: kind.into(),
            settings: toml::Table::try_from(settings).expect("a model config serializes to TOML"),
            ..Self::default()
        }
    }

    /// The kind's keys read as its config struct `T`.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        toml::Value::Table(self.settings.clone())
            .try_into()
            .map_err(|err: toml::de::Error| err.message().to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub dropout: f64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            hidden: vec![512, 256],
            activation: Activation::Relu,
            dropout: 0.2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Relu,
    /// The exact GELU, x·Φ(x) (BERT's "gelu").
    Gelu,
    /// GELU with Φ approximated through tanh (GPT-2's "gelu_new").
    GeluTanh,
    Tanh,
}

/// PyTorch's `examples/mnist` network by default: conv 3×3 32 → conv 3×3 64 → max-pool 2 →
/// dropout → fc 128 → dropout → fc classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnConfig {
    /// Output channels of each 3×3 (unpadded) convolution, in order.
    pub channels: Vec<usize>,
    pub kernel_size: usize,
    pub hidden: usize,
    /// Dropout after the pooling layer.
    pub dropout: f64,
    /// Dropout after the hidden fully connected layer.
    pub fc_dropout: f64,
}

impl Default for CnnConfig {
    fn default() -> Self {
        Self {
            channels: vec![32, 64],
            kernel_size: 3,
            hidden: 128,
            dropout: 0.25,
            fc_dropout: 0.5,
        }
    }
}

/// A CIFAR-style residual network: a 3×3 stem, three stages of basic blocks (widths w, 2w,
/// 4w; the last two halve the resolution), global average pooling and a linear head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResnetConfig {
    /// Weighted layers: 6n + 2 for n blocks per stage (8, 14, 20, …).
    pub depth: usize,
    /// Channels of the first stage.
    pub width: usize,
}

impl Default for ResnetConfig {
    fn default() -> Self {
        Self {
            depth: 8,
            width: 16,
        }
    }
}

/// `kind = "timm-resnet"`: the ImageNet ResNet of timm and torchvision (a 7×7 stem with max
/// pooling, four stages of basic or bottleneck blocks with batch norm, average pooling and a
/// linear head), under their parameter names. `model.init_from` a timm folder fills every key
/// from its `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimmResnetConfig {
    /// timm's name for the network: resnet18, resnet26, resnet34, resnet50, resnet101 or
    /// resnet152 (the block and the blocks per stage).
    pub architecture: String,
    /// Blocks in each of the four stages (default: the architecture's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
    /// Widths of the four stages (default: 64, 128, 256, 512; a bottleneck block's output
    /// is four times its stage's width). The stem has 64 channels, as timm's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<usize>>,
}

/// `kind = "timm-vit"`: timm's Vision Transformer with a class token. `model.init_from` a
/// timm folder fills every key from its `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimmVitConfig {
    /// vit_tiny_patch16_224, vit_small_patch16_224 or vit_base_patch16_224.
    pub architecture: String,
    /// Width of the patch embeddings and the blocks (default: the architecture's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embed_dim: Option<usize>,
    /// Blocks (default: the architecture's, 12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Attention heads (default: the architecture's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_heads: Option<usize>,
    /// Side of the square patches (default: 16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_size: Option<usize>,
    /// MLP width as a multiple of embed_dim (default: 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_ratio: Option<f64>,
    /// ε of every layer norm (default: timm's 1e-6; transformers' ViTs use 1e-12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_norm_eps: Option<f64>,
}

impl Default for TimmVitConfig {
    fn default() -> Self {
        Self {
            architecture: "vit_small_patch16_224".into(),
            embed_dim: None,
            depth: None,
            num_heads: None,
            patch_size: None,
            mlp_ratio: None,
            layer_norm_eps: None,
        }
    }
}

/// `kind = "timm-convnext"`: timm's ConvNeXt. `model.init_from` a timm folder fills every key
/// from its `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimmConvnextConfig {
    /// convnext_tiny, convnext_small or convnext_base.
    pub architecture: String,
    /// Blocks in each of the four stages (default: the architecture's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depths: Option<Vec<usize>>,
    /// Widths of the four stages (default: the architecture's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dims: Option<Vec<usize>>,
    /// ε of the head's layer norm (default: timm's 1e-6; transformers' ConvNeXts use 1e-12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_norm_eps: Option<f64>,
}

impl Default for TimmConvnextConfig {
    fn default() -> Self {
        Self {
            architecture: "convnext_tiny".into(),
            depths: None,
            dims: None,
            head_norm_eps: None,
        }
    }
}

/// `kind = "efficientnet-lite"`: EfficientNet-Lite0 to Lite4 (ReLU6, no squeeze-and-excitation,
/// TensorFlow's "same" padding), under the `efficientnet_lite_pytorch` parameter names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EfficientNetLiteConfig {
    /// lite0 to lite4: the width and depth coefficients.
    pub variant: String,
    /// Overrides the variant's channel multiplier (for small test networks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width_coefficient: Option<f64>,
    /// Overrides the variant's repeat multiplier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth_coefficient: Option<f64>,
    /// Before the classifier, in training (0.2 in the ImageNet training of lite0).
    pub dropout: f64,
}

impl Default for EfficientNetLiteConfig {
    fn default() -> Self {
        Self {
            variant: "lite0".into(),
            width_coefficient: None,
            depth_coefficient: None,
            dropout: 0.2,
        }
    }
}

impl Default for TimmResnetConfig {
    fn default() -> Self {
        Self {
            architecture: "resnet18".into(),
            layers: None,
            channels: None,
        }
    }
}

/// A transformer encoder over token and position embeddings, for text classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformerConfig {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Width of the feed-forward layers.
    pub d_ff: usize,
    /// Of the feed-forward layers.
    pub activation: Activation,
    pub dropout: f64,
    /// How token states become one vector: the mean over real tokens, or their maximum.
    pub pooling: Pooling,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self {
            d_model: 128,
            n_layers: 2,
            n_heads: 4,
            d_ff: 512,
            activation: Activation::Gelu,
            dropout: 0.1,
            pooling: Pooling::Mean,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    Mean,
    Max,
}

/// A decoder-only (causally masked) transformer language model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmConfig {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    /// Of the feed-forward layers.
    pub activation: Activation,
    pub dropout: f64,
    /// Share the output projection with the token embedding.
    pub tie_weights: bool,
}

impl Default for LmConfig {
    fn default() -> Self {
        Self {
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            d_ff: 512,
            activation: Activation::Gelu,
            dropout: 0.1,
            tie_weights: true,
        }
    }
}

/// A BERT-style encoder (BERT, MiniLM): token, position and token-type embeddings, post-norm
/// blocks with exact GELU, a pooler (dense + tanh on `[CLS]`) and a classification head. Shape
/// keys left out come from `init_from`'s `config.json`, or the defaults below without one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BertConfig {
    /// Token embeddings; the tokenizer's vocabulary without `init_from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// 256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<usize>,
    /// 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_layers: Option<usize>,
    /// 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_heads: Option<usize>,
    /// 4 × hidden_size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
    /// Learned positions: the longest text the model reads (512).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_positions: Option<usize>,
    /// 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_vocab_size: Option<usize>,
    /// 1e-12.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_norm_eps: Option<f64>,
    /// After embeddings, attention and each block (BERT's 0.1 when not set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// What the head reads: the pooler's `[CLS]` vector, or the mean of the real tokens'
    /// states (how sentence-transformers models such as MiniLM were trained).
    pub pooling: BertPooling,
}

impl BertConfig {
    pub fn hidden(&self) -> usize {
        self.hidden_size.unwrap_or(256)
    }
    pub fn layers(&self) -> usize {
        self.num_layers.unwrap_or(4)
    }
    pub fn heads(&self) -> usize {
        self.num_heads.unwrap_or(4)
    }
    pub fn intermediate(&self) -> usize {
        self.intermediate_size.unwrap_or(4 * self.hidden())
    }
    pub fn positions(&self) -> usize {
        self.max_positions.unwrap_or(512)
    }
    pub fn token_types(&self) -> usize {
        self.type_vocab_size.unwrap_or(2)
    }
    pub fn epsilon(&self) -> f64 {
        self.layer_norm_eps.unwrap_or(1e-12)
    }
    pub fn dropout_prob(&self) -> f64 {
        self.dropout.unwrap_or(0.1)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BertPooling {
    #[default]
    Cls,
    Mean,
}

/// A GPT-2-style decoder: learned positions, pre-norm blocks with the tanh-approximated GELU,
/// a final layer norm and an output projection tied to the token embedding. Shape keys left
/// out come from `init_from`'s `config.json`, or the defaults below without one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gpt2Config {
    /// Token embeddings; the tokenizer's vocabulary without `init_from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// 128.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<usize>,
    /// 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_layers: Option<usize>,
    /// 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_heads: Option<usize>,
    /// 4 × hidden_size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
    /// Learned positions: the longest context (the data's context length without `init_from`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_positions: Option<usize>,
    /// 1e-5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_norm_eps: Option<f64>,
    /// After embeddings, attention and each block (GPT-2's 0.1 when not set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
}

impl Gpt2Config {
    pub fn hidden(&self) -> usize {
        self.hidden_size.unwrap_or(128)
    }
    pub fn layers(&self) -> usize {
        self.num_layers.unwrap_or(4)
    }
    pub fn heads(&self) -> usize {
        self.num_heads.unwrap_or(4)
    }
    pub fn intermediate(&self) -> usize {
        self.intermediate_size.unwrap_or(4 * self.hidden())
    }
    pub fn epsilon(&self) -> f64 {
        self.layer_norm_eps.unwrap_or(1e-5)
    }
    pub fn dropout_prob(&self) -> f64 {
        self.dropout.unwrap_or(0.1)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OptimizerConfig {
    Sgd(SgdConfig),
    Adam(AdamConfig),
    Adamw(AdamConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adam(AdamConfig::default())
    }
}

impl OptimizerConfig {
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd(sgd) => sgd.lr,
            OptimizerConfig::Adam(adam) | OptimizerConfig::Adamw(adam) => adam.lr,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd(_) => "sgd",
            OptimizerConfig::Adam(_) => "adam",
            OptimizerConfig::Adamw(_) => "adamw",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    /// PyTorch's dampening (0 by default, unlike burn's 0.1).
    pub dampening: f64,
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// Adam and AdamW share their keys; for `adam` the weight decay is an L2 penalty added to the
/// gradient, for `adamw` it is decoupled (Loshchilov & Hutter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// PyTorch's default (burn's is 1e-5).
    pub epsilon: f64,
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Learning-rate schedule over optimizer steps, each with an optional linear warm-up from
/// `lr / (warmup_steps + 1)` up to `lr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SchedulerConfig {
    Constant(ConstantSchedule),
    Step(StepSchedule),
    Cosine(CosineSchedule),
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig::Constant(ConstantSchedule::default())
    }
}

impl SchedulerConfig {
    pub fn warmup_steps(&self) -> usize {
        match self {
            SchedulerConfig::Constant(s) => s.warmup_steps,
            SchedulerConfig::Step(s) => s.warmup_steps,
            SchedulerConfig::Cosine(s) => s.warmup_steps,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConstantSchedule {
    pub warmup_steps: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepSchedule {
    pub warmup_steps: usize,
    /// Multiply the learning rate by `gamma` every `step_size` optimizer steps.
    pub step_size: usize,
    pub gamma: f64,
}

impl Default for StepSchedule {
    fn default() -> Self {
        Self {
            warmup_steps: 0,
            step_size: 1000,
            gamma: 0.1,
        }
    }
}

/// Cosine annealing from `lr` down to `min_lr` over the run's remaining steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CosineSchedule {
    pub warmup_steps: usize,
    pub min_lr: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Samples per forward/backward pass.
    pub batch_size: usize,
    /// Passes whose gradients are summed before each optimizer step: a step sees
    /// `batch_size × grad_accum_steps` samples with the memory of `batch_size`.
    pub grad_accum_steps: usize,
    /// Also report top-k accuracy: the share of predictions whose target is among the k
    /// highest scores.
    pub top_k: Option<usize>,
    /// Train (and validate) on only this many batches of the training split, to check that
    /// the model can fit them.
    pub overfit_batches: Option<usize>,
    /// The float type of the forward and backward passes; weights and optimizer state stay f32.
    pub precision: Precision,
    pub eval_batch_size: usize,
    /// Stop after this many optimizer steps, even mid-epoch.
    pub max_steps: Option<usize>,
    /// Also validate every N steps (validation always runs at each epoch end).
    pub eval_every: Option<usize>,
    /// Steps between metric lines.
    pub log_every: usize,
    /// Clip gradients to this norm; see `grad_clip_scope`.
    pub grad_clip_norm: Option<f64>,
    pub grad_clip_scope: ClipScope,
    pub progress: ProgressMode,
    /// Stop when the monitored metric stops improving.
    pub early_stopping: Option<EarlyStoppingConfig>,
}

/// Stops training after `patience` validations in a row without an improvement of at least
/// `min_delta` in `monitor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStoppingConfig {
    pub monitor: Monitor,
    /// `min` or `max`; by default the way the metric improves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MonitorMode>,
    pub patience: usize,
    pub min_delta: f64,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        Self {
            monitor: Monitor::valid("loss"),
            mode: None,
            patience: 3,
            min_delta: 0.0,
        }
    }
}

impl TrainConfig {
    /// Samples each optimizer step learns from.
    pub fn samples_per_step(&self) -> usize {
        self.batch_size * self.grad_accum_steps
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            grad_accum_steps: 1,
            overfit_batches: None,
            top_k: None,
            precision: Precision::default(),
            eval_batch_size: 1000,
            max_steps: None,
            eval_every: None,
            log_every: 50,
            grad_clip_norm: None,
            grad_clip_scope: ClipScope::Global,
            progress: ProgressMode::Auto,
            early_stopping: None,
        }
    }
}

/// The float type training computes in (`train.precision`), named as PyTorch Lightning's
/// mixed precisions are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    #[default]
    F32,
    /// Forward and backward in bfloat16 on a cast of the f32 weights.
    Bf16Mixed,
    /// Forward and backward in float16 on a cast of the f32 weights, with dynamic loss scaling.
    F16Mixed,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16Mixed => "bf16-mixed",
            Precision::F16Mixed => "f16-mixed",
        })
    }
}

/// What `grad_clip_norm` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClipScope {
    /// The norm of all gradients together, as `torch.nn.utils.clip_grad_norm_`.
    Global,
    /// Each parameter's gradient separately (burn's `GradientClippingConfig::Norm`).
    PerTensor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProgressMode {
    /// A progress bar on a terminal, plain lines otherwise.
    Auto,
    Bar,
    Plain,
    Quiet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Save at the end of every N epochs (0: never, except the final one).
    pub every_epochs: usize,
    /// Also save every N optimizer steps.
    pub every_steps: Option<usize>,
    /// Keep the newest K checkpoints (the best ones are kept besides).
    pub keep_last: usize,
    /// Keep the K best checkpoints by `monitor`; never deleted by `keep_last`.
    pub keep_best: usize,
    /// Metric that ranks checkpoints, as `valid.<metric>`; by default `valid.accuracy` for
    /// a classifier and `valid.loss` otherwise. Only checkpoints validated at their step
    /// (epoch ends, or `train.eval_every` steps) are ranked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Monitor>,
    /// `min` or `max`; by default the way the metric improves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MonitorMode>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every_epochs: 1,
            every_steps: None,
            keep_last: 2,
            keep_best: 1,
            monitor: None,
            mode: None,
        }
    }
}

/// A validation metric, as `valid.<metric>`: `valid.loss`, `valid.accuracy`, `valid.rmse`, ...
/// (the task's metrics; checked against them when the experiment is prepared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Monitor(pub String);

impl Monitor {
    pub fn valid(metric: &str) -> Self {
        Monitor(format!("valid.{metric}"))
    }

    /// The metric's name without the split, or `None` when it does not start `valid.`.
    pub fn metric(&self) -> Option<&str> {
        self.0.strip_prefix("valid.")
    }
}

impl std::fmt::Display for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MonitorMode {
    Min,
    Max,
}

impl MonitorMode {
    /// Whether `value` beats `best` by more than `min_delta`.
    pub fn improves(self, value: f64, best: f64, min_delta: f64) -> bool {
        match self {
            MonitorMode::Max => value > best + min_delta,
            MonitorMode::Min => value < best - min_delta,
        }
    }
}
