//! timm's Vision Transformer (`kind = "timm-vit"`): the image cut into square patches by a
//! strided convolution, a class token and learned positions, pre-norm blocks (layer norm with
//! ε = 1e-6, fused q/k/v attention, an exact-GELU MLP), a final layer norm and a linear head on
//! the class token. Module paths are timm's (`patch_embed.proj`, `cls_token`, `pos_embed`,
//! `blocks.N.attn.qkv`, `blocks.N.mlp.fc1`, `norm`, `head`), so timm folders load by name.
//! The positions are learned for one image size: the model takes images of that size only.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::encoder::layer_norm_with;
use super::{activate, builtin_forward, convolve, image_classes, project};
use crate::config::{Activation, TimmVitConfig};
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::kernels;
use crate::task::{Output, Task};

/// timm's names: (architecture, embedding width, blocks, heads, patch side).
pub const ARCHITECTURES: [(&str, usize, usize, usize, usize); 3] = [
    ("vit_tiny_patch16_224", 192, 12, 3, 16),
    ("vit_small_patch16_224", 384, 12, 6, 16),
    ("vit_base_patch16_224", 768, 12, 12, 16),
];
const EPSILON: f64 = 1e-6;

/// Why an architecture name is refused: it is named, with the ones stoke builds.
pub fn unknown_architecture(name: &str) -> String {
    let known: Vec<&str> = ARCHITECTURES.iter().map(|(name, ..)| *name).collect();
    format!(
        "architecture \"{name}\" is not one stoke builds; it builds {}",
        known.join(", ")
    )
}

/// (width, blocks, heads, patch, MLP width) a config describes.
pub fn shape(config: &TimmVitConfig) -> Result<(usize, usize, usize, usize, usize), String> {
    let (_, width, depth, heads, patch) = ARCHITECTURES
        .iter()
        .find(|(name, ..)| *name == config.architecture)
        .ok_or_else(|| unknown_architecture(&config.architecture))?;
    let width = config.embed_dim.unwrap_or(*width);
    // timm's `int(dim * mlp_ratio)`; the nudge keeps a ratio read as hidden / width (as a
    // transformers config gives it) from truncating one below.
    let mlp = (width as f64 * config.mlp_ratio.unwrap_or(4.0) + 1e-6) as usize;
    Ok((
        width,
        config.depth.unwrap_or(*depth),
        config.num_heads.unwrap_or(*heads),
        config.patch_size.unwrap_or(*patch),
        mlp,
    ))
}

#[derive(Module, Debug)]
pub struct TimmVit {
    patch_embed: PatchEmbed,
    cls_token: Param<Tensor<3>>,
    pos_embed: Param<Tensor<3>>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Linear,
    #[module(skip)]
    epsilon: f64,
}

#[derive(Module, Debug)]
struct PatchEmbed {
    proj: Conv2d,
}

impl super::Model for TimmVit {
    const KIND: &'static str = "timm-vit";
    type Config = TimmVitConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &TimmVitConfig, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        let (input, classes) = image_classes(Self::KIND, spec)?;
        let (width, depth, heads, patch, mlp) = shape(config)?;
        if input.height % patch != 0 || input.width % patch != 0 {
            return Err(format!(
                "images of {input} do not cut into {patch}×{patch} patches; use a data.image.size that is a multiple of {patch}"
            ));
        }
        let patches = (input.height / patch) * (input.width / patch);
        let epsilon = config.layer_norm_eps.unwrap_or(EPSILON);
        let normal = |shape: [usize; 3]| {
            Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, 0.02),
                device,
            ))
        };
        Ok(Self {
            patch_embed: PatchEmbed {
                proj: Conv2dConfig::new([input.channels, width], [patch, patch])
                    .with_stride([patch, patch])
                    .init(device),
            },
            cls_token: normal([1, 1, width]),
            pos_embed: normal([1, patches + 1, width]),
            blocks: (0..depth)
                .map(|_| Block::new(width, heads, mlp, epsilon, device))
                .collect(),
            norm: LayerNormConfig::new(width).init(device),
            head: LinearConfig::new(width, classes).init(device),
            epsilon,
        })
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &TimmVitConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match shape(config) {
            Err(problem) => problems.push(("architecture".into(), problem)),
            Ok((width, _, heads, patch, _)) => {
                if heads == 0 || !width.is_multiple_of(heads) {
                    problems.push((
                        "num_heads".into(),
                        format!("must divide embed_dim ({width}), got {heads}"),
                    ));
                }
                if patch == 0 {
                    problems.push(("patch_size".into(), "must be at least 1".into()));
                }
            }
        }
        problems
    }

    fn head() -> &'static [&'static str] {
        &["head"]
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Images(images) => Some(self.logits(images)),
            _ => None,
        }
    }
}

impl TimmVit {
    pub fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let patches = convolve(&self.patch_embed.proj, images); // [batch, width, h/p, w/p]
        let [batch, width, rows, cols] = patches.dims();
        let x = patches.reshape([batch, width, rows * cols]).swap_dims(1, 2); // [batch, n, width]
        let cls = self.cls_token.val().expand([batch, 1, width]);
        let x = Tensor::cat(vec![cls, x], 1) + self.pos_embed.val(); // [batch, n + 1, width]
        let length = rows * cols + 1;
        let padding = Tensor::<2, Int>::zeros([batch, length], &x.device()).equal_elem(1);
        let x = self
            .blocks
            .iter()
            .fold(x, |x, block| block.forward(x, padding.clone()));
        let x = layer_norm_with(&self.norm, x, self.epsilon);
        let token = x.slice([0..batch, 0..1, 0..width]).reshape([batch, width]); // [batch, width]
        project(&self.head, token) // [batch, classes]
    }
}

#[derive(Module, Debug)]
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    #[module(skip)]
    epsilon: f64,
}

#[derive(Module, Debug)]
struct Attention {
    qkv: Linear,
    proj: Linear,
    #[module(skip)]
    heads: usize,
}

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    fn new(width: usize, heads: usize, mlp: usize, epsilon: f64, device: &Device) -> Self {
        Self {
            norm1: LayerNormConfig::new(width).init(device),
            attn: Attention {
                qkv: LinearConfig::new(width, 3 * width).init(device),
                proj: LinearConfig::new(width, width).init(device),
                heads,
            },
            norm2: LayerNormConfig::new(width).init(device),
            mlp: Mlp {
                fc1: LinearConfig::new(width, mlp).init(device),
                fc2: LinearConfig::new(mlp, width).init(device),
            },
            epsilon,
        }
    }

    fn forward(&self, x: Tensor<3>, padding: Tensor<2, Bool>) -> Tensor<3> {
        // timm's fused qkv: q, k and v side by side, each head's columns together.
        let qkv = project(
            &self.attn.qkv,
            layer_norm_with(&self.norm1, x.clone(), self.epsilon),
        );
        let context = kernels::attention(qkv, padding, self.attn.heads, false, 0.0);
        let x = x + project(&self.attn.proj, context);
        let hidden = activate(
            Activation::Gelu,
            project(
                &self.mlp.fc1,
                layer_norm_with(&self.norm2, x.clone(), self.epsilon),
            ),
        );
        x + project(&self.mlp.fc2, hidden)
    }
}
