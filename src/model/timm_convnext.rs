//! timm's ConvNeXt (`kind = "timm-convnext"`): a 4×4 stride-4 patch stem with a channels-first
//! layer norm, four stages (each after the first opens with a layer norm and a 2×2 stride-2
//! convolution) of blocks — a depthwise 7×7 convolution, a layer norm over channels, an
//! exact-GELU MLP four times as wide and a learned per-channel scale on the residual branch —
//! then average pooling, a layer norm and the linear head. Module paths are timm's but for its
//! `nn.Sequential` stem and downsampling (`stem.0`/`.1`, `downsample.0`/`.1`), which
//! `weights::timm` names `stem.conv`/`.norm` and `downsample.norm`/`.conv` here.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use super::encoder::layer_norm_with;
use super::{activate, builtin_forward, convolve, image_classes, project};
use crate::config::{Activation, TimmConvnextConfig};
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::task::{Output, Task};

/// timm's names: (architecture, blocks per stage, stage widths).
pub const ARCHITECTURES: [(&str, [usize; 4], [usize; 4]); 3] = [
    ("convnext_tiny", [3, 3, 9, 3], [96, 192, 384, 768]),
    ("convnext_small", [3, 3, 27, 3], [96, 192, 384, 768]),
    ("convnext_base", [3, 3, 27, 3], [128, 256, 512, 1024]),
];
const EPSILON: f64 = 1e-6;
/// timm's `ls_init_value`: the residual scale's starting value.
const LAYER_SCALE: f32 = 1e-6;

pub fn shape(config: &TimmConvnextConfig) -> Result<(Vec<usize>, Vec<usize>), String> {
    let (_, depths, dims) = ARCHITECTURES
        .iter()
        .find(|(name, ..)| *name == config.architecture)
        .ok_or_else(|| {
            let known: Vec<&str> = ARCHITECTURES.iter().map(|(name, ..)| *name).collect();
            format!(
                "architecture \"{}\" is not one stoke builds; it builds {}",
                config.architecture,
                known.join(", ")
            )
        })?;
    Ok((
        config.depths.clone().unwrap_or(depths.to_vec()),
        config.dims.clone().unwrap_or(dims.to_vec()),
    ))
}

#[derive(Module, Debug)]
pub struct TimmConvnext {
    stem: Patchify,
    stages: Vec<Stage>,
    head: Head,
}

/// A strided convolution and a channels-first layer norm (the stem), or the reverse (a
/// stage's downsampling).
#[derive(Module, Debug)]
struct Patchify {
    conv: Conv2d,
    norm: LayerNorm,
}

#[derive(Module, Debug)]
struct Stage {
    downsample: Option<Patchify>,
    blocks: Vec<Block>,
}

#[derive(Module, Debug)]
struct Head {
    norm: LayerNorm,
    fc: Linear,
    #[module(skip)]
    epsilon: f64,
}

impl super::Model for TimmConvnext {
    const KIND: &'static str = "timm-convnext";
    type Config = TimmConvnextConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &TimmConvnextConfig, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        let (input, classes) = image_classes(Self::KIND, spec)?;
        let (depths, dims) = shape(config)?;
        let patchify = |inputs: usize, outputs: usize, side: usize, norm_width: usize| Patchify {
            conv: Conv2dConfig::new([inputs, outputs], [side, side])
                .with_stride([side, side])
                .init(device),
            norm: LayerNormConfig::new(norm_width).init(device),
        };
        let stages = (0..4)
            .map(|stage| Stage {
                downsample: (stage > 0)
                    .then(|| patchify(dims[stage - 1], dims[stage], 2, dims[stage - 1])),
                blocks: (0..depths[stage])
                    .map(|_| Block::new(dims[stage], device))
                    .collect(),
            })
            .collect();
        Ok(Self {
            stem: patchify(input.channels, dims[0], 4, dims[0]),
            stages,
            head: Head {
                norm: LayerNormConfig::new(dims[3]).init(device),
                fc: LinearConfig::new(dims[3], classes).init(device),
                epsilon: config.head_norm_eps.unwrap_or(EPSILON),
            },
        })
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &TimmConvnextConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Err(problem) = shape(config) {
            problems.push(("architecture".into(), problem));
        }
        for (key, values) in [("depths", &config.depths), ("dims", &config.dims)] {
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
        &["head.fc"]
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Images(images) => Some(self.logits(images)),
            _ => None,
        }
    }
}

impl TimmConvnext {
    pub fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = channels_first_norm(&self.stem.norm, convolve(&self.stem.conv, images)); // [batch, d0, h/4, w/4]
        let x = self.stages.iter().fold(x, |x, stage| {
            let x = match &stage.downsample {
                Some(down) => convolve(&down.conv, channels_first_norm(&down.norm, x)),
                None => x,
            };
            stage.blocks.iter().fold(x, |x, block| block.forward(x))
        }); // [batch, d3, h/32, w/32]
        let [batch, channels, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([batch, 1, channels]);
        let pooled =
            layer_norm_with(&self.head.norm, pooled, self.head.epsilon).reshape([batch, channels]);
        project(&self.head.fc, pooled) // [batch, classes]
    }
}

/// timm's `LayerNorm2d`: each pixel's channels normalised.
fn channels_first_norm(norm: &LayerNorm, x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, height, width] = x.dims();
    let pixels = x
        .permute([0, 2, 3, 1])
        .reshape([batch, height * width, channels]);
    layer_norm_with(norm, pixels, EPSILON)
        .reshape([batch, height, width, channels])
        .permute([0, 3, 1, 2])
}

#[derive(Module, Debug)]
struct Block {
    conv_dw: Conv2d,
    norm: LayerNorm,
    mlp: Mlp,
    gamma: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    fn new(width: usize, device: &Device) -> Self {
        Self {
            conv_dw: Conv2dConfig::new([width, width], [7, 7])
                .with_groups(width)
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .init(device),
            norm: LayerNormConfig::new(width).init(device),
            mlp: Mlp {
                fc1: LinearConfig::new(width, 4 * width).init(device),
                fc2: LinearConfig::new(4 * width, width).init(device),
            },
            gamma: Param::from_tensor(Tensor::full([width], LAYER_SCALE, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let y = convolve(&self.conv_dw, x.clone())
            .permute([0, 2, 3, 1])
            .reshape([batch, height * width, channels]); // [batch, pixels, channels]
        let y = layer_norm_with(&self.norm, y, EPSILON);
        let y = activate(Activation::Gelu, project(&self.mlp.fc1, y));
        let y = project(&self.mlp.fc2, y) * self.gamma.val().reshape([1, 1, channels]);
        let y = y
            .reshape([batch, height, width, channels])
            .permute([0, 3, 1, 2]);
        x + y
    }
}
