//! One training step and one evaluation pass, for every model and task: the model turns a
//! batch into a loss and what the task's metrics read ([`crate::task::Output`]); the step
//! weights, scales, differentiates, accumulates, clips, reduces over ranks and applies it.
//! Shared by `train`, `eval`, `bench` and `lr-find`, so that what is measured is what is
//! trained.

use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use super::net::{Net, check_gradients, check_output};
use super::optim::{clip_factor, clip_global_norm, rescale, squared_norm};
use super::precision::Autocast;
use crate::Error;
use crate::config::{ClipScope, TrainConfig};
use crate::data::{Batch, BatchContext, BatchStream, Part, Split, StreamPlan, part_of_batches};
use crate::distributed::{self, GradientReducer};
use crate::model::Model;
use crate::run::Measured;
use crate::run::state::IntervalSums;
use crate::run::state::LossScale;
use crate::task::{Output, Task};
use crate::train::measure::RunningMetrics;

/// The training step: forward, loss, backward, clipping, optimizer update.
pub struct Stepper {
    task: Task,
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
    /// A step that one process takes alone, on passes of `predictions` in all.
    pub fn alone(predictions: usize) -> Self {
        Self {
            predictions,
            first_pass: 0,
        }
    }
}

/// The predictions in `batches`: what their losses are averaged over.
pub fn predictions(batches: &[crate::data::AnyBatch]) -> usize {
    batches.iter().map(crate::data::AnyBatch::predictions).sum()
}

impl Stepper {
    pub fn new(train: &TrainConfig, task: &Task) -> Self {
        let clip_global = match train.grad_clip_scope {
            ClipScope::Global => train.grad_clip_norm,
            ClipScope::PerTensor => None,
        };
        Self {
            task: task.clone(),
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
    /// it was. With `check`, the model's output and gradients are checked (its first step).
    #[allow(clippy::too_many_arguments)]
    pub fn step<M: Model>(
        &mut self,
        model: M,
        optimizer: &mut ModuleOptimizer,
        lr: impl Into<burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate>,
        batches: Vec<M::Batch>,
        share: StepShare,
        metrics: &mut RunningMetrics,
        check: bool,
    ) -> Result<M, Error> {
        let scale = self.loss_scale.as_ref().map_or(1.0, |scale| scale.scale);
        // Under mixed precision the weights are cast once per step, for all its passes.
        let half = self.autocast.map(|autocast| autocast.model(&model));
        let forward = half.as_ref().unwrap_or(&model);
        let pass = |index: usize, batch: M::Batch, metrics: &mut RunningMetrics| {
            crate::kernels::start_dropout_pass(share.first_pass + index);
            let weight = batch.predictions() as f64 / share.predictions as f64;
            self.gradients(&model, forward, batch, weight * scale, metrics, check)
        };
        let grads = if let [_] = batches.as_slice() {
            let batch = batches.into_iter().next().expect("one batch");
            pass(0, batch, metrics)?
        } else {
            let mut accumulator = GradientsAccumulator::new();
            for (index, batch) in batches.into_iter().enumerate() {
                let grads = pass(index, batch, metrics)?;
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
        Ok(match &mut self.reducer {
            Some(reducer) => reducer.average_buffers(world, model),
            None => model,
        })
    }

    /// The all-reduce's running time and the values it sums, in a distributed run.
    pub fn reducer(&self) -> Option<&GradientReducer> {
        self.reducer.as_ref()
    }

    /// The step's gradients as the optimizer takes them: unscaled (f16) and clipped to
    /// `grad_clip_norm` (global), both in one pass over them from one norm; `None` when they
    /// overflowed and the step is skipped.
    fn finish_gradients<M: Model>(
        &mut self,
        model: &M,
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
    fn gradients<M: Model>(
        &self,
        model: &M,
        forward: &M,
        batch: M::Batch,
        weight: f64,
        metrics: &mut RunningMetrics,
        check: bool,
    ) -> Result<GradientsParams, Error> {
        let (predictions, samples, tokens) = (batch.predictions(), batch.samples(), batch.tokens());
        let batch = match &self.autocast {
            Some(autocast) => batch.autocast(autocast.dtype()),
            None => batch,
        };
        let output = forward.forward(batch, &self.task);
        if check {
            check_output::<M>(&output, &self.task)?;
        }
        metrics.add(&output, predictions, samples, tokens);
        // The loss is summed in f32 whatever the passes compute in.
        let loss = output.loss.cast(burn::tensor::FloatDType::F32);
        let loss = if weight == 1.0 {
            loss
        } else {
            loss.mul_scalar(weight)
        };
        // A loss computed from nothing the model tracks cannot be differentiated (burn would
        // panic): a mistake in the model's code, said as such.
        if !loss.is_tracked() {
            check_gradients::<M>(0)?;
        }
        let grads = GradientsParams::from_grads(loss.backward(), model);
        if check {
            check_gradients::<M>(grads.len())?;
        }
        Ok(grads)
    }
}

/// Loss and the task's metrics of `net` on a whole split, without gradients or dropout.
/// `also` sees each batch's output (for reports).
pub fn evaluate(
    net: &dyn Net,
    task: &Task,
    split: &Split,
    batch_size: usize,
    workers: usize,
    context: &BatchContext,
    also: impl FnMut(&Output),
) -> Result<Measured, Error> {
    let sums = evaluate_part(
        net,
        task,
        split,
        batch_size,
        workers,
        context,
        Part::WHOLE,
        also,
    )?;
    Ok(Measured::of_split(&sums, task))
}

/// The metric sums of `net` on `part` of a split's batches (the part of each group of
/// `part.count` batches that one rank of a distributed evaluation takes); `also` sees each
/// batch's output.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_part(
    net: &dyn Net,
    task: &Task,
    split: &Split,
    batch_size: usize,
    workers: usize,
    context: &BatchContext,
    part: Part,
    mut also: impl FnMut(&Output),
) -> Result<IntervalSums, Error> {
    let net = net.for_evaluation();
    let context = BatchContext {
        device: context.device.clone().without_autodiff(),
        epoch: None,
        ..context.clone()
    };
    let plan = StreamPlan {
        order: part_of_batches(&split.indices, batch_size, part),
        batch_size,
        pass_size: batch_size,
        first: 0,
        workers,
        prefetch: 2,
    };
    let mut metrics = RunningMetrics::new(task);
    for mut passes in BatchStream::new(split.data.clone(), plan, context) {
        let batch = passes.pop().expect("one pass per evaluation batch");
        let (predictions, samples, tokens) = (batch.predictions(), batch.samples(), batch.tokens());
        let output = net.evaluate(batch, task)?;
        also(&output);
        metrics.add(&output, predictions, samples, tokens);
    }
    Ok(metrics.take_sums())
}
