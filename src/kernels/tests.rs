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
        actual.try_to_vec::<f32>().unwrap(),
        expected.try_to_vec::<f32>().unwrap(),
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
            x.into_data().try_to_vec::<f32>().unwrap(),
            y.try_to_vec::<f32>().unwrap(),
            dx.try_to_vec::<f32>().unwrap(),
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

#[test]
fn gelu_matches_burn_forward_and_backward() {
    for device in devices() {
        let x = random([7, 333], 3, &device);
        let ours = gelu(x.clone());
        let theirs = burn::tensor::activation::gelu(x.clone());
        close(
            &ours.clone().into_data(),
            &theirs.clone().into_data(),
            "gelu",
        );
        let weights = random([7, 333], 4, &device).detach();
        let ours = (ours * weights.clone()).sum().backward();
        let theirs = (theirs * weights).sum().backward();
        close(&grad(&x, &ours), &grad(&x, &theirs), "gelu grad");
    }
}

#[test]
fn layer_norm_matches_burn_forward_and_backward() {
    for device in devices() {
        // More rows than one task takes, and a last task with fewer.
        let x = random([3, 50, 96], 5, &device);
        let gamma = random([96], 6, &device);
        let beta = random([96], 7, &device);
        let ours = layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        let theirs =
            burn::tensor::module::layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), 1e-5);
        close(
            &ours.clone().into_data(),
            &theirs.clone().into_data(),
            "layer norm",
        );
        let weights = random([3, 50, 96], 8, &device).detach();
        let ours = (ours * weights.clone()).sum().backward();
        let theirs = (theirs * weights).sum().backward();
        for (name, tensor) in [
            ("x", grad(&x, &ours)),
            ("gamma", grad(&gamma, &ours)),
            ("beta", grad(&beta, &ours)),
        ] {
            let expected = match name {
                "x" => grad(&x, &theirs),
                "gamma" => grad(&gamma, &theirs),
                _ => grad(&beta, &theirs),
            };
            close(&tensor, &expected, &format!("layer norm {name} grad"));
        }
    }
}

/// Attention written with burn's tensor ops, as `burn::nn::attention::MultiHeadAttention`
/// computes it from the fused projection; dropout through the fused op with the same key.
fn attention_with_burn_ops(
    qkv: Tensor<3>,
    padding: Tensor<2, Bool>,
    heads: usize,
    causal: bool,
    dropout: Option<(u64, f64)>,
) -> Tensor<3> {
    let [batch, length, width] = qkv.dims();
    let d_model = width / 3;
    let head_dim = d_model / heads;
    let part = |i: usize| {
        qkv.clone()
            .slice([0..batch, 0..length, i * d_model..(i + 1) * d_model])
            .reshape([batch, length, heads, head_dim])
            .swap_dims(1, 2)
    };
    let scores = part(0)
        .matmul(part(1).transpose())
        .div_scalar((head_dim as f32).sqrt());
    let mut scores = scores.mask_fill(padding.reshape([batch, 1, 1, length]), -1.0e4);
    if causal {
        let future =
            burn::nn::attention::generate_autoregressive_mask(batch, length, &qkv.device());
        scores = scores.mask_fill(future.reshape([batch, 1, length, length]), -1.0e4);
    }
    let mut weights = burn::tensor::activation::softmax(scores, 3);
    if let Some((key, prob)) = dropout {
        weights = Tensor::from_dispatch(<Dispatch as StokeOps>::fused_dropout(
            weights.into_dispatch(),
            key,
            prob,
        ));
    }
    weights
        .matmul(part(2))
        .swap_dims(1, 2)
        .reshape([batch, length, d_model])
}

#[test]
fn attention_matches_burn_ops_forward_and_backward() {
    // (batch, length, heads, head_dim, causal, dropout): lengths below, at and over a block.
    let cases = [
        (2, 5, 1, 4, false, None),
        (3, 70, 2, 8, true, None),
        (2, 64, 4, 16, false, Some((9, 0.1))),
        (2, 131, 2, 4, true, Some((10, 0.3))),
    ];
    for device in devices() {
        for (n, &(batch, length, heads, head_dim, causal, dropout)) in cases.iter().enumerate() {
            let qkv = random([batch, length, 3 * heads * head_dim], n as u64, &device);
            // Texts of different lengths, all but the last padded; no padding when causal.
            let padding: Vec<bool> = (0..batch * length)
                .map(|i| !causal && i % length >= length - (i / length) * 2)
                .collect();
            let padding =
                Tensor::<2, Bool>::from_bool(TensorData::new(padding, [batch, length]), &device);
            let options = AttentionOptions {
                heads,
                causal,
                dropout,
            };
            let ours = Tensor::<3>::from_dispatch(<Dispatch as StokeOps>::fused_attention(
                qkv.clone().into_dispatch(),
                padding.clone().into_dispatch(),
                options,
            ));
            let theirs = attention_with_burn_ops(qkv.clone(), padding, heads, causal, dropout);
            close(
                &ours.clone().into_data(),
                &theirs.clone().into_data(),
                &format!("case {n}"),
            );
            let weights = random(ours.dims(), 50 + n as u64, &device).detach();
            let ours = (ours * weights.clone()).sum().backward();
            let theirs = (theirs * weights).sum().backward();
            close(
                &grad(&qkv, &ours),
                &grad(&qkv, &theirs),
                &format!("case {n} grad"),
            );
        }
    }
}

#[test]
fn linear_matches_burn_forward_and_backward() {
    for device in devices() {
        // 2-D and 3-D inputs; fewer rows than a weight-gradient block, and several blocks.
        for (n, (rows, inputs, outputs, bias)) in
            [(5, 7, 3, true), (1300, 33, 17, true), (600, 16, 8, false)]
                .into_iter()
                .enumerate()
        {
            let seed = 10 * n as u64;
            let x = random([rows / 5, 5, inputs], seed, &device);
            let weight = random([inputs, outputs], seed + 1, &device);
            let bias = bias.then(|| random([outputs], seed + 2, &device));
            let ours = linear(x.clone(), weight.clone(), bias.clone());
            let theirs = burn::tensor::module::linear(x.clone(), weight.clone(), bias.clone());
            close(
                &ours.clone().into_data(),
                &theirs.clone().into_data(),
                &format!("case {n}"),
            );
            let weights = random(ours.dims(), seed + 3, &device).detach();
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
fn max_pool_matches_burn_forward_and_backward() {
    for device in devices() {
        // Odd sizes: the last row and column belong to no window.
        for (n, (shape, kernel)) in [([3, 4, 9, 11], [2, 2]), ([2, 3, 12, 12], [3, 2])]
            .into_iter()
            .enumerate()
        {
            let x = random(shape, 40 + n as u64, &device);
            let ours = max_pool2d(x.clone(), kernel);
            let theirs = burn::nn::pool::MaxPool2dConfig::new(kernel)
                .init()
                .forward(x.clone());
            close(
                &ours.clone().into_data(),
                &theirs.clone().into_data(),
                "max pool",
            );
            let weights = random(ours.dims(), 60 + n as u64, &device).detach();
            let ours = (ours * weights.clone()).sum().backward();
            let theirs = (theirs * weights).sum().backward();
            close(&grad(&x, &ours), &grad(&x, &theirs), "max pool grad");
        }
    }
}
