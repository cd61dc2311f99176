//! burn's optimizers and learning-rate schedulers built from the config, and PyTorch-style
//! global-norm gradient clipping (burn's own clips each tensor on its own).

use std::collections::BTreeMap;

use burn::grad_clipping::GradientClippingConfig;
use burn::lr_scheduler::LrSchedulerConfig;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::{ModuleLrScheduler, ModuleLrSchedulerConfig};
use burn::lr_scheduler::sequential::SequentialLrSchedulerConfig;
use burn::lr_scheduler::step::StepLrSchedulerConfig;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;

use super::adam::{AdamParams, FusedAdam, FusedAdamW};
use crate::config::{ClipScope, OptimizerConfig, SchedulerConfig, TrainConfig};

pub fn build_optimizer(config: &OptimizerConfig, train: &TrainConfig) -> ModuleOptimizer {
    // Per-tensor clipping is burn's; global clipping happens before the step (`clip_global_norm`).
    let per_tensor = match (train.grad_clip_norm, train.grad_clip_scope) {
        (Some(norm), ClipScope::PerTensor) => Some(GradientClippingConfig::Norm(norm as f32)),
        _ => None,
    };
    match config {
        OptimizerConfig::Sgd(sgd) => {
            let momentum = (sgd.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(sgd.momentum)
                    .with_dampening(sgd.dampening)
                    .with_nesterov(sgd.nesterov)
            });
            SgdConfig::new()
                .with_momentum(momentum)
                .with_weight_decay(weight_decay(sgd.weight_decay))
                .with_gradient_clipping(per_tensor)
                .init()
        }
        OptimizerConfig::Adam(adam) | OptimizerConfig::Adamw(adam) => {
            let params = AdamParams {
                beta_1: adam.beta1 as f32,
                beta_2: adam.beta2 as f32,
                epsilon: adam.epsilon as f32,
                weight_decay: adam.weight_decay as f32,
            };
            let optimizer = match config {
                OptimizerConfig::Adam(_) => ModuleOptimizer::from(FusedAdam(params)),
                _ => ModuleOptimizer::from(FusedAdamW(params)),
            };
            match per_tensor {
                Some(clipping) => optimizer.with_grad_clipping(clipping.init()),
                None => optimizer,
            }
        }
    }
}

fn weight_decay(penalty: f64) -> Option<WeightDecayConfig> {
    (penalty > 0.0).then(|| WeightDecayConfig::new(penalty as f32))
}

/// The schedule over `total_steps` optimizer steps, with its linear warm-up in front; each
/// of `lr_by_prefix`'s parameter groups follows the same schedule from its own base rate.
pub fn build_scheduler(
    config: &SchedulerConfig,
    lr: f64,
    lr_by_prefix: &BTreeMap<String, f64>,
    total_steps: usize,
) -> ModuleLrScheduler {
    let groups = super::finetune::lr_groups(lr_by_prefix);
    groups
        .into_iter()
        .fold(
            ModuleLrSchedulerConfig::new(schedule(config, lr, total_steps)),
            |scheduler, (group, lr)| scheduler.with_group(group, schedule(config, lr, total_steps)),
        )
        .init()
        .expect("validated schedule parameters")
}

fn schedule(config: &SchedulerConfig, lr: f64, total_steps: usize) -> LrSchedulerConfig {
    let warmup = config.warmup_steps();
    let main: LrSchedulerConfig = match config {
        SchedulerConfig::Constant(_) => LrSchedulerConfig::Constant(lr),
        SchedulerConfig::Step(step) => StepLrSchedulerConfig::new(lr, step.step_size)
            .with_gamma(step.gamma)
            .into(),
        SchedulerConfig::Cosine(cosine) => {
            CosineAnnealingLrSchedulerConfig::new(lr, total_steps.saturating_sub(warmup).max(1))
                .with_min_lr(cosine.min_lr)
                .into()
        }
    };
    if warmup > 0 {
        let ramp = LinearLrSchedulerConfig::new(lr / (warmup + 1) as f64, lr, warmup);
        SequentialLrSchedulerConfig::new(vec![ramp.into(), main], vec![warmup]).into()
    } else {
        main
    }
}

/// Scales all gradients together so their joint L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` does. The norm stays on the device: no host sync.
pub fn clip_global_norm<M: Module>(
    model: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> GradientsParams {
    let Some(sum) = squared_norm(model, &grads) else {
        return grads;
    };
    rescale(model, grads, clip_factor(sum, max_norm))
}

/// The factor that brings gradients whose squares sum to `squared_norm` to a norm of at most
/// `max_norm`, on the device.
pub fn clip_factor(squared_norm: Tensor<1>, max_norm: f64) -> Tensor<1> {
    (squared_norm.sqrt() + 1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0)
}

/// The sum of the squares of all gradients, on the device; `None` without gradients.
pub fn squared_norm<M: Module>(model: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    let mut norm = SquaredNorm { grads, sum: None };
    model.visit(&mut norm);
    norm.sum
}

/// Every gradient times `scale`, a one-element tensor on the device.
pub fn rescale<M: Module>(
    model: &M,
    mut grads: GradientsParams,
    scale: Tensor<1>,
) -> GradientsParams {
    model.visit(&mut Rescale {
        grads: &mut grads,
        scale,
    });
    grads
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let squares = grad.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squares,
                None => squares,
            });
        }
    }
}

struct Rescale<'a> {
    grads: &'a mut GradientsParams,
    scale: Tensor<1>,
}

impl ModuleVisitor for Rescale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let scale: Tensor<D> = self.scale.clone().unsqueeze();
            self.grads.register(param.id, grad * scale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConstantSchedule, CosineSchedule};

    fn lrs(mut scheduler: ModuleLrScheduler, steps: usize) -> Vec<f64> {
        (0..steps).map(|_| scheduler.step().base()).collect()
    }

    #[test]
    fn warmup_ramps_linearly_to_the_base_rate() {
        let config = SchedulerConfig::Constant(ConstantSchedule { warmup_steps: 3 });
        let got = lrs(build_scheduler(&config, 0.4, &BTreeMap::new(), 10), 5);
        let expected = [0.1, 0.2, 0.3, 0.4, 0.4];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn cosine_ends_at_min_lr() {
        let config = SchedulerConfig::Cosine(CosineSchedule {
            warmup_steps: 0,
            min_lr: 0.01,
        });
        let got = lrs(build_scheduler(&config, 0.1, &BTreeMap::new(), 4), 5);
        assert!((got[0] - 0.1).abs() < 1e-12);
        assert!((got[4] - 0.01).abs() < 1e-9, "{got:?}");
    }

    #[test]
    fn global_clipping_scales_all_gradients_by_one_factor() {
        let device = Device::flex().autodiff();
        let a = Param::from_tensor(Tensor::<1>::from_floats([1.0, 1.0], &device));
        let b = Param::from_tensor(Tensor::<1>::from_floats([1.0, 1.0], &device));
        let loss = a.val().mul_scalar(3.0).sum() + b.val().mul_scalar(4.0).sum();
        let model = (a, b);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // Gradients [3, 3] and [4, 4]: joint norm sqrt(50); clipped to 1.
        let grads = clip_global_norm(&model, grads, 1.0);
        let ga: Vec<f32> = grads
            .get::<1>(model.0.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let gb: Vec<f32> = grads
            .get::<1>(model.1.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let scale = 1.0 / 50f32.sqrt();
        assert!((ga[0] - 3.0 * scale).abs() < 1e-5 && (gb[1] - 4.0 * scale).abs() < 1e-5);
    }
}
