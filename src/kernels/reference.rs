//! The reference bodies of the fused ops, composed of burn's backend ops: what backends
//! without stoke kernels (wgpu, ndarray) run, what flex runs for dtypes its kernels do not
//! cover, and what the tests hold the kernels to.

use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::backend::{Backend, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{FloatDType, Slice, TensorData};

use super::AttentionOptions;
use super::adam::AdamStep;
use super::dropout::Mask;

/// `x` times the mask of `key`, made on the host and moved to `x`'s device.
pub fn dropout<B: Backend>(x: FloatTensor<B>, key: u64, prob: f64) -> FloatTensor<B> {
    let shape = x.shape();
    let mask = Mask::new(key, prob).values(shape.num_elements());
    let mask = B::float_from_data(TensorData::new(mask, shape), &x.device());
    let mask = match FloatDType::from(x.dtype()) {
        FloatDType::F32 => mask,
        dtype => B::float_cast(mask, dtype),
    };
    B::float_mul(x, mask)
}

/// burn's own convolution gradients.
#[allow(clippy::type_complexity)]
pub fn conv2d_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: ConvOptions<2>,
    [want_x, want_weight, want_bias]: [bool; 3],
) -> (
    Option<FloatTensor<B>>,
    Option<FloatTensor<B>>,
    Option<FloatTensor<B>>,
) {
    let x_grad = want_x.then(|| {
        B::conv2d_x_backward(
            x.clone(),
            weight.clone(),
            output_grad.clone(),
            options.clone(),
        )
    });
    let bias_grad = want_bias.then(|| {
        // The sum over the batch and the positions: [batch, filters, h, w] → [filters].
        let [batch, filters, height, width] = output_grad.shape().dims();
        let grad = B::float_reshape(output_grad.clone(), [batch, filters, height * width].into());
        let grad = B::float_sum_dim(B::float_sum_dim(grad, 2), 0);
        B::float_reshape(grad, [filters].into())
    });
    let weight_grad =
        want_weight.then(|| B::conv2d_weight_backward(x, weight, output_grad, options));
    (x_grad, weight_grad, bias_grad)
}

/// Attention as burn's `MultiHeadAttention` computes it: scores, masked with -10⁴ as burn
/// does, softmax, dropout with stoke's mask (the same elements as the kernel drops), then the
/// weighted values.
pub fn attention<B: Backend>(
    qkv: FloatTensor<B>,
    padding: BoolTensor<B>,
    options: &AttentionOptions,
) -> FloatTensor<B> {
    let [batch, length, width] = qkv.shape().dims();
    let (d_model, heads) = (width / 3, options.heads);
    let head_dim = d_model / heads;
    let device = qkv.device();
    // Part `i` of the projection as [batch, heads, length, head_dim].
    let part = |i: usize| {
        let slices = [
            Slice::from(..),
            Slice::from(..),
            Slice::from(i * d_model..(i + 1) * d_model),
        ];
        let part = B::float_slice(qkv.clone(), &slices);
        let part = B::float_reshape(part, [batch, length, heads, head_dim].into());
        B::float_swap_dims(part, 1, 2)
    };
    let (query, key, value) = (part(0), part(1), part(2));
    let scores = B::float_matmul(query, B::float_swap_dims(key, 2, 3));
    let scores = B::float_div_scalar(scores, (head_dim as f32).sqrt().into());
    let scores_shape = [batch, heads, length, length];
    let padding = B::bool_reshape(padding, [batch, 1, 1, length].into());
    let mut mask = B::bool_expand(padding, scores_shape.into());
    if options.causal {
        let future: Vec<bool> = (0..length * length)
            .map(|n| n % length > n / length)
            .collect();
        let future = B::bool_from_data(TensorData::new(future, [1, 1, length, length]), &device);
        mask = B::bool_or(mask, B::bool_expand(future, scores_shape.into()));
    }
    let scores = B::float_mask_fill(scores, mask, (-1.0e4f32).into());
    let mut weights = B::softmax(scores, 3);
    if let Some((key, prob)) = options.dropout {
        weights = dropout::<B>(weights, key, prob);
    }
    let context = B::float_swap_dims(B::float_matmul(weights, value), 1, 2);
    B::float_reshape(context, [batch, length, d_model].into())
}

/// burn's Adam and AdamW, op for op.
pub fn adam<B: Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    moment_1: FloatTensor<B>,
    moment_2: FloatTensor<B>,
    step: &AdamStep,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let scalar = |value: f32| burn::tensor::Scalar::from(value);
    let grad = if !step.decoupled && step.weight_decay != 0.0 {
        B::float_add(
            B::float_mul_scalar(param.clone(), scalar(step.weight_decay)),
            grad,
        )
    } else {
        grad
    };
    let scaled_1 = B::float_mul_scalar(grad.clone(), scalar(1.0 - step.beta_1));
    let scaled_2 = B::float_mul_scalar(B::float_mul(grad.clone(), grad), scalar(1.0 - step.beta_2));
    let (moment_1, moment_2) = if step.time == 1 {
        (scaled_1, scaled_2)
    } else {
        (
            B::float_add(B::float_mul_scalar(moment_1, scalar(step.beta_1)), scaled_1),
            B::float_add(B::float_mul_scalar(moment_2, scalar(step.beta_2)), scaled_2),
        )
    };
    let time = step.time as i32;
    let (correction_1, correction_2) = (1.0 - step.beta_1.powi(time), 1.0 - step.beta_2.powi(time));
    let delta = if step.decoupled {
        // AdamW corrects each moment, then adds ε.
        let corrected_1 = B::float_div_scalar(moment_1.clone(), scalar(correction_1));
        let corrected_2 = B::float_div_scalar(moment_2.clone(), scalar(correction_2));
        let denominator = B::float_add_scalar(B::float_sqrt(corrected_2), scalar(step.epsilon));
        B::float_div(corrected_1, denominator)
    } else {
        // Adam folds both corrections into one factor and scales ε.
        let combined = correction_2.sqrt() / correction_1;
        let denominator = B::float_add_scalar(
            B::float_sqrt(moment_2.clone()),
            scalar(step.epsilon * correction_2.sqrt()),
        );
        B::float_div(
            B::float_mul_scalar(moment_1.clone(), scalar(combined)),
            denominator,
        )
    };
    let decay = step.lr * step.weight_decay as f64;
    let param = if step.decoupled && decay != 0.0 {
        B::float_mul_scalar(param, scalar((1.0 - decay) as f32))
    } else {
        param
    };
    let param = B::float_sub(param, B::float_mul_scalar(delta, scalar(step.lr as f32)));
    (param, moment_1, moment_2)
}
