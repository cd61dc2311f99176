//! Adam and AdamW as burn defines them, stepping each parameter with stoke's fused update
//! (`kernels::adam`): one pass over the parameter, its gradient and its moments instead of a
//! dozen element-wise ops. The state is burn's own `AdamState` / `AdamWState`, so optimizer
//! records, checkpoints and resumed runs are those of burn's optimizers.

use burn::optim::{AdamState, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::prelude::*;

use crate::kernels::{self, AdamStep};

/// The hyper-parameters of an Adam-family update.
#[derive(Clone, Copy, Debug)]
pub struct AdamParams {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

impl AdamParams {
    /// One step on `param` from its moments (none before the first step).
    fn step<const D: usize>(
        &self,
        decoupled: bool,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        momentum: Option<AdaptiveMomentumState<D>>,
    ) -> (Tensor<D>, AdaptiveMomentumState<D>) {
        let (time, moment_1, moment_2) = match momentum {
            Some(state) => (state.time + 1, state.moment_1, state.moment_2),
            // The kernel ignores the moments' values on the first step.
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let step = AdamStep {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            decoupled,
            time,
        };
        let (param, moment_1, moment_2) = kernels::adam(param, grad, moment_1, moment_2, step);
        (param, AdaptiveMomentumState::new(time, moment_1, moment_2))
    }
}

/// Adam, with L2 weight decay added to the gradient.
#[derive(Clone, Debug)]
pub struct FusedAdam(pub AdamParams);

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (param, momentum) = self
            .0
            .step(false, lr, tensor, grad, state.map(|s| s.momentum));
        (param, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamState::new(state.momentum.to_device(device))
    }
}

/// AdamW: weight decay applied to the weights, decoupled from the gradient.
#[derive(Clone, Debug)]
pub struct FusedAdamW(pub AdamParams);

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (param, momentum) = self
            .0
            .step(true, lr, tensor, grad, state.map(|s| s.momentum));
        (param, Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamWState {
            momentum: state.momentum.to_device(device),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};

    use super::*;

    fn train(device: &Device, mut optimizer: ModuleOptimizer) -> Vec<f32> {
        device.seed(1);
        let mut layer: Linear = LinearConfig::new(40, 30).init(device);
        for step in 0..4 {
            let x = Tensor::<2>::from_data(
                TensorData::new(
                    (0..200)
                        .map(|i| ((i * 7 + step) % 13) as f32 - 6.0)
                        .collect(),
                    [5, 40],
                ),
                device,
            );
            let loss = layer.forward(x).powf_scalar(2.0).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            // Every other step the parameters are shared, as with the trainer's model: the
            // kernel then writes them anew rather than in place.
            let shared = (step % 2 == 0).then(|| layer.clone());
            layer = optimizer.step(1e-2, layer, grads);
            drop(shared);
        }
        let weight = layer
            .weight
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let bias = layer
            .bias
            .unwrap()
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        [weight, bias].concat()
    }

    #[test]
    fn the_fused_steps_are_burns_to_the_bit() {
        let params = AdamParams {
            beta_1: 0.9,
            beta_2: 0.99,
            epsilon: 1e-8,
            weight_decay: 0.05,
        };
        #[allow(deprecated)] // ndarray runs the reference body.
        let devices = [Device::flex().autodiff(), Device::ndarray().autodiff()];
        for device in devices {
            let burn_adam = AdamConfig::new()
                .with_beta_2(0.99)
                .with_epsilon(1e-8)
                .with_weight_decay(Some(WeightDecayConfig::new(0.05)))
                .init();
            let ours = train(&device, ModuleOptimizer::from(FusedAdam(params)));
            assert_eq!(ours, train(&device, burn_adam), "adam on {device:?}");
            let burn_adamw = AdamWConfig::new()
                .with_beta_2(0.99)
                .with_epsilon(1e-8)
                .with_weight_decay(0.05)
                .init();
            let ours = train(&device, ModuleOptimizer::from(FusedAdamW(params)));
            assert_eq!(ours, train(&device, burn_adamw), "adamw on {device:?}");
        }
    }
}
