//! stoke's own fused operations, where burn's composition of small ops is what a training step
//! spends its time on: dropout from a counter-based RNG, and later the rest of the CPU
//! kernels a step needs. Each op is a method of [`StokeOps`], a burn backend extension: flex
//! runs stoke's kernels (`flex.rs`, on its f32 buffers), the other backends run the default
//! bodies, which compose burn's own ops (`reference.rs`), and autodiff records each op as one
//! node with its hand-written backward (`autodiff.rs`). The functions below are the tensor-level
//! API the models call.

// ndarray is deprecated upstream, also in the code the extension macro generates for it; stoke
// still offers the backend.
#![allow(deprecated)]

mod autodiff;
mod conv;
mod dropout;
mod flex;
mod reference;
#[cfg(test)]
mod tests;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

pub use dropout::seed_dropout;

/// The operations stoke fuses. Default bodies are the reference: burn's own ops.
#[backend_extension(Flex, NdArray, Cube, Autodiff)]
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
}

impl StokeOps for burn::backend::NdArray {}
impl StokeOps for burn::backend::Cube {}

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
