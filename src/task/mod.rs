//! What a model predicts and how it is scored: each task's loss and metrics, for built-in and
//! user models alike.
//!
//! A dataset says which task its targets pose ([`TaskSpec`], saved with runs and artifacts);
//! the `[task]` table tunes its loss. A model's forward pass gives an [`Output`]: the loss and
//! what the metrics read ([`Scored`]). A built-in model hands its scores to
//! [`Task::output`], which applies the task's loss; a user model may compute a loss of its
//! own. The loop only ever sees a [`Task`]: it sums each batch's [`Output`] on the device
//! ([`Meter`]) and turns the sums into named metrics ([`Task::measure`]), so it names no task.
//!
//! To add a task: a variant of [`TaskSpec`] and of [`Scored`], a file with its loss, device
//! sums and metrics, and a branch in each `match` of this file.

mod classification;
mod multilabel;
mod regression;

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

pub use classification::macro_f1;
pub use multilabel::{LabelScores, per_label};
pub use regression::{RegressionLoss, TargetScale};

/// The task a dataset's targets pose, with what its metrics and reports need to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "kebab-case")]
pub enum TaskSpec {
    /// One class per sample.
    Classification { classes: Vec<String> },
    /// The next token at every position of a window.
    LanguageModel {
        vocab_size: usize,
        /// Tokens in a window: a prediction row's position is its row modulo this.
        context_length: usize,
        /// Characters per token of the training text (bits per character).
        chars_per_token: f64,
    },
    /// One or more real values per sample.
    Regression {
        targets: Vec<String>,
        /// How each target was standardised for training (`(y - mean) / std`); metrics are
        /// reported in the targets' own units. Empty: the targets are used as they are.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scales: Vec<TargetScale>,
    },
    /// Any number of labels per sample, each present or not.
    MultiLabel { labels: Vec<String> },
}

impl TaskSpec {
    pub fn name(&self) -> &'static str {
        match self {
            TaskSpec::Classification { .. } => "classification",
            TaskSpec::LanguageModel { .. } => "language-model",
            TaskSpec::Regression { .. } => "regression",
            TaskSpec::MultiLabel { .. } => "multi-label",
        }
    }

    /// Classes of a single-label classification.
    pub fn classes(&self) -> Option<&[String]> {
        match self {
            TaskSpec::Classification { classes } => Some(classes),
            _ => None,
        }
    }

    /// Scores a model gives per prediction row: classes, vocabulary, targets or labels.
    pub fn outputs(&self) -> usize {
        match self {
            TaskSpec::Classification { classes } => classes.len(),
            TaskSpec::LanguageModel { vocab_size, .. } => *vocab_size,
            TaskSpec::Regression { targets, .. } => targets.len(),
            TaskSpec::MultiLabel { labels } => labels.len(),
        }
    }
}

/// The `[task]` table: how the task's loss is computed. Keys of another task than the data's
/// are refused when the experiment is prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// Regression: `mse`, `mae` or `huber`.
    pub loss: RegressionLoss,
    /// Regression with `loss = "huber"`: where the loss turns from quadratic to linear, in
    /// standardised target units.
    pub huber_delta: f64,
    /// Multi-label: the probability at or above which a label is predicted present.
    pub threshold: f64,
    /// Classification: the share of each target's probability spread evenly over all classes
    /// (label smoothing, as PyTorch's `cross_entropy(label_smoothing=…)`).
    #[serde(skip_serializing_if = "is_zero")]
    pub label_smoothing: f64,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

impl TaskConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            loss: RegressionLoss::Mse,
            huber_delta: 1.0,
            threshold: 0.5,
            label_smoothing: 0.0,
        }
    }
}

/// What a model's forward pass on one batch gives the loop.
pub struct Output {
    /// The mean loss over the batch's predictions: one value, tracked for gradients.
    pub loss: Tensor<1>,
    /// What the task's metrics read.
    pub scored: Scored,
}

impl Output {
    /// A loss the model computed itself, with what the metrics should read (or
    /// [`Scored::Loss`] for the loss alone).
    pub fn new(loss: Tensor<1>, scored: Scored) -> Self {
        Self { loss, scored }
    }
}

/// A batch's predictions beside its targets, as a task's metrics read them.
pub enum Scored {
    /// Class scores (logits) `[rows, classes]` and the true class of each row.
    Classes {
        logits: Tensor<2>,
        targets: Tensor<1, Int>,
    },
    /// Predicted values `[rows, targets]` and the true values (standardised as the data
    /// gives them).
    Values {
        predicted: Tensor<2>,
        targets: Tensor<2>,
    },
    /// Label scores (logits) `[rows, labels]` and each label's presence (0 or 1).
    Labels {
        logits: Tensor<2>,
        targets: Tensor<2, Int>,
    },
    /// Class scores of a mixed batch (mixup, CutMix): each row's own class, its partner's,
    /// and the share of each input that is its own. Scored by the loss as such, by the
    /// metrics against the own classes.
    Mixed {
        logits: Tensor<2>,
        targets: Tensor<1, Int>,
        partners: Box<Tensor<1, Int>>,
        weight: f32,
    },
    /// Nothing beyond the loss.
    Loss,
}

impl Scored {
    fn kind(&self) -> &'static str {
        match self {
            Scored::Classes { .. } => "class scores",
            Scored::Values { .. } => "values",
            Scored::Labels { .. } => "label scores",
            Scored::Mixed { .. } => "mixed class scores",
            Scored::Loss => "a loss alone",
        }
    }

    fn in_f32(self) -> Self {
        match self {
            Scored::Classes { logits, targets } => Scored::Classes {
                logits: logits.cast(FloatDType::F32),
                targets,
            },
            Scored::Values { predicted, targets } => Scored::Values {
                predicted: predicted.cast(FloatDType::F32),
                targets: targets.cast(FloatDType::F32),
            },
            Scored::Labels { logits, targets } => Scored::Labels {
                logits: logits.cast(FloatDType::F32),
                targets,
            },
            Scored::Mixed {
                logits,
                targets,
                partners,
                weight,
            } => Scored::Mixed {
                logits: logits.cast(FloatDType::F32),
                targets,
                partners,
                weight,
            },
            Scored::Loss => Scored::Loss,
        }
    }
}

/// Whether a larger value of a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Lower,
    Higher,
}

/// A task as the loop runs it: its spec, its loss settings and `train.top_k`.
#[derive(Debug, Clone)]
pub struct Task {
    spec: TaskSpec,
    config: TaskConfig,
    top_k: Option<usize>,
}

impl Task {
    /// The task of `spec`; `config` keys that belong to another task, or a `top_k` the task
    /// cannot have, are refused with the key.
    pub fn new(spec: TaskSpec, config: TaskConfig, top_k: Option<usize>) -> Result<Self, String> {
        let defaults = TaskConfig::default();
        let regression = matches!(spec, TaskSpec::Regression { .. });
        let multilabel = matches!(spec, TaskSpec::MultiLabel { .. });
        if !regression
            && (config.loss != defaults.loss || config.huber_delta != defaults.huber_delta)
        {
            return Err(format!(
                "task.loss and task.huber_delta are for regression; this data is {}",
                spec.name()
            ));
        }
        if !multilabel && config.threshold != defaults.threshold {
            return Err(format!(
                "task.threshold is for multi-label data; this data is {}",
                spec.name()
            ));
        }
        let classification = matches!(spec, TaskSpec::Classification { .. });
        if !classification && config.label_smoothing != defaults.label_smoothing {
            return Err(format!(
                "task.label_smoothing is for classification; this data is {}",
                spec.name()
            ));
        }
        if !(0.0..1.0).contains(&config.label_smoothing) {
            return Err(format!(
                "task.label_smoothing must be at least 0 and below 1, got {}",
                config.label_smoothing
            ));
        }
        if let Some(k) = top_k {
            let outputs = match &spec {
                TaskSpec::Classification { .. } | TaskSpec::LanguageModel { .. } => spec.outputs(),
                _ => {
                    return Err(format!(
                        "train.top_k is for classification; this data is {}",
                        spec.name()
                    ));
                }
            };
            if k >= outputs {
                return Err(format!(
                    "train.top_k = {k} must be below the {outputs} classes the model chooses from"
                ));
            }
        }
        if let TaskSpec::Regression { targets, scales } = &spec
            && !scales.is_empty()
            && scales.len() != targets.len()
        {
            return Err(format!(
                "{} target scales for {} targets",
                scales.len(),
                targets.len()
            ));
        }
        Ok(Self {
            spec,
            config,
            top_k,
        })
    }

    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    /// The multi-label threshold (`task.threshold`).
    pub fn threshold(&self) -> f64 {
        self.config.threshold
    }

    /// The output of `scored` under this task's loss, computed in f32 whatever type the
    /// scores are in.
    ///
    /// # Panics
    /// If `scored` is not what this task scores (class scores for a regression, say); a
    /// model that builds its output this way from the batch the data gave never meets it.
    pub fn output(&self, scored: Scored) -> Output {
        let scored = scored.in_f32();
        if let (
            TaskSpec::Classification { .. },
            Scored::Mixed {
                logits,
                targets,
                partners,
                weight,
            },
        ) = (&self.spec, &scored)
        {
            // Cross-entropy is linear in the target distribution: the mixed targets' loss is
            // the weighted sum of both classes' (timm's SoftTargetCrossEntropy on mixed labels).
            let smoothing = self.config.label_smoothing;
            let own = classification::loss(logits.clone(), targets.clone(), smoothing);
            let theirs = classification::loss(logits.clone(), (**partners).clone(), smoothing);
            let loss = own * *weight + theirs * (1.0 - *weight);
            let scored = Scored::Classes {
                logits: logits.clone(),
                targets: targets.clone(),
            };
            return Output { loss, scored };
        }
        let loss = match (&self.spec, &scored) {
            (
                TaskSpec::Classification { .. } | TaskSpec::LanguageModel { .. },
                Scored::Classes { logits, targets },
            ) => classification::loss(logits.clone(), targets.clone(), self.config.label_smoothing),
            (TaskSpec::Regression { .. }, Scored::Values { predicted, targets }) => {
                regression::loss(&self.config, predicted.clone(), targets.clone())
            }
            (TaskSpec::MultiLabel { .. }, Scored::Labels { logits, targets }) => {
                multilabel::loss(logits.clone(), targets.clone())
            }
            (spec, scored) => panic!("{} of a {} task", scored.kind(), spec.name()),
        };
        Output { loss, scored }
    }

    /// Checks that `scored` is what this task's metrics read.
    pub fn check(&self, scored: &Scored) -> Result<(), String> {
        let fits = matches!(
            (&self.spec, scored),
            (_, Scored::Loss)
                | (
                    TaskSpec::Classification { .. } | TaskSpec::LanguageModel { .. },
                    Scored::Classes { .. }
                )
                | (TaskSpec::Regression { .. }, Scored::Values { .. })
                | (TaskSpec::MultiLabel { .. }, Scored::Labels { .. })
        );
        match fits {
            true => Ok(()),
            false => Err(format!(
                "its output is scored as {}, but the data's task is {}",
                scored.kind(),
                self.spec.name()
            )),
        }
    }

    /// The named sums this task's metrics are made of, each with its length: the layout in
    /// which ranks add them up.
    pub fn sum_layout(&self) -> Vec<(&'static str, usize)> {
        match &self.spec {
            TaskSpec::Classification { classes } => {
                classification::layout(Some(classes.len()), self.top_k)
            }
            TaskSpec::LanguageModel { .. } => classification::layout(None, self.top_k),
            TaskSpec::Regression { targets, .. } => regression::layout(targets.len()),
            TaskSpec::MultiLabel { labels } => multilabel::layout(labels.len()),
        }
    }

    /// A meter summing this task's metrics on the device.
    pub fn meter(&self) -> Meter {
        Meter::new(self.clone())
    }

    /// The task's metrics from its sums: `accuracy`, `macro_f1`, `rmse`, ... (the loss is
    /// the loop's own).
    pub fn measure(&self, sums: &TaskSums, rows: usize, loss: f64) -> BTreeMap<String, f64> {
        let rows = rows as f64;
        match &self.spec {
            TaskSpec::Classification { .. } => classification::measure(sums, rows, false),
            TaskSpec::LanguageModel {
                chars_per_token, ..
            } => {
                let mut metrics = classification::measure(sums, rows, true);
                metrics.insert("perplexity".into(), loss.exp());
                metrics.insert(
                    "bits_per_char".into(),
                    loss / std::f64::consts::LN_2 / chars_per_token,
                );
                metrics
            }
            TaskSpec::Regression { targets, scales } => {
                regression::measure(sums, rows, targets, scales)
            }
            TaskSpec::MultiLabel { labels } => multilabel::measure(sums, rows, labels),
        }
    }

    /// Metrics that `checkpoint.monitor` and `train.early_stopping.monitor` may name (as
    /// `valid.<name>`), with which way is better; the loss first.
    pub fn monitors(&self) -> Vec<(String, Direction)> {
        let mut names = vec![("loss".to_string(), Direction::Lower)];
        let higher = |name: &str| (name.to_string(), Direction::Higher);
        let lower = |name: &str| (name.to_string(), Direction::Lower);
        match &self.spec {
            TaskSpec::Classification { .. } => {
                names.extend([higher("accuracy"), higher("macro_f1")]);
            }
            TaskSpec::LanguageModel { .. } => {
                names.extend([
                    higher("accuracy"),
                    lower("perplexity"),
                    lower("bits_per_char"),
                ]);
            }
            TaskSpec::Regression { targets, .. } => {
                names.extend([lower("mae"), lower("rmse"), higher("r2")]);
                if targets.len() > 1 {
                    for target in targets {
                        names.extend([
                            lower(&format!("mae/{target}")),
                            lower(&format!("rmse/{target}")),
                            higher(&format!("r2/{target}")),
                        ]);
                    }
                }
            }
            TaskSpec::MultiLabel { .. } => {
                names.extend([
                    higher("micro_f1"),
                    higher("macro_f1"),
                    higher("exact_match"),
                ]);
            }
        }
        if self.top_k.is_some() {
            names.push(higher("top_k_accuracy"));
        }
        names
    }

    /// What a run ranks its checkpoints by when `checkpoint.monitor` is not set: accuracy
    /// for a classifier, the loss otherwise.
    pub fn default_monitor(&self) -> &'static str {
        match &self.spec {
            TaskSpec::Classification { .. } => "accuracy",
            _ => "loss",
        }
    }

    /// Which way `metric` (without its split) is better; `None` for a metric this task does
    /// not report.
    pub fn direction(&self, metric: &str) -> Option<Direction> {
        self.monitors()
            .into_iter()
            .find(|(name, _)| name == metric)
            .map(|(_, direction)| direction)
    }
}

/// A task's named sums read back from the device: each a list of numbers (one, or one per
/// class, target or label).
pub type TaskSums = BTreeMap<String, Vec<f64>>;

/// Sums of a task's metrics on the device, added batch by batch and read back only when
/// reported.
pub struct Meter {
    task: Task,
    sums: BTreeMap<&'static str, DeviceSum>,
}

/// One named sum on the device: counts as integers (exact past 2^24), the rest as floats.
#[derive(Clone)]
enum DeviceSum {
    Int(Tensor<1, Int>),
    Float(Tensor<1>),
}

impl Meter {
    fn new(task: Task) -> Self {
        Self {
            task,
            sums: BTreeMap::new(),
        }
    }

    /// Adds one batch's scores (detached from the autodiff graph).
    pub fn add(&mut self, scored: &Scored) {
        let mut add = |name: &'static str, value: DeviceSum| {
            let sum = match (self.sums.remove(name), value) {
                (None, value) => value,
                (Some(DeviceSum::Int(a)), DeviceSum::Int(b)) => DeviceSum::Int(a + b),
                (Some(DeviceSum::Float(a)), DeviceSum::Float(b)) => DeviceSum::Float(a + b),
                _ => unreachable!("a sum keeps its type"),
            };
            self.sums.insert(name, sum);
        };
        match (&self.task.spec, scored) {
            (TaskSpec::Classification { classes }, Scored::Classes { logits, targets }) => {
                classification::add(
                    logits.clone().inner(),
                    targets.clone().inner(),
                    Some(classes.len()),
                    self.task.top_k,
                    &mut add,
                )
            }
            (TaskSpec::LanguageModel { .. }, Scored::Classes { logits, targets }) => {
                classification::add(
                    logits.clone().inner(),
                    targets.clone().inner(),
                    None,
                    self.task.top_k,
                    &mut add,
                )
            }
            (TaskSpec::Regression { .. }, Scored::Values { predicted, targets }) => {
                regression::add(predicted.clone().inner(), targets.clone().inner(), &mut add)
            }
            (TaskSpec::MultiLabel { .. }, Scored::Labels { logits, targets }) => multilabel::add(
                logits.clone().inner(),
                targets.clone().inner(),
                self.task.config.threshold,
                &mut add,
            ),
            // Checked when the model's first output was seen.
            _ => {}
        }
    }

    /// The sums so far, read back (a device sync) without resetting them; a sum no batch
    /// has added to yet is zeros.
    pub fn read(&self) -> TaskSums {
        self.task
            .sum_layout()
            .into_iter()
            .map(|(name, len)| {
                let values = match self.sums.get(name) {
                    Some(DeviceSum::Int(sum)) => {
                        sum.to_data().iter::<i64>().map(|v| v as f64).collect()
                    }
                    Some(DeviceSum::Float(sum)) => {
                        sum.to_data().iter::<f32>().map(f64::from).collect()
                    }
                    None => vec![0.0; len],
                };
                (name.to_string(), values)
            })
            .collect()
    }

    /// A meter continuing from sums read back by [`Self::read`] (f32 sums round-trip
    /// exactly through f64, so the totals match those of a run that never stopped).
    pub fn from_sums(task: &Task, sums: &TaskSums, device: &Device) -> Self {
        let mut meter = Self::new(task.clone());
        let device = device.clone().without_autodiff();
        for (name, len) in task.sum_layout() {
            let Some(values) = sums.get(name).filter(|v| v.len() == len) else {
                continue;
            };
            let sum = if COUNTS.contains(&name) {
                let ints: Vec<i64> = values.iter().map(|&v| v as i64).collect();
                DeviceSum::Int(Tensor::from_ints(ints.as_slice(), &device))
            } else {
                let floats: Vec<f32> = values.iter().map(|&v| v as f32).collect();
                DeviceSum::Float(Tensor::from_floats(floats.as_slice(), &device))
            };
            meter.sums.insert(name, sum);
        }
        meter
    }

    pub fn task(&self) -> &Task {
        &self.task
    }
}

/// The sums kept as integer counts (the rest are float sums).
const COUNTS: [&str; 3] = ["correct", "top_k_correct", "exact"];

#[cfg(test)]
mod tests {
    use super::*;

    /// A mixed batch's loss is the cross-entropy with the mixed (and smoothed) one-hot
    /// targets, as timm's `SoftTargetCrossEntropy` on `mixup_target` computes it; its metrics
    /// read the rows' own classes.
    #[test]
    fn mixed_targets_weigh_both_classes() {
        let device = Device::flex();
        let spec = TaskSpec::Classification {
            classes: vec!["a".into(), "b".into(), "c".into()],
        };
        let config = TaskConfig {
            label_smoothing: 0.1,
            ..TaskConfig::default()
        };
        let task = Task::new(spec, config, None).unwrap();
        let rows = [[2.0f32, 0.0, -1.0], [0.5, 1.5, 0.0]];
        let output = task.output(Scored::Mixed {
            logits: Tensor::<2>::from_floats(rows, &device),
            targets: Tensor::<1, Int>::from_ints([0, 1], &device),
            partners: Box::new(Tensor::<1, Int>::from_ints([1, 0], &device)),
            weight: 0.7,
        });
        let got: f32 = output.loss.into_scalar();
        let (own, partner) = ([0, 1], [1, 0]);
        let mut want = 0.0;
        for (row, logits) in rows.iter().enumerate() {
            let log_z = logits.iter().map(|x| x.exp()).sum::<f32>().ln();
            for (class, &logit) in logits.iter().enumerate() {
                let one_hot = |c: usize| if c == class { 0.9 } else { 0.0 } + 0.1 / 3.0;
                let target = 0.7 * one_hot(own[row]) + 0.3 * one_hot(partner[row]);
                want -= target * (logit - log_z) / 2.0;
            }
        }
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert!(matches!(output.scored, Scored::Classes { .. }));
    }
}
