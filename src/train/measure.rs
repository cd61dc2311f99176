//! Training and evaluation metrics summed on the device and read back only when reported, so
//! logging costs one device sync per interval, not one per step. The loss and the counts are
//! the loop's own; everything else is the task's ([`crate::task`]), by name.

use burn::prelude::*;

use crate::run::Measured;
use crate::run::state::IntervalSums;
use crate::task::{Meter, Output, Task};

pub struct RunningMetrics {
    loss_sum: Option<Tensor<1>>,
    meter: Meter,
    predictions: usize,
    samples: usize,
    tokens: usize,
}

impl RunningMetrics {
    pub fn new(task: &Task) -> Self {
        Self {
            loss_sum: None,
            meter: task.meter(),
            predictions: 0,
            samples: 0,
            tokens: 0,
        }
    }

    /// Adds a batch's output (its mean loss over `predictions`) and counts.
    pub fn add(&mut self, output: &Output, predictions: usize, samples: usize, tokens: usize) {
        // Counted off the autodiff graph: its bookkeeping would cost more than the counting.
        let loss = output.loss.clone().inner().mul_scalar(predictions as f64);
        self.loss_sum = Some(match self.loss_sum.take() {
            Some(sum) => sum + loss,
            None => loss,
        });
        self.meter.add(&output.scored);
        self.predictions += predictions;
        self.samples += samples;
        self.tokens += tokens;
    }

    /// The sums so far, read back without resetting them (a device sync).
    pub fn sums(&self) -> IntervalSums {
        if self.samples == 0 {
            return IntervalSums::default();
        }
        IntervalSums {
            loss_sum: self
                .loss_sum
                .clone()
                .map_or(0.0, |s| s.into_scalar::<f64>()),
            predictions: self.predictions,
            samples: self.samples,
            tokens: self.tokens,
            task: self.meter.read(),
        }
    }

    /// Continues from sums read back by [`Self::sums`]. f32 sums round-trip exactly through
    /// f64, so the totals match those of a run that never stopped.
    pub fn from_sums(sums: &IntervalSums, task: &Task, device: &Device) -> Self {
        let mut metrics = Self::new(task);
        if sums.samples == 0 {
            return metrics;
        }
        let device = &device.clone().without_autodiff();
        metrics.loss_sum = Some(Tensor::from_floats([sums.loss_sum as f32], device));
        metrics.meter = Meter::from_sums(task, &sums.task, device);
        metrics.predictions = sums.predictions;
        metrics.samples = sums.samples;
        metrics.tokens = sums.tokens;
        metrics
    }

    /// Reads the sums back (a device sync) and starts over; zeros when nothing was added.
    pub fn take_sums(&mut self) -> IntervalSums {
        let sums = self.sums();
        *self = Self::new(self.meter.task());
        sums
    }

    /// Reads the metrics back (a device sync) and starts over.
    pub fn take(&mut self) -> Option<Measured> {
        let task = self.meter.task().clone();
        Measured::from_sums(&self.take_sums(), &task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Scored, TaskConfig, TaskSpec};

    #[test]
    fn sums_round_trip_and_measure() {
        let device = Device::flex();
        let task = Task::new(
            TaskSpec::Classification {
                classes: vec!["a".into(), "b".into()],
            },
            TaskConfig::default(),
            None,
        )
        .unwrap();
        let mut metrics = RunningMetrics::new(&task);
        let logits = Tensor::<2>::from_floats([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]], &device);
        let targets = Tensor::<1, Int>::from_ints([0, 0, 0], &device);
        let output = Output::new(
            Tensor::from_floats([0.5], &device),
            Scored::Classes { logits, targets },
        );
        metrics.add(&output, 3, 3, 0);
        let mut restored = RunningMetrics::from_sums(&metrics.sums(), &task, &device);
        let measured = restored.take().unwrap();
        assert_eq!(measured, metrics.take().unwrap());
        assert_eq!(measured.get("accuracy"), Some(2.0 / 3.0));
        assert!((measured.loss - 0.5).abs() < 1e-7);
        // Class 0: tp 2, predicted 2, actual 3 → 0.8; class 1: tp 0, predicted 1 → 0.
        assert!((measured.get("macro_f1").unwrap() - 0.4).abs() < 1e-7);
        let json = serde_json::to_value(&measured).unwrap();
        assert_eq!(
            json["accuracy"],
            2.0 / 3.0,
            "the task's metrics sit beside the loss"
        );
    }
}
