//! Where the training loop stands: everything besides the model, optimizer and scheduler
//! that a resumed run needs to continue exactly as the uninterrupted run would have.
//!
//! No RNG state is stored: the data order of each epoch is a function of (seed, epoch) and the
//! device RNG is reseeded from (seed, step) before every step, so the position is enough.

use serde::{Deserialize, Serialize};

use super::measure::Measured;
use super::precision::LossScale;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Optimizer steps taken.
    pub global_step: usize,
    /// Epochs completed.
    pub epoch: usize,
    /// Batches of the epoch in progress already trained on (0 at an epoch boundary).
    pub batch_in_epoch: usize,
    /// The learning rate of the last step.
    pub lr: f64,
    /// The training metrics summed since the last metric record.
    pub interval: IntervalSums,
    /// The metric records of the epoch in progress, for its mean.
    pub epoch_parts: Vec<Measured>,
    /// The mean training metrics of the last completed epoch.
    pub last_epoch_train: Option<Measured>,
    /// The last validation and its step.
    pub last_valid: Option<(usize, Measured)>,
    /// The best checkpoints by `checkpoint.monitor`, best first, at most `keep_best`.
    pub best: Vec<BestCheckpoint>,
    pub early_stopping: EarlyStoppingState,
    /// Lines of `metrics.jsonl` written when the checkpoint was taken; a resumed run drops
    /// the lines after them.
    pub metrics_lines: usize,
    /// Wall time, training time per epoch, and training samples and seconds so far.
    pub elapsed_s: f64,
    pub epoch_time_s: Vec<f64>,
    pub trained_samples: usize,
    pub trained_s: f64,
    /// Seconds each checkpoint took to write.
    pub checkpoint_time_s: Vec<f64>,
    /// f16 loss scaling (`train.precision = "f16-mixed"`).
    #[serde(default)]
    pub loss_scale: Option<LossScale>,
}

/// Sums of the training metrics on the device, read back (losslessly: f32 sums in f64).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalSums {
    pub loss_sum: f64,
    pub correct: i64,
    #[serde(default)]
    pub top_k_correct: i64,
    pub predictions: usize,
    pub samples: usize,
    pub tokens: usize,
    /// Per-class counts for macro-F1 (classification).
    pub true_positives: Vec<f64>,
    pub predicted: Vec<f64>,
    pub actual: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestCheckpoint {
    pub name: String,
    pub step: usize,
    pub epoch: usize,
    /// The monitored metric's value.
    pub value: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingState {
    pub best: Option<f64>,
    /// Validations in a row without improvement.
    pub stale: usize,
}
