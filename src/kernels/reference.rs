//! The reference bodies of the fused ops, composed of burn's backend ops: what backends
//! without stoke kernels (wgpu, ndarray) run, what flex runs for dtypes its kernels do not
//! cover, and what the tests hold the kernels to.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{FloatDType, TensorData};

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
