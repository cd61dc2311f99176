//! The fused ops on flex: stoke's kernels on its f32 buffers, the reference for anything else
//! (half types under mixed precision).

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType, Shape};

use super::adam::{self, AdamStep, Factors};
use super::attention::{self, Attention};
use super::conv::{self, Geometry};
use super::dropout::Mask;
use super::elementwise::{self, gelu, gelu_backward};
use super::linear;
use super::pool::{self, Pool};
use super::{AttentionOptions, StokeOps, norm, reference};

/// Whether every tensor holds f32.
fn all_f32<'a>(tensors: impl IntoIterator<Item = &'a FlexTensor>) -> bool {
    tensors.into_iter().all(|t| t.dtype() == DType::F32)
}

/// The tensor's f32 elements in order; it must be [`dense`].
fn elements(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("a dense f32 tensor (see `dense`)")
}

/// The tensor's f32 elements to overwrite in place, when it alone owns exactly them.
fn elements_mut(tensor: &mut FlexTensor) -> Option<&mut [f32]> {
    let (start, end) = tensor.layout().contiguous_offsets()?;
    let storage = tensor.try_storage_mut::<f32>()?;
    (start == 0 && end == storage.len()).then_some(storage)
}

/// `tensor` with its elements in one contiguous run: itself, or a contiguous copy of a view.
fn dense(tensor: FlexTensor) -> FlexTensor {
    if tensor.as_slice::<f32>().is_some() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// A new f32 tensor of `shape` (zeros) for a kernel to fill. Not `FlexTensor::empty`, which
/// zeroes a byte vector and then copies it into an aligned one.
fn output(shape: impl Into<Shape>) -> FlexTensor {
    let shape = shape.into();
    let values = vec![0.0f32; shape.num_elements()];
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// A new f32 tensor of `shape` whose elements `fill` writes, with no zero fill first.
///
/// # Safety
/// `fill` must write every element of the slice it is given.
unsafe fn written(
    shape: impl Into<Shape>,
    fill: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> FlexTensor {
    let shape = shape.into();
    let len = shape.num_elements();
    let mut values = Vec::with_capacity(len);
    fill(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: the caller's `fill` wrote all `len` elements.
    unsafe { values.set_len(len) };
    tensor(values, shape)
}

fn dims4(tensor: &FlexTensor) -> [usize; 4] {
    tensor.layout().shape().dims()
}

/// A bool tensor's values as bytes (non-zero: true), in order.
fn bools(tensor: FlexTensor) -> Vec<u8> {
    let tensor = tensor.to_contiguous();
    let (start, end) = tensor.layout().contiguous_offsets().expect("contiguous");
    tensor.storage::<u8>()[start..end].to_vec()
}

/// The kernel's view of an attention call on `qkv` (`[batch, length, 3 · d_model]`).
fn attention_call(qkv: &FlexTensor, options: &AttentionOptions) -> Attention {
    let [batch, length, width] = qkv.layout().shape().dims();
    Attention {
        batch,
        length,
        heads: options.heads,
        head_dim: width / 3 / options.heads,
        causal: options.causal,
        dropout: options.dropout.map(|(key, prob)| Mask::new(key, prob)),
    }
}

impl StokeOps for Flex {
    fn fused_dropout(mut x: FlexTensor, key: u64, prob: f64) -> FlexTensor {
        if !all_f32([&x]) {
            return reference::dropout::<Flex>(x, key, prob);
        }
        let mask = Mask::new(key, prob);
        if let Some(values) = elements_mut(&mut x) {
            mask.apply_in_place(values);
            return x;
        }
        let x = dense(x);
        // SAFETY: `apply` writes every element.
        unsafe {
            written(x.layout().shape().clone(), |out| {
                mask.apply(elements(&x), out)
            })
        }
    }

    fn fused_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        convolve(x, weight, None, options)
    }

    fn fused_conv2d_bias(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        convolve(x, weight, Some(bias), options)
    }

    fn fused_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
        [want_x, want_weight, want_bias]: [bool; 3],
    ) -> (Option<FlexTensor>, Option<FlexTensor>, Option<FlexTensor>) {
        if !all_f32([&x, &weight, &output_grad]) {
            let wanted = [want_x, want_weight, want_bias];
            return reference::conv2d_backward::<Flex>(x, weight, output_grad, options, wanted);
        }
        let (x, weight, output_grad) = (dense(x), dense(weight), dense(output_grad));
        let geometry = Geometry::new(dims4(&x), dims4(&weight), &options);
        let mut x_grad = want_x.then(|| output(x.layout().shape().clone()));
        let mut weight_grad = want_weight.then(|| output(weight.layout().shape().clone()));
        let mut bias_grad = want_bias.then(|| output([geometry.filters]));
        conv::backward(
            &geometry,
            elements(&x),
            elements(&weight),
            elements(&output_grad),
            conv::Gradients {
                x: x_grad.as_mut().map(|t| t.storage_mut::<f32>()),
                weight: weight_grad.as_mut().map(|t| t.storage_mut::<f32>()),
                bias: bias_grad.as_mut().map(|t| t.storage_mut::<f32>()),
            },
        );
        (x_grad, weight_grad, bias_grad)
    }

    fn fused_linear(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        project(x, weight, None)
    }

    fn fused_linear_bias(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        project(x, weight, Some(bias))
    }

    fn fused_linear_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        [want_x, want_weight, want_bias]: [bool; 3],
    ) -> (Option<FlexTensor>, Option<FlexTensor>, Option<FlexTensor>) {
        if !all_f32([&x, &weight, &output_grad]) {
            let x_grad = want_x.then(|| Flex::linear_x_backward(weight, output_grad.clone()));
            let bias_grad = want_bias.then(|| Flex::linear_bias_backward(output_grad.clone()));
            let weight_grad = want_weight.then(|| Flex::linear_weight_backward(x, output_grad));
            return (x_grad, weight_grad, bias_grad);
        }
        let x_shape = x.layout().shape().clone();
        let (x, weight, dy) = (dense(x), dense(weight), dense(output_grad));
        let shape = linear_shape(&x_shape, &weight);
        let x_grad = want_x.then(|| {
            tensor(
                linear::x_grad(shape, elements(&weight), elements(&dy)),
                x_shape.clone(),
            )
        });
        let weight_grad = want_weight.then(|| {
            let dw = linear::weight_grad(shape, elements(&x), elements(&dy));
            tensor(dw, [shape.inputs, shape.outputs])
        });
        let bias_grad =
            want_bias.then(|| tensor(linear::bias_grad(shape, elements(&dy)), [shape.outputs]));
        (x_grad, weight_grad, bias_grad)
    }

    fn fused_adam(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if !all_f32([&param, &grad, &moment_1, &moment_2]) {
            return reference::adam::<Flex>(param, grad, moment_1, moment_2, &step);
        }
        // The moments are the optimizer's alone: updated in place. The parameter is in place
        // too where this call holds the only reference to it, else written anew.
        let owned = |tensor: FlexTensor| {
            let mut tensor = dense(tensor);
            if elements_mut(&mut tensor).is_none() {
                tensor = self::tensor(elements(&tensor).to_vec(), tensor.layout().shape().clone());
            }
            tensor
        };
        let (mut moment_1, mut moment_2) = (owned(moment_1), owned(moment_2));
        let (mut param, grad) = (dense(param), dense(grad));
        let factors = Factors::new(&step);
        let (m, v) = (
            elements_mut(&mut moment_1).expect("owned"),
            elements_mut(&mut moment_2).expect("owned"),
        );
        if let Some(values) = elements_mut(&mut param) {
            adam::update(&factors, values, elements(&grad), m, v);
        } else {
            let values = adam::update_into(&factors, elements(&param), elements(&grad), m, v);
            param = self::tensor(values, param.layout().shape().clone());
        }
        (param, moment_1, moment_2)
    }

    fn fused_max_pool2d(x: FlexTensor, kernel: [usize; 2]) -> FlexTensor {
        if !all_f32([&x]) {
            return Flex::max_pool2d(x, kernel, kernel, [0, 0], [1, 1], false);
        }
        let x = dense(x);
        let [batch, channels, height, width] = dims4(&x);
        let call = Pool {
            height,
            width,
            kernel,
        };
        let [out_h, out_w] = call.out();
        // SAFETY: `pool::forward` writes every output.
        unsafe {
            written([batch, channels, out_h, out_w], |out| {
                pool::forward(&call, elements(&x), out)
            })
        }
    }

    fn fused_max_pool2d_backward(
        x: FlexTensor,
        output_grad: FlexTensor,
        kernel: [usize; 2],
    ) -> FlexTensor {
        let (x, output_grad) = (dense(x), dense(output_grad));
        let [_, _, height, width] = dims4(&x);
        let call = Pool {
            height,
            width,
            kernel,
        };
        // SAFETY: `pool::backward` writes every input position.
        unsafe {
            written(x.layout().shape().clone(), |dx| {
                pool::backward(&call, elements(&x), elements(&output_grad), dx)
            })
        }
    }

    fn fused_gelu(x: FlexTensor) -> FlexTensor {
        if !all_f32([&x]) {
            return Flex::gelu(x);
        }
        let x = dense(x);
        // SAFETY: `map` writes every element.
        unsafe {
            written(x.layout().shape().clone(), |out| {
                elementwise::map(elements(&x), out, gelu)
            })
        }
    }

    fn fused_gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if !all_f32([&x, &grad]) {
            return Flex::gelu_backward(x, grad);
        }
        let (x, grad) = (dense(x), dense(grad));
        // SAFETY: `zip_map` writes every element.
        unsafe {
            written(x.layout().shape().clone(), |out| {
                elementwise::zip_map(elements(&x), elements(&grad), out, gelu_backward)
            })
        }
    }

    fn fused_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        if !all_f32([&x, &gamma, &beta]) {
            return Flex::layer_norm(x, gamma, Some(beta), epsilon);
        }
        let (x, gamma, beta) = (dense(x), dense(gamma), dense(beta));
        let (gamma, beta) = (elements(&gamma), elements(&beta));
        // SAFETY: `norm::forward` writes every element.
        unsafe {
            written(x.layout().shape().clone(), |out| {
                norm::forward(elements(&x), gamma, beta, epsilon as f32, out)
            })
        }
    }

    fn fused_layer_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        output_grad: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, gamma, output_grad) = (dense(x), dense(gamma), dense(output_grad));
        let mut sums = None;
        // SAFETY: `norm::backward` writes every element of the input's gradient.
        let x_grad = unsafe {
            written(x.layout().shape().clone(), |dx| {
                let (x, gamma, dy) = (elements(&x), elements(&gamma), elements(&output_grad));
                sums = Some(norm::backward(x, gamma, dy, epsilon as f32, dx));
            })
        };
        let (gamma_grad, beta_grad) = sums.expect("computed with the input's gradient");
        let vector = |values: Vec<f32>| {
            let len = values.len();
            FlexTensor::from_data(burn::tensor::TensorData::new(values, [len]))
        };
        (x_grad, vector(gamma_grad), vector(beta_grad))
    }

    fn fused_attention(
        qkv: FlexTensor,
        padding: FlexTensor,
        options: AttentionOptions,
    ) -> FlexTensor {
        if !all_f32([&qkv]) {
            return reference::attention::<Flex>(qkv, padding, &options);
        }
        let call = attention_call(&qkv, &options);
        let (qkv, padding) = (dense(qkv), bools(padding));
        let shape = [call.batch, call.length, call.heads * call.head_dim];
        // SAFETY: `attention::forward` writes every output.
        unsafe {
            written(shape, |out| {
                attention::forward(&call, elements(&qkv), &padding, out, None)
            })
        }
    }

    fn fused_attention_forward(
        qkv: FlexTensor,
        padding: FlexTensor,
        options: AttentionOptions,
    ) -> (FlexTensor, FlexTensor) {
        let call = attention_call(&qkv, &options);
        let (qkv, padding) = (dense(qkv), bools(padding));
        let shape = [call.batch, call.length, call.heads * call.head_dim];
        let mut lse = None;
        // SAFETY: `attention::forward` writes every output and log-sum-exp.
        let out = unsafe {
            written(shape, |out| {
                let lse_shape = [call.batch, call.heads, call.length];
                lse = Some(written(lse_shape, |lse| {
                    attention::forward(&call, elements(&qkv), &padding, out, Some(lse))
                }));
            })
        };
        (out, lse.expect("written with the output"))
    }

    fn fused_attention_backward(
        qkv: FlexTensor,
        padding: FlexTensor,
        output_tensor: FlexTensor,
        lse: FlexTensor,
        output_grad: FlexTensor,
        options: AttentionOptions,
    ) -> FlexTensor {
        let call = attention_call(&qkv, &options);
        let (qkv, out, lse, out_grad) = (
            dense(qkv),
            dense(output_tensor),
            dense(lse),
            dense(output_grad),
        );
        let mut qkv_grad = output(qkv.layout().shape().clone());
        attention::backward(
            &call,
            elements(&qkv),
            &bools(padding),
            elements(&out),
            elements(&lse),
            elements(&out_grad),
            qkv_grad.storage_mut::<f32>(),
        );
        qkv_grad
    }
}

/// `x` (`[.., inputs]`) against `weight` (`[inputs, outputs]`) as a matrix of rows.
fn linear_shape(x: &Shape, weight: &FlexTensor) -> linear::Shape {
    let [inputs, outputs] = weight.layout().shape().dims();
    linear::Shape {
        rows: x.num_elements() / inputs,
        inputs,
        outputs,
    }
}

/// An f32 tensor of `shape` holding `values`.
fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape.into()),
        DType::F32,
    )
}

fn project(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>) -> FlexTensor {
    if !all_f32([&x, &weight].into_iter().chain(&bias)) {
        return Flex::linear(x, weight, bias);
    }
    let mut out_shape = x.layout().shape().clone();
    let (x, weight, bias) = (dense(x), dense(weight), bias.map(dense));
    let shape = linear_shape(&out_shape, &weight);
    let y = linear::forward(
        shape,
        elements(&x),
        elements(&weight),
        bias.as_ref().map(elements),
    );
    let last = out_shape.num_dims() - 1;
    out_shape[last] = shape.outputs;
    tensor(y, out_shape)
}

fn convolve(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: ConvOptions<2>,
) -> FlexTensor {
    if !all_f32([&x, &weight].into_iter().chain(&bias)) {
        return Flex::conv2d(x, weight, bias, options);
    }
    let (x, weight, bias) = (dense(x), dense(weight), bias.map(dense));
    let geometry = Geometry::new(dims4(&x), dims4(&weight), &options);
    let shape = [
        geometry.batch,
        geometry.filters,
        geometry.out[0],
        geometry.out[1],
    ];
    let bias = bias.as_ref().map(elements);
    // SAFETY: `conv::forward` writes every output.
    unsafe {
        written(shape, |y| {
            conv::forward(&geometry, elements(&x), elements(&weight), bias, y)
        })
    }
}
