//! Where the training loop stands: everything besides the model, optimizer and scheduler
//! that a resumed run needs to continue exactly as the uninterrupted run would have.
//!
//! No RNG state is stored: the data order of each epoch is a function of (seed, epoch) and the
//! device RNG is reseeded from (seed, step) before every step, so the position is enough.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::metrics::Measured;
use crate::config::Precision;
use crate::task::TaskSums;

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
    /// Ranks the run was trained on, set at every checkpoint (checkpoints from before it was
    /// recorded were all trained on one process).
    #[serde(default = "one")]
    pub world_size: usize,
    /// In a distributed run, each rank's own unfinished interval, by rank (`interval` is
    /// then their total), so that every rank of a resumed run continues its own sums.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rank_intervals: Vec<IntervalSums>,
    /// A run following a directory (`--follow`): its ledger, reservoir and decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<super::follow::FollowState>,
}

fn one() -> usize {
    1
}

/// Sums of the training metrics on the device, read back (losslessly: f32 sums in f64).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredSums")]
pub struct IntervalSums {
    pub loss_sum: f64,
    pub predictions: usize,
    pub samples: usize,
    pub tokens: usize,
    /// The task's named sums (`correct`, per-class counts, squared errors, ...).
    #[serde(flatten)]
    pub task: TaskSums,
}

/// [`IntervalSums`] as `state.json` holds them: checkpoints from before the tasks were named
/// wrote single counts (`"correct": 5`) where a list is kept now.
#[derive(Deserialize)]
struct StoredSums {
    loss_sum: f64,
    predictions: usize,
    samples: usize,
    tokens: usize,
    #[serde(flatten)]
    task: BTreeMap<String, OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(f64),
    Many(Vec<f64>),
}

impl From<StoredSums> for IntervalSums {
    fn from(stored: StoredSums) -> Self {
        Self {
            loss_sum: stored.loss_sum,
            predictions: stored.predictions,
            samples: stored.samples,
            tokens: stored.tokens,
            task: stored
                .task
                .into_iter()
                .map(|(name, values)| {
                    let values = match values {
                        OneOrMany::One(value) => vec![value],
                        OneOrMany::Many(values) => values,
                    };
                    (name, values)
                })
                .collect(),
        }
    }
}

impl IntervalSums {
    /// The sums as one list of numbers in `layout`'s order (the task's), to be added over
    /// ranks (every count here is below 2^53, so f64 holds it exactly).
    pub fn to_values(&self, layout: &[(&str, usize)]) -> Vec<f64> {
        let mut values = vec![
            self.loss_sum,
            self.predictions as f64,
            self.samples as f64,
            self.tokens as f64,
        ];
        for &(name, len) in layout {
            let start = values.len();
            values.extend(self.task.get(name).into_iter().flatten());
            values.resize(start + len, 0.0);
        }
        values
    }

    /// The inverse of [`to_values`](Self::to_values).
    pub fn from_values(values: &[f64], layout: &[(&str, usize)]) -> Self {
        let mut offset = 4;
        let mut task = TaskSums::new();
        for &(name, len) in layout {
            task.insert(name.to_string(), values[offset..offset + len].to_vec());
            offset += len;
        }
        Self {
            loss_sum: values[0],
            predictions: values[1] as usize,
            samples: values[2] as usize,
            tokens: values[3] as usize,
            task: if values[2] > 0.0 {
                task
            } else {
                TaskSums::new()
            },
        }
    }
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

/// Where f16 loss scaling starts (PyTorch's `GradScaler` default).
const INITIAL_SCALE: f64 = 65536.0;
/// Steps in a row without overflow before the scale doubles.
const GROWTH_INTERVAL: usize = 2000;

/// Dynamic loss scaling for f16; checkpointed, so a resumed run scales as the uninterrupted
/// one would have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    pub scale: f64,
    /// Steps in a row whose gradients were finite.
    pub good_steps: usize,
    /// Steps skipped because their gradients overflowed, over the whole run.
    pub skipped_steps: usize,
}

impl Default for LossScale {
    fn default() -> Self {
        Self {
            scale: INITIAL_SCALE,
            good_steps: 0,
            skipped_steps: 0,
        }
    }
}

impl LossScale {
    /// Whether `precision` scales its loss.
    pub fn needed(precision: Precision) -> bool {
        precision == Precision::F16Mixed
    }

    /// Moves the scale after a step whose gradients were `finite` or not; whether to take the
    /// step. Deciding needs the gradients' finiteness on the host: one number read back per
    /// step, as `GradScaler` does.
    pub fn record(&mut self, finite: bool) -> bool {
        if !finite {
            self.scale /= 2.0;
            self.good_steps = 0;
            self.skipped_steps += 1;
            return false;
        }
        self.good_steps += 1;
        if self.good_steps == GROWTH_INTERVAL {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_halves_on_overflow_and_doubles_after_a_run_of_good_steps() {
        let mut scale = LossScale::default();
        assert!(!scale.record(false));
        assert!(!scale.record(false));
        assert_eq!(scale.scale, INITIAL_SCALE / 4.0);
        for _ in 0..GROWTH_INTERVAL - 1 {
            assert!(scale.record(true));
        }
        assert_eq!(scale.scale, INITIAL_SCALE / 4.0);
        assert!(scale.record(true));
        assert_eq!(scale.scale, INITIAL_SCALE / 2.0);
        assert!(!scale.record(false));
        assert_eq!(
            (scale.scale, scale.good_steps, scale.skipped_steps),
            (INITIAL_SCALE / 4.0, 0, 3)
        );
    }
}
