//! A small CIFAR-style residual network with batch norm: a 3×3 stem, three stages of basic
//! blocks at widths w, 2w and 4w (the last two halve the resolution), global average pooling
//! and a linear head. Works for 28×28 and 32×32 inputs alike.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::{ImageShape, builtin_forward, convolve, image_classes, in_f32, project};
use crate::config::ResnetConfig;
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::task::{Output, Task};

#[derive(Module, Debug)]
pub struct Resnet {
    stem: ConvNorm,
    blocks: Vec<BasicBlock>,
    pool: AdaptiveAvgPool2d,
    output: Linear,
}

impl super::Model for Resnet {
    const KIND: &'static str = "resnet";
    type Config = ResnetConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &ResnetConfig, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        let (input, classes) = image_classes(Self::KIND, spec)?;
        Ok(Self::build(config, input, classes, device))
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &ResnetConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if config.depth < 8 || !(config.depth - 2).is_multiple_of(6) {
            problems.push((
                "depth".into(),
                format!("must be 6n + 2 (8, 14, 20, …), got {}", config.depth),
            ));
        }
        if config.width == 0 {
            problems.push(("width".into(), "must be at least 1".into()));
        }
        problems
    }

    fn head() -> &'static [&'static str] {
        &["output"]
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Images(images) => Some(self.logits(images)),
            _ => None,
        }
    }
}

impl Resnet {
    pub fn build(
        config: &ResnetConfig,
        input: ImageShape,
        classes: usize,
        device: &Device,
    ) -> Self {
        let blocks_per_stage = (config.depth - 2) / 6;
        let stem = ConvNorm::new(input.channels, config.width, 3, 1, device);
        let mut blocks = Vec::new();
        let mut channels = config.width;
        for stage in 0..3 {
            let width = config.width << stage;
            for block in 0..blocks_per_stage {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(channels, width, stride, device));
                channels = width;
            }
        }
        Self {
            stem,
            blocks,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            output: LinearConfig::new(channels, classes).init(device),
        }
    }

    pub fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = relu(self.stem.forward(images)); // [batch, w, h, w]
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x)); // [batch, 4w, h/4, w/4]
        let x = self.pool.forward(x).flatten(1, 3); // [batch, 4w]
        project(&self.output, x) // [batch, classes]
    }
}

/// A convolution (padded to keep the size at stride 1) followed by batch norm.
#[derive(Module, Debug)]
struct ConvNorm {
    conv: Conv2d,
    norm: BatchNorm,
}

impl ConvNorm {
    fn new(inputs: usize, outputs: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        let pad = kernel / 2;
        Self {
            conv: Conv2dConfig::new([inputs, outputs], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(outputs).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        in_f32(convolve(&self.conv, x), |x| {
            super::batch_norm::forward(&self.norm, x)
        })
    }
}

#[derive(Module, Debug)]
struct BasicBlock {
    first: ConvNorm,
    second: ConvNorm,
    /// 1×1 projection when the block changes width or resolution.
    shortcut: Option<ConvNorm>,
}

impl BasicBlock {
    fn new(inputs: usize, outputs: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || inputs != outputs)
            .then(|| ConvNorm::new(inputs, outputs, 1, stride, device));
        Self {
            first: ConvNorm::new(inputs, outputs, 3, stride, device),
            second: ConvNorm::new(outputs, outputs, 3, 1, device),
            shortcut,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let residual = match &self.shortcut {
            Some(projection) => projection.forward(x.clone()),
            None => x.clone(),
        };
        let y = relu(self.first.forward(x));
        relu(self.second.forward(y) + residual)
    }
}
