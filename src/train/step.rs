//! One training step and one evaluation pass of an image classifier, shared by `train`,
//! `eval` and `bench` so that what is measured is what is trained.

use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::config::{ClipScope, TrainConfig};
use crate::data::{BatchStream, Batcher, HostBatch, Split, StreamPlan};
use crate::model::{ImageShape, Model};

use super::optim::clip_global_norm;
use super::state::IntervalSums;

/// A host batch moved onto `device`.
pub struct DeviceBatch {
    pub images: Tensor<4>,
    pub targets: Tensor<1, Int>,
    pub size: usize,
}

impl DeviceBatch {
    pub fn new(batch: HostBatch, shape: ImageShape, device: &Device) -> Self {
        let dims = [batch.size, shape.channels, shape.height, shape.width];
        Self {
            images: Tensor::from_data(TensorData::new(batch.images, dims), device),
            targets: Tensor::from_data(TensorData::new(batch.labels, [batch.size]), device),
            size: batch.size,
        }
    }
}

/// Loss and accuracy summed on the device, read back only when reported.
pub struct RunningMetrics {
    loss_sum: Option<Tensor<1>>,
    correct: Option<Tensor<1, Int>>,
    samples: usize,
}

/// Metrics read back to the host.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Measured {
    pub loss: f64,
    pub accuracy: f64,
    pub samples: usize,
}

impl RunningMetrics {
    pub fn new() -> Self {
        Self {
            loss_sum: None,
            correct: None,
            samples: 0,
        }
    }

    fn add(&mut self, logits: Tensor<2>, loss: Tensor<1>, targets: Tensor<1, Int>, size: usize) {
        let batch_loss = loss.mul_scalar(size as f64);
        let correct = logits
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(targets)
            .int()
            .sum();
        self.loss_sum = Some(match self.loss_sum.take() {
            Some(sum) => sum + batch_loss,
            None => batch_loss,
        });
        self.correct = Some(match self.correct.take() {
            Some(sum) => sum + correct,
            None => correct,
        });
        self.samples += size;
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The sums so far, read back without resetting them (a device sync).
    pub fn sums(&self) -> IntervalSums {
        IntervalSums {
            loss_sum: self
                .loss_sum
                .clone()
                .map_or(0.0, |sum| sum.into_scalar::<f64>()),
            correct: self
                .correct
                .clone()
                .map_or(0, |sum| sum.into_scalar::<i64>()),
            samples: self.samples,
        }
    }

    /// Continues from sums read back by [`Self::sums`]; the f32 sums round-trip exactly, so
    /// the totals match those of a run that never stopped.
    pub fn from_sums(sums: IntervalSums, device: &Device) -> Self {
        if sums.samples == 0 {
            return Self::new();
        }
        Self {
            loss_sum: Some(Tensor::from_floats([sums.loss_sum as f32], device)),
            correct: Some(Tensor::from_ints([sums.correct], device)),
            samples: sums.samples,
        }
    }

    /// Reads the sums back (a device sync) and starts over.
    pub fn take(&mut self) -> Option<Measured> {
        let samples = std::mem::take(&mut self.samples);
        let loss_sum = self.loss_sum.take()?.into_scalar::<f64>();
        let correct = self.correct.take()?.into_scalar::<i64>();
        Some(Measured {
            loss: loss_sum / samples as f64,
            accuracy: correct as f64 / samples as f64,
            samples,
        })
    }
}

impl Default for RunningMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The classification training step: forward, loss, backward, clipping, optimizer update.
pub struct Stepper {
    loss: CrossEntropyLoss,
    clip_global: Option<f64>,
}

impl Stepper {
    pub fn new(train: &TrainConfig, device: &Device) -> Self {
        let clip_global = match train.grad_clip_scope {
            ClipScope::Global => train.grad_clip_norm,
            ClipScope::PerTensor => None,
        };
        Self {
            loss: CrossEntropyLoss::new(None, device),
            clip_global,
        }
    }

    pub fn step(
        &self,
        model: Model,
        optimizer: &mut ModuleOptimizer,
        lr: impl Into<burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate>,
        batch: DeviceBatch,
        metrics: &mut RunningMetrics,
    ) -> Model {
        let logits = model.forward(batch.images);
        let loss = self.loss.forward(logits.clone(), batch.targets.clone());
        metrics.add(
            logits.detach(),
            loss.clone().detach(),
            batch.targets,
            batch.size,
        );
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(max_norm) = self.clip_global {
            grads = clip_global_norm(&model, grads, max_norm);
        }
        optimizer.step(lr, model, grads)
    }
}

/// Loss and accuracy of `model` on a whole split, without gradients or dropout.
pub fn evaluate(
    model: &Model,
    split: &Split,
    batcher: Batcher,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Measured {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let loss = CrossEntropyLoss::new(None, &device);
    let plan = StreamPlan {
        order: split.indices.clone(),
        batch_size,
        first: 0,
        workers,
        prefetch: 2,
    };
    let mut metrics = RunningMetrics::new();
    for batch in BatchStream::new(batcher, plan) {
        let batch = DeviceBatch::new(batch, split.set.shape, &device);
        let logits = model.forward(batch.images);
        let batch_loss = loss.forward(logits.clone(), batch.targets.clone());
        metrics.add(logits, batch_loss, batch.targets, batch.size);
    }
    metrics.take().unwrap_or(Measured {
        loss: f64::NAN,
        accuracy: f64::NAN,
        samples: 0,
    })
}
