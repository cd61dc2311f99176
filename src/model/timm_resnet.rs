//! timm's and torchvision's ImageNet ResNet (`kind = "timm-resnet"`): a 7×7 stride-2 stem
//! with batch norm and a 3×3 max pool, four stages of basic (ResNet-18/34) or bottleneck
//! (ResNet-26/50/101/152) blocks whose first block strides (the bottleneck on its 3×3
//! convolution, as torchvision's "v1.5"), global average pooling and a linear `fc` head.
//! Module paths are timm's (`conv1`, `bn1`, `layer1.0.conv1`, …, `fc`) but for the
//! projection shortcut, timm's `downsample.0`/`.1`, which `weights::timm` names here
//! `downsample.conv`/`.norm`. Batch norm keeps its running statistics in every record and
//! normalises with them in evaluation.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::{builtin_forward, convolve, image_classes, in_f32, project};
use crate::config::TimmResnetConfig;
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::task::{Output, Task};

/// The architectures timm names: bottleneck blocks or not, and blocks per stage.
pub const ARCHITECTURES: [(&str, bool, [usize; 4]); 6] = [
    ("resnet18", false, [2, 2, 2, 2]),
    ("resnet26", true, [2, 2, 2, 2]),
    ("resnet34", false, [3, 4, 6, 3]),
    ("resnet50", true, [3, 4, 6, 3]),
    ("resnet101", true, [3, 4, 23, 3]),
    ("resnet152", true, [3, 8, 36, 3]),
];

/// The shape a config describes.
struct Shape {
    bottleneck: bool,
    layers: Vec<usize>,
    channels: Vec<usize>,
}

/// Channels of the stem (timm's `inplanes` for its plain stem).
const STEM: usize = 64;

fn shape(config: &TimmResnetConfig) -> Result<Shape, String> {
    let (_, bottleneck, layers) = ARCHITECTURES
        .iter()
        .find(|(name, ..)| *name == config.architecture)
        .ok_or_else(|| unknown_architecture(&config.architecture))?;
    Ok(Shape {
        bottleneck: *bottleneck,
        layers: config.layers.clone().unwrap_or(layers.to_vec()),
        channels: config.channels.clone().unwrap_or(vec![64, 128, 256, 512]),
    })
}

/// Why an architecture name is refused: it is named, with the ones stoke builds.
pub fn unknown_architecture(name: &str) -> String {
    let known: Vec<&str> = ARCHITECTURES.iter().map(|(name, ..)| *name).collect();
    format!(
        "architecture \"{name}\" is not one stoke builds; it builds {}",
        known.join(", ")
    )
}

#[derive(Module, Debug)]
pub struct TimmResnet {
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: MaxPool2d,
    layer1: Vec<Block>,
    layer2: Vec<Block>,
    layer3: Vec<Block>,
    layer4: Vec<Block>,
    fc: Linear,
}

impl super::Model for TimmResnet {
    const KIND: &'static str = "timm-resnet";
    type Config = TimmResnetConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &TimmResnetConfig, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        let (input, classes) = image_classes(Self::KIND, spec)?;
        let shape = shape(config)?;
        let stem = STEM;
        let mut inputs = stem;
        let mut stages = Vec::with_capacity(4);
        for (stage, (&blocks, &width)) in shape.layers.iter().zip(&shape.channels).enumerate() {
            let stride = if stage == 0 { 1 } else { 2 };
            let stage: Vec<Block> = (0..blocks)
                .map(|block| {
                    let stride = if block == 0 { stride } else { 1 };
                    let made = Block::new(inputs, width, stride, shape.bottleneck, device);
                    inputs = Block::outputs(width, shape.bottleneck);
                    made
                })
                .collect();
            stages.push(stage);
        }
        let [layer1, layer2, layer3, layer4]: [Vec<Block>; 4] = stages
            .try_into()
            .map_err(|_| "layers and channels need four values each".to_string())?;
        Ok(Self {
            conv1: conv(input.channels, stem, 7, 2, device),
            bn1: BatchNormConfig::new(stem).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            fc: LinearConfig::new(inputs, classes).init(device),
        })
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &TimmResnetConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Err(problem) = shape(config) {
            problems.push(("architecture".into(), problem));
        }
        for (key, values) in [("layers", &config.layers), ("channels", &config.channels)] {
            if let Some(values) = values
                && (values.len() != 4 || values.contains(&0))
            {
                problems.push((
                    key.into(),
                    format!("needs four values of at least 1, got {values:?}"),
                ));
            }
        }
        problems
    }

    fn head() -> &'static [&'static str] {
        &["fc"]
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Images(images) => Some(self.logits(images)),
            _ => None,
        }
    }
}

impl TimmResnet {
    pub fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = relu(norm(&self.bn1, convolve(&self.conv1, images))); // [batch, stem, h/2, w/2]
        let x = self.maxpool.forward(x); // [batch, stem, h/4, w/4]
        let blocks = self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4);
        let x = blocks.fold(x, |x, block| block.forward(x)); // [batch, features, h/32, w/32]
        let x = x.mean_dim(3).mean_dim(2).flatten(1, 3); // [batch, features]
        project(&self.fc, x) // [batch, classes]
    }
}

/// A convolution without bias, padded to keep the size at stride 1 (odd kernels).
fn conv(inputs: usize, outputs: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([inputs, outputs], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

fn norm(layer: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    in_f32(x, |x| super::batch_norm::forward(layer, x))
}

/// A residual block: two 3×3 convolutions (basic), or 1×1, 3×3, 1×1 with four times the
/// width out (bottleneck); the shortcut projects when the shape changes.
#[derive(Module, Debug)]
struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Option<Conv2d>,
    bn3: Option<BatchNorm>,
    downsample: Option<Downsample>,
}

/// timm's `downsample` (`nn.Sequential(conv, norm)`): a strided 1×1 projection.
#[derive(Module, Debug)]
struct Downsample {
    conv: Conv2d,
    norm: BatchNorm,
}

impl Block {
    fn outputs(width: usize, bottleneck: bool) -> usize {
        if bottleneck { width * 4 } else { width }
    }

    fn new(inputs: usize, width: usize, stride: usize, bottleneck: bool, device: &Device) -> Self {
        let outputs = Self::outputs(width, bottleneck);
        let downsample = (stride != 1 || inputs != outputs).then(|| Downsample {
            conv: conv(inputs, outputs, 1, stride, device),
            norm: BatchNormConfig::new(outputs).init(device),
        });
        let bn = |channels| BatchNormConfig::new(channels).init(device);
        match bottleneck {
            true => Self {
                conv1: conv(inputs, width, 1, 1, device),
                bn1: bn(width),
                conv2: conv(width, width, 3, stride, device),
                bn2: bn(width),
                conv3: Some(conv(width, outputs, 1, 1, device)),
                bn3: Some(bn(outputs)),
                downsample,
            },
            false => Self {
                conv1: conv(inputs, width, 3, stride, device),
                bn1: bn(width),
                conv2: conv(width, width, 3, 1, device),
                bn2: bn(width),
                conv3: None,
                bn3: None,
                downsample,
            },
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some(projection) => norm(&projection.norm, convolve(&projection.conv, x.clone())),
            None => x.clone(),
        };
        let y = relu(norm(&self.bn1, convolve(&self.conv1, x)));
        let y = norm(&self.bn2, convolve(&self.conv2, y));
        let y = match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => norm(bn3, convolve(conv3, relu(y))),
            _ => y,
        };
        relu(y + shortcut)
    }
}
