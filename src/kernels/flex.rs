//! The fused ops on flex: stoke's kernels on its f32 buffers, the reference for anything else
//! (half types under mixed precision).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Shape};

use super::StokeOps;
use super::conv::{self, Geometry};
use super::dropout::Mask;
use super::reference;

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

/// A new f32 tensor of `shape` for a kernel to fill.
fn output(shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::empty(shape.into(), DType::F32)
}

fn dims4(tensor: &FlexTensor) -> [usize; 4] {
    tensor.layout().shape().dims()
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
        let mut out = output(x.layout().shape().clone());
        mask.apply(elements(&x), out.storage_mut::<f32>());
        out
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
    let mut y = output([
        geometry.batch,
        geometry.filters,
        geometry.out[0],
        geometry.out[1],
    ]);
    conv::forward(
        &geometry,
        elements(&x),
        elements(&weight),
        bias.as_ref().map(elements),
        y.storage_mut::<f32>(),
    );
    y
}
