//! stoke's own fused operations, where burn's composition of small ops is what a training step
//! spends its time on: dropout from a counter-based RNG, convolution as gemm over im2col
//! patches, exact GELU, layer norm and multi-head self-attention. Each op is a method of
//! [`StokeOps`], a burn backend extension: flex runs stoke's kernels (`flex.rs` over `conv.rs`,
//! `attention.rs`, `norm.rs`, `elementwise.rs`, on its f32 buffers), the other backends run the
//! default bodies, which compose burn's own ops (`reference.rs`), and autodiff records each op
//! as one node with its hand-written backward (`autodiff.rs`) where the inner backend has the
//! kernels, and burn's own graph where it has not. The functions below are the tensor-level API
//! the models call.

// ndarray is deprecated upstream, also in the code the extension macro generates for it; stoke
// still offers the backend.
#![allow(deprecated)]

mod adam;
mod attention;
mod autodiff;
mod conv;
mod dropout;
mod elementwise;
mod flex;
mod gemm;
mod linear;
mod math;
mod norm;
mod pool;
mod reference;
mod scratch;
#[cfg(test)]
mod tests;

use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

pub use adam::AdamStep;
pub use dropout::{seed_dropout, start_dropout_pass};

/// What one attention call computes.
#[derive(Clone, Debug)]
pub struct AttentionOptions {
    pub heads: usize,
    /// Each position sees only itself and those before it.
    pub causal: bool,
    /// Dropout on the attention weights: the mask's key and the drop probability.
    pub dropout: Option<(u64, f64)>,
}

/// The operations stoke fuses. Default bodies are the reference: burn's own ops.
#[backend_extension(Flex, NdArray, Cube, Capture, Autodiff)]
pub trait StokeOps: Backend {
    /// `x` with each element zeroed with probability `prob` and the rest scaled by
    /// `1 / (1 - prob)`; which elements is a pure function of `key` and the element's index.
    fn fused_dropout(x: FloatTensor<Self>, key: u64, prob: f64) -> FloatTensor<Self> {
        reference::dropout::<Self>(x, key, prob)
    }

    /// 2-D convolution (`x`: NCHW, `weight`: `[filters, channels / groups, kh, kw]`).
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// [`fused_conv2d`](Self::fused_conv2d) plus a bias per filter.
    fn fused_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options)
    }

    /// The gradients of a convolution with respect to `x`, `weight` and the bias, each
    /// computed where `wanted` says.
    #[allow(clippy::type_complexity)]
    fn fused_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        wanted: [bool; 3],
    ) -> (
        Option<FloatTensor<Self>>,
        Option<FloatTensor<Self>>,
        Option<FloatTensor<Self>>,
    ) {
        reference::conv2d_backward::<Self>(x, weight, output_grad, options, wanted)
    }

    /// `x · weight` over the last dimension of `x`; `weight` is `[inputs, outputs]`.
    fn fused_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear(x, weight, None)
    }

    /// [`fused_linear`](Self::fused_linear) plus `bias`.
    fn fused_linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::linear(x, weight, Some(bias))
    }

    /// The gradients of a linear layer with respect to `x`, `weight` and the bias, each
    /// computed where `wanted` says.
    #[allow(clippy::type_complexity)]
    fn fused_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        wanted: [bool; 3],
    ) -> (
        Option<FloatTensor<Self>>,
        Option<FloatTensor<Self>>,
        Option<FloatTensor<Self>>,
    ) {
        let [want_x, want_weight, want_bias] = wanted;
        let x_grad = want_x.then(|| Self::linear_x_backward(weight, output_grad.clone()));
        let bias_grad = want_bias.then(|| Self::linear_bias_backward(output_grad.clone()));
        let weight_grad = want_weight.then(|| Self::linear_weight_backward(x, output_grad));
        (x_grad, weight_grad, bias_grad)
    }

    /// One Adam or AdamW step: the parameter and the two moments after it. On the first
    /// step (`step.time` = 1) the moments' values are ignored.
    #[allow(clippy::type_complexity)]
    fn fused_adam(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::adam::<Self>(param, grad, moment_1, moment_2, &step)
    }

    /// Max pooling over non-overlapping `kernel` windows (stride = kernel, no padding).
    fn fused_max_pool2d(x: FloatTensor<Self>, kernel: [usize; 2]) -> FloatTensor<Self> {
        Self::max_pool2d(x, kernel, kernel, [0, 0], [1, 1], false)
    }

    /// The gradient of [`fused_max_pool2d`](Self::fused_max_pool2d) with respect to `x`.
    fn fused_max_pool2d_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        kernel: [usize; 2],
    ) -> FloatTensor<Self> {
        let _ = (x, output_grad, kernel);
        unreachable!("called only on flex, which has stoke's kernels")
    }

    /// The exact (erf) GELU.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, grad)
    }

    /// Layer norm over the last dimension: `(x − mean) / √(var + epsilon) · gamma + beta`.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// The gradients of [`fused_layer_norm`](Self::fused_layer_norm): `x`, `gamma`, `beta`.
    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let _ = (x, gamma, output_grad, epsilon);
        unreachable!("called only on flex, which has stoke's kernels")
    }

    /// Multi-head self-attention over `qkv` (`[batch, length, 3 · d_model]`: the query, key
    /// and value projections side by side), keys masked where `padding` (`[batch, length]`) is
    /// true; `[batch, length, d_model]`, heads side by side.
    fn fused_attention(
        qkv: FloatTensor<Self>,
        padding: BoolTensor<Self>,
        options: AttentionOptions,
    ) -> FloatTensor<Self> {
        reference::attention::<Self>(qkv, padding, &options)
    }

    /// [`fused_attention`](Self::fused_attention) and the log-sum-exp of each row of
    /// attention scores (`[batch, heads, length]`), which the backward pass starts from.
    fn fused_attention_forward(
        qkv: FloatTensor<Self>,
        padding: BoolTensor<Self>,
        options: AttentionOptions,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let _ = (qkv, padding, options);
        unreachable!("called only on flex, which has stoke's kernels")
    }

    /// The gradient of [`fused_attention`](Self::fused_attention) with respect to `qkv`.
    fn fused_attention_backward(
        qkv: FloatTensor<Self>,
        padding: BoolTensor<Self>,
        output: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: AttentionOptions,
    ) -> FloatTensor<Self> {
        let _ = (qkv, padding, output, lse, output_grad, options);
        unreachable!("called only on flex, which has stoke's kernels")
    }
}

impl StokeOps for burn::backend::NdArray {}
impl StokeOps for burn::backend::Cube {}
/// The capture device ONNX export traces on: it records the reference bodies' burn ops.
impl StokeOps for burn::backend::Capture {}

/// Inverted dropout with the next key of the step's dropout stream (see [`seed_dropout`]):
/// the mask depends on the run's seed, the step and the order of dropout calls in it, never
/// on threads or timing.
pub fn dropout<const D: usize>(x: Tensor<D>, prob: f64) -> Tensor<D> {
    if prob == 0.0 {
        return x;
    }
    let key = dropout::next_key();
    Tensor::from_dispatch(<Dispatch as StokeOps>::fused_dropout(
        x.into_dispatch(),
        key,
        prob,
    ))
}

/// `x` convolved with `weight` (and `bias`), as `burn::tensor::module::conv2d`.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
    Tensor::from_dispatch(match bias {
        Some(bias) => {
            <Dispatch as StokeOps>::fused_conv2d_bias(x, weight, bias.into_dispatch(), options)
        }
        None => <Dispatch as StokeOps>::fused_conv2d(x, weight, options),
    })
}

/// The exact GELU, `x · Φ(x)`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as StokeOps>::fused_gelu(x.into_dispatch()))
}

/// Layer norm over the last dimension, with `layer`'s parameters.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as StokeOps>::fused_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    ))
}

/// Multi-head self-attention of the fused projection `qkv` (`[batch, length, 3 · d_model]`)
/// with `heads` heads, keys masked where `padding` is true, causally masked when `causal`,
/// attention weights dropped with probability `dropout` in training.
pub fn attention(
    qkv: Tensor<3>,
    padding: Tensor<2, Bool>,
    heads: usize,
    causal: bool,
    dropout: f64,
) -> Tensor<3> {
    let dropout = (dropout > 0.0).then(|| (dropout::next_key(), dropout));
    let options = AttentionOptions {
        heads,
        causal,
        dropout,
    };
    Tensor::from_dispatch(<Dispatch as StokeOps>::fused_attention(
        qkv.into_dispatch(),
        padding.into_dispatch(),
        options,
    ))
}

/// `layer` applied to the last dimension of `x`, as `Linear::forward`.
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
    Tensor::from_dispatch(match bias {
        Some(bias) => <Dispatch as StokeOps>::fused_linear_bias(x, weight, bias.into_dispatch()),
        None => <Dispatch as StokeOps>::fused_linear(x, weight),
    })
}

/// One Adam or AdamW step on `param`: the parameter and its moments after it.
pub fn adam<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (param, moment_1, moment_2) = <Dispatch as StokeOps>::fused_adam(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    (
        Tensor::from_dispatch(param),
        Tensor::from_dispatch(moment_1),
        Tensor::from_dispatch(moment_2),
    )
}

/// Max pooling over non-overlapping `kernel` windows of `x` (`[batch, channels, h, w]`).
pub fn max_pool2d(x: Tensor<4>, kernel: [usize; 2]) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as StokeOps>::fused_max_pool2d(
        x.into_dispatch(),
        kernel,
    ))
}
