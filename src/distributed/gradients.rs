//! A step's gradients summed over the ranks in one all-reduce: every trainable parameter's
//! gradient is copied, in the model's parameter order, into one f32 buffer (reused from step
//! to step), the buffers are summed, and the sums are cut back into tensors. Buffers such as
//! batch norm's running statistics are averaged over the ranks the same way.

use std::time::{Duration, Instant};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

use super::World;

/// Sums gradients over the ranks; keeps its buffers and the time spent between steps.
#[derive(Default)]
pub struct GradientReducer {
    send: Vec<f32>,
    sum: Vec<f32>,
    /// Time spent reducing (copies and the all-reduce) since this reducer was made, waiting
    /// excluded.
    pub elapsed: Duration,
    /// Time spent waiting for the slowest rank to reach the reduction: imbalance between the
    /// ranks (data, noise from other processes), not communication.
    pub waiting: Duration,
    /// Values per all-reduce: the model's trainable parameters.
    pub values: usize,
    /// Whether the model has buffers to average, once known.
    has_buffers: Option<bool>,
}

impl GradientReducer {
    pub fn new() -> Self {
        Self::default()
    }

    /// `grads` summed over all ranks (the same on every rank). A parameter without a gradient
    /// here (a rank whose share of the last, partial batch was empty) counts as zeros.
    pub fn reduce<M: Module>(
        &mut self,
        world: &World,
        model: &M,
        grads: GradientsParams,
    ) -> GradientsParams {
        // A barrier first separates waiting for the other ranks from the transfer itself, for
        // the summary; on shared memory or a fast network it costs microseconds.
        let arrived = Instant::now();
        world.wait_for_all();
        self.waiting += arrived.elapsed();
        let started = Instant::now();
        self.send.clear();
        model.visit(&mut Flatten {
            grads: &grads,
            out: &mut self.send,
        });
        drop(grads);
        self.sum.resize(self.send.len(), 0.0);
        world.sum_f32(&self.send, &mut self.sum);
        let mut split = Split {
            sum: &self.sum,
            offset: 0,
            grads: GradientsParams::new(),
        };
        model.visit(&mut split);
        self.values = self.send.len();
        self.elapsed += started.elapsed();
        split.grads
    }

    /// `model` with its buffers (batch norm's running statistics: float state without
    /// gradients) replaced by their mean over the ranks.
    pub fn average_buffers<M: Module>(&mut self, world: &World, model: M) -> M {
        let has_buffers = *self.has_buffers.get_or_insert_with(|| {
            let mut count = CountBuffers(0);
            model.visit(&mut count);
            count.0 > 0
        });
        if !has_buffers {
            return model;
        }
        let started = Instant::now();
        let mut mean = AverageBuffers {
            world,
            scale: 1.0 / world.size() as f64,
        };
        let model = model.map(&mut mean);
        self.elapsed += started.elapsed();
        model
    }
}

fn trainable<const D: usize>(param: &Param<Tensor<D>>) -> bool {
    param.val().is_require_grad()
}

struct Flatten<'a> {
    grads: &'a GradientsParams,
    out: &'a mut Vec<f32>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !trainable(param) {
            return;
        }
        match self.grads.get::<D>(param.id) {
            Some(grad) => {
                let data = grad.into_data().convert::<f32>();
                self.out
                    .extend_from_slice(data.as_slice::<f32>().expect("f32 gradients"));
            }
            None => {
                let len = param.val().shape().num_elements();
                self.out.resize(self.out.len() + len, 0.0);
            }
        }
    }
}

struct Split<'a> {
    sum: &'a [f32],
    offset: usize,
    grads: GradientsParams,
}

impl ModuleVisitor for Split<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !trainable(param) {
            return;
        }
        let value = param.val();
        let shape = value.shape();
        let len = shape.num_elements();
        let values = self.sum[self.offset..self.offset + len].to_vec();
        self.offset += len;
        let device = value.device().without_autodiff();
        let grad = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
        self.grads.register(param.id, grad);
    }
}

struct CountBuffers(usize);

impl ModuleVisitor for CountBuffers {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !trainable(param) {
            self.0 += 1;
        }
    }
}

struct AverageBuffers<'a> {
    world: &'a World,
    scale: f64,
}

impl ModuleMapper for AverageBuffers<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if trainable(&param) {
            return param;
        }
        let (world, scale) = (self.world, self.scale);
        param.map(|value| {
            let (shape, device) = (value.shape(), value.device());
            let data = value.into_data().convert::<f64>();
            let mut values = data.try_into_vec::<f64>().expect("f64 values");
            world.sum_f64(&mut values);
            let mean: Vec<f32> = values.iter().map(|v| (v * scale) as f32).collect();
            Tensor::from_data(TensorData::new(mean, shape), &device)
        })
    }
}
