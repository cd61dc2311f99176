//! One training step and one evaluation pass, for every task: the model turns a batch into
//! logits `[predictions, classes]`, scored by cross-entropy against one target per
//! prediction. Shared by `train`, `eval` and `bench`, so that what is measured is what is
//! trained.

use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::FloatDType;

use super::measure::{Measured, MetricSpec, RunningMetrics};
use super::optim::{clip_factor, clip_global_norm, rescale, squared_norm};
use super::precision::{Autocast, LossScale};
use super::state::IntervalSums;
use crate::config::{ClipScope, TrainConfig};
use crate::data::{BatchStream, HostBatch, Part, Split, StreamPlan, part_of_batches};
use crate::distributed::{self, GradientReducer};
use crate::model::{Input, Model};

/// A host batch moved onto `device`.
pub struct DeviceBatch {
    pub input: Input,
    /// One target per prediction row.
    pub targets: Tensor<1, Int>,
    pub samples: usize,
    pub tokens: usize,
}

impl DeviceBatch {
    pub fn new(batch: HostBatch, device: &Device) -> Self {
        let (samples, tokens) = (batch.size(), batch.tokens());
        let (input, targets) = match batch {
            HostBatch::Images {
                pixels,
                shape,
                labels,
            } => (
                Input::Images(Tensor::from_data(TensorData::new(pixels, shape), device)),
                ints(labels, [samples], device),
            ),
            HostBatch::Tokens {
                ids,
                shape,
                lengths,
                labels,
            } => {
                let padding: Vec<bool> = lengths
                    .iter()
                    .flat_map(|&length| (0..shape[1]).map(move |position| position >= length))
                    .collect();
                let input = Input::Tokens {
                    ids: ints(ids, shape, device),
                    padding: Tensor::from_data(TensorData::new(padding, shape), device),
                };
                (input, ints(labels, [samples], device))
            }
            HostBatch::Sequences {
                inputs,
                targets,
                shape,
            } => (
                Input::Sequences(ints(inputs, shape, device)),
                ints(targets, [shape[0] * shape[1]], device),
            ),
        };
        Self {
            input,
            targets,
            samples,
            tokens,
        }
    }
}

impl DeviceBatch {
    /// The passes of one optimizer step: `batch` cut into `batch_size` pieces on `device`.
    pub fn passes(batch: HostBatch, batch_size: usize, device: &Device) -> Vec<DeviceBatch> {
        batch
            .split(batch_size)
            .into_iter()
            .map(|part| DeviceBatch::new(part, device))
            .collect()
    }
}

fn ints<const D: usize>(values: Vec<i64>, shape: [usize; D], device: &Device) -> Tensor<D, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The training step: forward, loss, backward, clipping, optimizer update.
pub struct Stepper {
    loss: CrossEntropyLoss,
    clip_global: Option<f64>,
    /// The half type the passes compute in, under mixed precision.
    autocast: Option<Autocast>,
    /// f16 loss scaling.
    loss_scale: Option<LossScale>,
    /// Sums the gradients over the ranks of a distributed run.
    reducer: Option<GradientReducer>,
}

/// Where one process's passes sit in an optimizer step that may span several ranks.
#[derive(Debug, Clone, Copy)]
pub struct StepShare {
    /// Predictions (samples, or tokens for a language model) in all the step's passes, on
    /// all ranks: what the loss is averaged over.
    pub predictions: usize,
    /// The index of this process's first pass among all the step's passes: its dropout keys.
    pub first_pass: usize,
}

impl StepShare {
    /// A step that one process takes alone, on `batches`.
    pub fn alone(batches: &[DeviceBatch]) -> Self {
        Self {
            predictions: predictions(batches),
            first_pass: 0,
        }
    }
}

/// The predictions (target rows) in `batches`.
pub fn predictions(batches: &[DeviceBatch]) -> usize {
    batches.iter().map(|batch| batch.targets.dims()[0]).sum()
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
            autocast: Autocast::new(train.precision),
            loss_scale: LossScale::needed(train.precision).then(LossScale::default),
            reducer: distributed::world()
                .is_distributed()
                .then(GradientReducer::new),
        }
    }

    /// Continues with a checkpoint's loss scale, where this precision scales the loss.
    pub fn resume_loss_scale(&mut self, saved: Option<LossScale>) {
        if let (Some(scale), Some(saved)) = (&mut self.loss_scale, saved) {
            *scale = saved;
        }
    }

    pub fn loss_scale(&self) -> Option<&LossScale> {
        self.loss_scale.as_ref()
    }

    /// One optimizer step on `batches`, this process's passes of a step that `share`
    /// places among all the step's passes (on one process, or on several ranks). Each pass's
    /// loss is weighted by its share of the step's predictions and the gradients are summed
    /// (over the passes, then over the ranks), which gives the gradient of the mean loss over
    /// all of them. Under f16 loss scaling a step whose gradients overflow leaves the model as
    /// it was.
    pub fn step(
        &mut self,
        model: Model,
        optimizer: &mut ModuleOptimizer,
        lr: impl Into<burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate>,
        batches: Vec<DeviceBatch>,
        share: StepShare,
        metrics: &mut RunningMetrics,
    ) -> Model {
        let scale = self.loss_scale.as_ref().map_or(1.0, |scale| scale.scale);
        // Under mixed precision the weights are cast once per step, for all its passes.
        let half = self.autocast.map(|autocast| autocast.model(&model));
        let forward = half.as_ref().unwrap_or(&model);
        let pass = |index: usize, batch: DeviceBatch, metrics: &mut RunningMetrics| {
            crate::kernels::start_dropout_pass(share.first_pass + index);
            let weight = batch.targets.dims()[0] as f64 / share.predictions as f64;
            self.gradients(&model, forward, batch, weight * scale, metrics)
        };
        let grads = if let [_] = batches.as_slice() {
            let batch = batches.into_iter().next().expect("one batch");
            pass(0, batch, metrics)
        } else {
            let mut accumulator = GradientsAccumulator::new();
            for (index, batch) in batches.into_iter().enumerate() {
                let grads = pass(index, batch, metrics);
                accumulator.accumulate(&model, grads);
            }
            accumulator.grads()
        };
        let world = distributed::world();
        let grads = match &mut self.reducer {
            Some(reducer) => reducer.reduce(world, &model, grads),
            None => grads,
        };
        let model = match self.finish_gradients(&model, grads) {
            Some(grads) => optimizer.step(lr, model, grads),
            None => model,
        };
        match &mut self.reducer {
            Some(reducer) => reducer.average_buffers(world, model),
            None => model,
        }
    }

    /// The all-reduce's running time and the values it sums, in a distributed run.
    pub fn reducer(&self) -> Option<&GradientReducer> {
        self.reducer.as_ref()
    }

    /// The step's gradients as the optimizer takes them: unscaled (f16) and clipped to
    /// `grad_clip_norm` (global), both in one pass over them from one norm; `None` when they
    /// overflowed and the step is skipped.
    fn finish_gradients(
        &mut self,
        model: &Model,
        grads: GradientsParams,
    ) -> Option<GradientsParams> {
        let Some(loss_scale) = &mut self.loss_scale else {
            return Some(match self.clip_global {
                Some(max_norm) => clip_global_norm(model, grads, max_norm),
                None => grads,
            });
        };
        let Some(sum) = squared_norm(model, &grads) else {
            return Some(grads);
        };
        let inverse = loss_scale.scale.recip();
        if !loss_scale.record(sum.clone().into_scalar::<f64>().is_finite()) {
            return None;
        }
        let mut factor = Tensor::from_floats([inverse], &sum.device());
        if let Some(max_norm) = self.clip_global {
            // The norm of the unscaled gradients.
            factor = factor * clip_factor(sum.mul_scalar(inverse * inverse), max_norm);
        }
        Some(rescale(model, grads, factor))
    }

    /// Forward (through `forward`, the model or its half-precision cast) and backward on one
    /// pass, its metrics added; the gradients, keyed by `model`'s parameters, are those of the
    /// loss times `weight` (the pass's share of the step, times any loss scale).
    fn gradients(
        &self,
        model: &Model,
        forward: &Model,
        batch: DeviceBatch,
        weight: f64,
        metrics: &mut RunningMetrics,
    ) -> GradientsParams {
        let input = match &self.autocast {
            Some(autocast) => autocast.input(batch.input),
            None => batch.input,
        };
        // The loss is computed in f32 whatever the passes compute in.
        let logits = forward.forward(input).cast(FloatDType::F32);
        let loss = self.loss.forward(logits.clone(), batch.targets.clone());
        metrics.add(
            logits.detach(),
            loss.clone().detach(),
            batch.targets,
            batch.samples,
            batch.tokens,
        );
        let loss = if weight == 1.0 {
            loss
        } else {
            loss.mul_scalar(weight)
        };
        GradientsParams::from_grads(loss.backward(), model)
    }
}

/// Loss, accuracy (and macro-F1 and top-k accuracy, as `spec` says) of `model` on a whole split, without
/// gradients or dropout. `also` sees each batch's logits and targets (for reports).
pub fn evaluate(
    model: &Model,
    split: &Split,
    spec: MetricSpec,
    batch_size: usize,
    workers: usize,
    device: &Device,
    also: impl FnMut(&Tensor<2>, &Tensor<1, Int>),
) -> Measured {
    let sums = evaluate_part(
        model,
        split,
        spec,
        batch_size,
        workers,
        device,
        Part::WHOLE,
        also,
    );
    Measured::of_split(&sums, spec)
}

/// The metric sums of `model` on `part` of a split's batches (the part of each group of
/// `part.count` batches that one rank of a distributed evaluation takes); `also` sees each
/// batch's logits and targets.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_part(
    model: &Model,
    split: &Split,
    spec: MetricSpec,
    batch_size: usize,
    workers: usize,
    device: &Device,
    part: Part,
    mut also: impl FnMut(&Tensor<2>, &Tensor<1, Int>),
) -> IntervalSums {
    let loss = CrossEntropyLoss::new(None, &device.clone().without_autodiff());
    let mut metrics = RunningMetrics::new(spec);
    for_each_eval_batch(
        model,
        split,
        batch_size,
        workers,
        device,
        part,
        |logits, batch| {
            also(&logits, &batch.targets);
            let batch_loss = loss.forward(logits.clone(), batch.targets.clone());
            metrics.add(
                logits,
                batch_loss,
                batch.targets,
                batch.samples,
                batch.tokens,
            );
        },
    );
    metrics.take_sums()
}

/// Runs `model` in evaluation mode over `part` of a split's batches, in order, and hands
/// each batch's logits `[predictions, classes]` with the batch (targets, counts) to `visit`.
fn for_each_eval_batch(
    model: &Model,
    split: &Split,
    batch_size: usize,
    workers: usize,
    device: &Device,
    part: Part,
    mut visit: impl FnMut(Tensor<2>, EvalTargets),
) {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let plan = StreamPlan {
        order: part_of_batches(&split.indices, batch_size, part),
        batch_size,
        first: 0,
        workers,
        prefetch: 2,
    };
    for batch in BatchStream::new(split.data.clone(), plan) {
        let DeviceBatch {
            input,
            targets,
            samples,
            tokens,
        } = DeviceBatch::new(batch, &device);
        let logits = model.forward(input);
        visit(
            logits,
            EvalTargets {
                targets,
                samples,
                tokens,
            },
        );
    }
}

/// What an evaluated batch holds besides its logits.
pub struct EvalTargets {
    /// One target per prediction row.
    pub targets: Tensor<1, Int>,
    pub samples: usize,
    pub tokens: usize,
}
