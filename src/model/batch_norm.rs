//! Batch norm in training as PyTorch keeps it: the batch is normalised with its biased
//! variance, and the running variance is updated with the unbiased one (× n / (n − 1), n the
//! values per channel), where burn's `BatchNorm` updates it with the biased variance. A
//! fine-tuned timm or torchvision ResNet then drifts from what PyTorch would learn by nothing
//! but rounding. Every model of stoke's with batch norm calls [`forward`] instead of
//! `BatchNorm::forward`; the layer, its record and its evaluation are burn's.

use burn::nn::BatchNorm;
use burn::prelude::*;

/// `layer` applied to `x` (`[batch, channels, ...]`): with the batch's statistics, updating
/// the running ones, on an autodiff device with the layer not frozen; else with the running
/// statistics, as in evaluation.
pub fn forward<const D: usize>(layer: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    if !(x.device().is_autodiff() && layer.training.is_enabled()) {
        return layer.forward(x);
    }
    let device = x.device();
    let dims = x.dims();
    let per_channel = dims.iter().product::<usize>() / dims[1];
    let result = burn::tensor::module::batch_norm_train(
        x,
        layer.gamma.val(),
        layer.beta.val(),
        layer.epsilon,
    );
    let momentum = layer.momentum;
    // PyTorch's `running_var` takes the unbiased variance (unless a channel holds one value).
    let unbiased = match per_channel {
        0 | 1 => 1.0,
        n => n as f64 / (n - 1) as f64,
    };
    let mean = layer.running_mean.value_sync().to_device(&device);
    let var = layer.running_var.value_sync().to_device(&device);
    let mean = mean
        .mul_scalar(1.0 - momentum)
        .add(result.mean.detach().mul_scalar(momentum));
    let var = var
        .mul_scalar(1.0 - momentum)
        .add(result.variance.detach().mul_scalar(momentum * unbiased));
    layer.running_mean.update(mean.detach());
    layer.running_var.update(var.detach());
    result.output
}
