//! Training and evaluation metrics summed on the device and read back only when reported, so
//! logging costs one device sync per interval, not one per step.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::state::IntervalSums;

/// Metrics read back to the host.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Mean loss per prediction (per token, for a language model).
    pub loss: f64,
    pub accuracy: f64,
    /// Samples (images, texts, windows) seen.
    pub samples: usize,
    /// Tokens read (text tasks).
    #[serde(default)]
    pub tokens: usize,
    /// Mean F1 over the classes that occur (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<f64>,
    /// Share of predictions whose target is among the `train.top_k` highest logits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k_accuracy: Option<f64>,
}

/// What a task's metrics count: per-class counts for `classes` (classification; `None` for
/// next-token prediction) and top-k accuracy for `top_k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    pub classes: Option<usize>,
    pub top_k: Option<usize>,
}

/// Per-class counts for macro-F1: true positives, predictions and occurrences.
struct ClassCounts {
    true_positives: Tensor<1>,
    predicted: Tensor<1>,
    actual: Tensor<1>,
}

pub struct RunningMetrics {
    loss_sum: Option<Tensor<1>>,
    correct: Option<Tensor<1, Int>>,
    top_k_correct: Option<Tensor<1, Int>>,
    /// Counted only for classification (`classes` given).
    counts: Option<ClassCounts>,
    spec: MetricSpec,
    predictions: usize,
    samples: usize,
    tokens: usize,
}

impl RunningMetrics {
    pub fn new(spec: MetricSpec) -> Self {
        Self {
            loss_sum: None,
            correct: None,
            top_k_correct: None,
            counts: None,
            spec,
            predictions: 0,
            samples: 0,
            tokens: 0,
        }
    }

    /// Adds a batch: its logits `[predictions, classes]`, mean loss and targets.
    pub fn add(
        &mut self,
        logits: Tensor<2>,
        loss: Tensor<1>,
        targets: Tensor<1, Int>,
        samples: usize,
        tokens: usize,
    ) {
        // Counted off the autodiff graph: its bookkeeping would cost more than the counting.
        let (logits, loss, targets) = (logits.inner(), loss.inner(), targets.inner());
        let [rows, _] = logits.dims();
        if let Some(k) = self.spec.top_k {
            let (_, top) = logits.clone().topk_with_indices(k, 1);
            let hits = top
                .equal(targets.clone().reshape([rows, 1]).repeat_dim(1, k))
                .int()
                .sum();
            self.top_k_correct = Some(match self.top_k_correct.take() {
                Some(sum) => sum + hits,
                None => hits,
            });
        }
        let predicted = logits.argmax(1).reshape([rows]);
        let correct = predicted.clone().equal(targets.clone()).int().sum();
        let loss = loss.mul_scalar(rows as f64);
        self.loss_sum = Some(match self.loss_sum.take() {
            Some(sum) => sum + loss,
            None => loss,
        });
        self.correct = Some(match self.correct.take() {
            Some(sum) => sum + correct,
            None => correct,
        });
        if let Some(classes) = self.spec.classes {
            let device = targets.device();
            let ids = Tensor::<1, Int>::arange(0..classes as i64, &device).reshape([1, classes]);
            let one_hot = |labels: Tensor<1, Int>| {
                labels.reshape([rows, 1]).equal(ids.clone()).float() // [rows, classes]
            };
            let (predicted, actual) = (one_hot(predicted), one_hot(targets));
            let batch = ClassCounts {
                true_positives: (predicted.clone() * actual.clone())
                    .sum_dim(0)
                    .reshape([classes]),
                predicted: predicted.sum_dim(0).reshape([classes]),
                actual: actual.sum_dim(0).reshape([classes]),
            };
            self.counts = Some(match self.counts.take() {
                Some(sum) => ClassCounts {
                    true_positives: sum.true_positives + batch.true_positives,
                    predicted: sum.predicted + batch.predicted,
                    actual: sum.actual + batch.actual,
                },
                None => batch,
            });
        }
        self.predictions += rows;
        self.samples += samples;
        self.tokens += tokens;
    }

    /// The sums so far, read back without resetting them (a device sync).
    pub fn sums(&self) -> IntervalSums {
        let floats =
            |t: &Tensor<1>| -> Vec<f64> { t.to_data().iter::<f32>().map(f64::from).collect() };
        IntervalSums {
            loss_sum: self
                .loss_sum
                .clone()
                .map_or(0.0, |s| s.into_scalar::<f64>()),
            correct: self.correct.clone().map_or(0, |s| s.into_scalar::<i64>()),
            top_k_correct: self
                .top_k_correct
                .clone()
                .map_or(0, |s| s.into_scalar::<i64>()),
            predictions: self.predictions,
            samples: self.samples,
            tokens: self.tokens,
            true_positives: self
                .counts
                .as_ref()
                .map(|c| floats(&c.true_positives))
                .unwrap_or_default(),
            predicted: self
                .counts
                .as_ref()
                .map(|c| floats(&c.predicted))
                .unwrap_or_default(),
            actual: self
                .counts
                .as_ref()
                .map(|c| floats(&c.actual))
                .unwrap_or_default(),
        }
    }

    /// Continues from sums read back by [`Self::sums`]. f32 sums round-trip exactly through
    /// f64, so the totals match those of a run that never stopped.
    pub fn from_sums(sums: &IntervalSums, spec: MetricSpec, device: &Device) -> Self {
        let mut metrics = Self::new(spec);
        if sums.samples == 0 {
            return metrics;
        }
        let device = &device.clone().without_autodiff();
        let floats = |values: &[f64]| {
            let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            Tensor::<1>::from_floats(values.as_slice(), device)
        };
        metrics.loss_sum = Some(Tensor::from_floats([sums.loss_sum as f32], device));
        metrics.correct = Some(Tensor::from_ints([sums.correct], device));
        if spec.top_k.is_some() {
            metrics.top_k_correct = Some(Tensor::from_ints([sums.top_k_correct], device));
        }
        if spec.classes.is_some() && !sums.actual.is_empty() {
            metrics.counts = Some(ClassCounts {
                true_positives: floats(&sums.true_positives),
                predicted: floats(&sums.predicted),
                actual: floats(&sums.actual),
            });
        }
        metrics.predictions = sums.predictions;
        metrics.samples = sums.samples;
        metrics.tokens = sums.tokens;
        metrics
    }

    /// Reads the sums back (a device sync) and starts over; zeros when nothing was added.
    pub fn take_sums(&mut self) -> IntervalSums {
        let sums = if self.samples == 0 {
            IntervalSums::default()
        } else {
            self.sums()
        };
        *self = Self::new(self.spec);
        sums
    }

    /// Reads the metrics back (a device sync) and starts over.
    pub fn take(&mut self) -> Option<Measured> {
        let spec = self.spec;
        Measured::from_sums(&self.take_sums(), spec)
    }
}

impl Measured {
    /// The metrics of `sums`; `None` when they hold no sample.
    pub fn from_sums(sums: &IntervalSums, spec: MetricSpec) -> Option<Self> {
        (sums.samples > 0).then(|| Measured {
            loss: sums.loss_sum / sums.predictions as f64,
            accuracy: sums.correct as f64 / sums.predictions as f64,
            samples: sums.samples,
            tokens: sums.tokens,
            macro_f1: (!sums.actual.is_empty())
                .then(|| macro_f1(&sums.true_positives, &sums.predicted, &sums.actual)),
            top_k_accuracy: spec
                .top_k
                .map(|_| sums.top_k_correct as f64 / sums.predictions as f64),
        })
    }

    /// The metrics of a split's `sums`: NaN where they hold no sample (an empty split).
    pub fn of_split(sums: &IntervalSums, spec: MetricSpec) -> Self {
        Self::from_sums(sums, spec).unwrap_or(Measured {
            loss: f64::NAN,
            accuracy: f64::NAN,
            samples: 0,
            tokens: 0,
            macro_f1: None,
            top_k_accuracy: None,
        })
    }
}

/// Mean F1 over the classes that were predicted or occur.
pub fn macro_f1(true_positives: &[f64], predicted: &[f64], actual: &[f64]) -> f64 {
    let scores: Vec<f64> = true_positives
        .iter()
        .zip(predicted)
        .zip(actual)
        .filter(|((_, p), a)| **p + **a > 0.0)
        .map(|((&tp, &p), &a)| 2.0 * tp / (p + a))
        .collect();
    if scores.is_empty() {
        0.0
    } else {
        scores.iter().sum::<f64>() / scores.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_by_hand() {
        // Class 0: tp 2, predicted 3, actual 2 → F1 0.8; class 1: tp 1, predicted 1, actual 2
        // → F1 2/3; class 2 never seen.
        let f1 = macro_f1(&[2.0, 1.0, 0.0], &[3.0, 1.0, 0.0], &[2.0, 2.0, 0.0]);
        assert!((f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn sums_round_trip_and_measure() {
        let device = Device::flex();
        let spec = MetricSpec {
            classes: Some(2),
            top_k: Some(2),
        };
        let mut metrics = RunningMetrics::new(spec);
        let logits = Tensor::<2>::from_floats([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]], &device);
        let targets = Tensor::<1, Int>::from_ints([0, 0, 0], &device);
        metrics.add(logits, Tensor::from_floats([0.5], &device), targets, 3, 0);
        let mut restored = RunningMetrics::from_sums(&metrics.sums(), spec, &device);
        let measured = restored.take().unwrap();
        assert_eq!(measured, metrics.take().unwrap());
        assert_eq!(measured.accuracy, 2.0 / 3.0);
        assert_eq!(
            measured.top_k_accuracy,
            Some(1.0),
            "every target is in the top 2 of 2"
        );
        assert!((measured.loss - 0.5).abs() < 1e-7);
        // Class 0: tp 2, predicted 2, actual 3 → 0.8; class 1: tp 0, predicted 1 → 0.
        assert!((measured.macro_f1.unwrap() - 0.4).abs() < 1e-7);
    }
}
