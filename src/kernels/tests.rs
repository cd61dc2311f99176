//! The fused ops against burn's own, forward and gradients, on flex (stoke's kernels) and on
//! ndarray (the reference bodies), over shapes chosen to reach every branch.

use burn::prelude::*;
use burn::tensor::Gradients;
use burn::tensor::ops::ConvOptions;

use super::*;

fn devices() -> [Device; 2] {
    #[allow(deprecated)] // ndarray runs the reference bodies.
    let ndarray = Device::ndarray();
    [Device::flex().autodiff(), ndarray.autodiff()]
}

/// Values in [-2, 2) from `seed`, tracked for gradients. Not the device RNG: tests run in
/// parallel threads, and that RNG is one per process.
fn random<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let values: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    let tensor = Tensor::<D>::from_data(TensorData::new(values, shape), device);
    if device.is_autodiff() {
        tensor.require_grad()
    } else {
        tensor
    }
}

fn grad<const D: usize>(tensor: &Tensor<D>, grads: &Gradients) -> TensorData {
    tensor.grad(grads).expect("a gradient").into_data()
}

/// Equal within float rounding, relative to the largest magnitude in `expected`.
fn close(actual: &TensorData, expected: &TensorData, what: &str) {
    let (actual, expected) = (
        actual.to_vec::<f32>().unwrap(),
        expected.to_vec::<f32>().unwrap(),
    );
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!(
            (a - e).abs() <= 2e-5 * scale,
            "{what}: element {i}: {a} vs {e}"
        );
    }
}

/// `[batch, channels, h, w]`, `[filters, channels / groups, kh, kw]`, options.
struct ConvCase {
    x: [usize; 4],
    weight: [usize; 4],
    options: ConvOptions<2>,
    bias: bool,
}

fn conv_cases() -> Vec<ConvCase> {
    let case = |x, weight, stride, padding, dilation, groups, bias| ConvCase {
        x,
        weight,
        options: ConvOptions::new_with_padding(stride, padding, dilation, groups),
        bias,
    };
    vec![
        // The MNIST CNN's layers, at a small batch.
        case(
            [3, 1, 28, 28],
            [32, 1, 3, 3],
            [1, 1],
            [(0, 0); 2],
            [1, 1],
            1,
            true,
        ),
        case(
            [9, 32, 26, 26],
            [64, 32, 3, 3],
            [1, 1],
            [(0, 0); 2],
            [1, 1],
            1,
            true,
        ),
        // ResNet: padded, strided, pointwise shortcuts, no bias.
        case(
            [5, 16, 14, 14],
            [32, 16, 3, 3],
            [2, 2],
            [(1, 1); 2],
            [1, 1],
            1,
            false,
        ),
        case(
            [5, 16, 14, 14],
            [32, 16, 1, 1],
            [2, 2],
            [(0, 0); 2],
            [1, 1],
            1,
            false,
        ),
        case(
            [6, 8, 7, 9],
            [12, 8, 1, 1],
            [1, 1],
            [(0, 0); 2],
            [1, 1],
            1,
            true,
        ),
        // Odd sizes, asymmetric padding and strides, dilation, groups.
        case(
            [2, 3, 11, 7],
            [5, 3, 3, 2],
            [2, 3],
            [(2, 1), (0, 3)],
            [1, 1],
            1,
            true,
        ),
        case(
            [3, 4, 13, 12],
            [6, 4, 3, 3],
            [1, 2],
            [(2, 2), (1, 1)],
            [2, 3],
            1,
            true,
        ),
        case(
            [4, 6, 9, 10],
            [9, 2, 3, 3],
            [1, 1],
            [(1, 1); 2],
            [1, 1],
            3,
            true,
        ),
        case(
            [1, 4, 8, 8],
            [4, 1, 5, 5],
            [3, 1],
            [(2, 2); 2],
            [1, 1],
            4,
            false,
        ),
    ]
}

#[test]
fn convolution_matches_burn_forward_and_backward() {
    for device in devices() {
        for (n, case) in conv_cases().into_iter().enumerate() {
            let seed = 3 * n as u64;
            let x = random(case.x, seed, &device);
            let weight = random(case.weight, seed + 1, &device);
            let bias = case
                .bias
                .then(|| random([case.weight[0]], seed + 2, &device));
            let ours = conv2d(
                x.clone(),
                weight.clone(),
                bias.clone(),
                case.options.clone(),
            );
            let theirs = burn::tensor::module::conv2d(
                x.clone(),
                weight.clone(),
                bias.clone(),
                case.options.clone(),
            );
            close(
                &ours.clone().into_data(),
                &theirs.clone().into_data(),
                &format!("case {n} forward"),
            );
            // A loss that weights every output differently.
            let weights = random(ours.dims(), 99, &device).detach();
            let ours = (ours * weights.clone()).sum().backward();
            let theirs = (theirs * weights).sum().backward();
            close(
                &grad(&x, &ours),
                &grad(&x, &theirs),
                &format!("case {n} x grad"),
            );
            close(
                &grad(&weight, &ours),
                &grad(&weight, &theirs),
                &format!("case {n} weight grad"),
            );
            if let Some(bias) = &bias {
                close(
                    &grad(bias, &ours),
                    &grad(bias, &theirs),
                    &format!("case {n} bias grad"),
                );
            }
        }
    }
}

#[test]
fn convolution_does_not_depend_on_the_thread_count() {
    let device = Device::flex().autodiff();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let x = random([13, 8, 12, 12], 1, &device);
            let weight = random([16, 8, 3, 3], 2, &device);
            let y = conv2d(
                x.clone(),
                weight.clone(),
                None,
                ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
            );
            let grads = (y.clone() * y.clone()).sum().backward();
            (y.into_data(), grad(&x, &grads), grad(&weight, &grads))
        })
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn untracked_inputs_get_no_gradient_and_inference_needs_no_autodiff() {
    let device = Device::flex();
    let x = random([2, 3, 6, 6], 1, &device);
    let weight = random([4, 3, 3, 3], 2, &device);
    let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
    let ours = conv2d(x.clone(), weight.clone(), None, options.clone());
    let theirs = burn::tensor::module::conv2d(x, weight, None, options);
    close(&ours.into_data(), &theirs.into_data(), "inference");
}

#[test]
fn dropout_masks_values_and_gradients_alike_on_every_backend() {
    let mut results = Vec::new();
    for device in devices() {
        let x = random([4, 37, 5], 7, &device);
        // A fixed key rather than the process-wide stream, which other tests draw from.
        let y = Tensor::<3>::from_dispatch(<Dispatch as StokeOps>::fused_dropout(
            x.clone().into_dispatch(),
            11,
            0.3,
        ));
        let grads = (y.clone() * 3.0).sum().backward();
        let (y, dx) = (y.into_data(), grad(&x, &grads));
        let (x, y_values, dx_values) = (
            x.into_data().to_vec::<f32>().unwrap(),
            y.to_vec::<f32>().unwrap(),
            dx.to_vec::<f32>().unwrap(),
        );
        for i in 0..x.len() {
            // Kept elements are scaled by 1/0.7 and pass 3/0.7 of the gradient; dropped, none.
            if y_values[i] == 0.0 {
                assert_eq!(dx_values[i], 0.0);
            } else {
                assert_eq!(y_values[i], x[i] * (1.0 / 0.7f32));
                assert_eq!(dx_values[i], 3.0 * (1.0 / 0.7f32));
            }
        }
        let kept = y_values.iter().filter(|&&v| v != 0.0).count();
        assert!((kept as f64 / x.len() as f64 - 0.7).abs() < 0.1, "{kept}");
        results.push(y_values.iter().map(|&v| v != 0.0).collect::<Vec<_>>());
    }
    // The same mask on flex (the kernel) and ndarray (the reference).
    assert_eq!(results[0], results[1]);
}
