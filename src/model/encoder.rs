//! The pre-norm transformer encoder both text models stand on, built on stoke's fused kernels
//! (one attention op for all heads over a fused q/k/v projection, layer norm, exact GELU,
//! dropout). Its parameters, their initialisation and their names (`layers.N.mha.query`, …,
//! `pwff.linear_inner`, `norm_1`, `norm_2`) are those of burn's `TransformerEncoder` with
//! `norm_first`, so runs and artifacts saved with burn's encoder load into this one and the
//! exported weights keep their layout. As in burn, `norm_2` comes before attention and `norm_1`
//! before the feed-forward block.

use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use super::{Dropout, activate, project};
use crate::config::Activation;
use crate::kernels;

/// `LayerNormConfig`'s default, which every stoke model uses.
const LAYER_NORM_EPSILON: f64 = 1e-5;

/// burn's transformer initializer: Kaiming-uniform with gain 1/√3.
fn initializer() -> Initializer {
    Initializer::KaimingUniform {
        gain: 1.0 / 3f64.sqrt(),
        fan_out_only: false,
    }
}

/// The sizes and options of an encoder.
pub struct EncoderConfig {
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub dropout: f64,
    pub activation: Activation,
}

#[derive(Module, Debug)]
pub struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn new(config: &EncoderConfig, device: &Device) -> Self {
        Self {
            layers: (0..config.n_layers)
                .map(|_| EncoderLayer::new(config, device))
                .collect(),
        }
    }

    /// `x`: `[batch, length, d_model]`; keys are masked where `padding` (`[batch, length]`) is
    /// true, and each position sees only those before it when `causal`.
    pub fn forward(&self, x: Tensor<3>, padding: Tensor<2, Bool>, causal: bool) -> Tensor<3> {
        self.layers
            .iter()
            .fold(x, |x, layer| layer.forward(x, padding.clone(), causal))
    }
}

#[derive(Module, Debug)]
struct EncoderLayer {
    mha: SelfAttention,
    pwff: FeedForward,
    norm_1: LayerNorm,
    norm_2: LayerNorm,
    dropout: Dropout,
}

impl EncoderLayer {
    fn new(config: &EncoderConfig, device: &Device) -> Self {
        // burn's order of construction, so the same seed draws the same initial weights.
        let mha = SelfAttention::new(config, device);
        let norm = || LayerNormConfig::new(config.d_model).init(device);
        let (norm_1, norm_2) = (norm(), norm());
        Self {
            mha,
            norm_1,
            norm_2,
            dropout: Dropout::new(config.dropout),
            pwff: FeedForward::new(config, device),
        }
    }

    fn forward(&self, x: Tensor<3>, padding: Tensor<2, Bool>, causal: bool) -> Tensor<3> {
        let attended = self
            .mha
            .forward(layer_norm(&self.norm_2, x.clone()), padding, causal);
        let x = x + self.dropout.forward(attended);
        let fed = self.pwff.forward(layer_norm(&self.norm_1, x.clone()));
        x + self.dropout.forward(fed)
    }
}

/// `norm`'s parameters applied by stoke's layer-norm kernel. f16 inputs are normalised in f32,
/// as `LayerNorm::forward` does: f16 cannot hold the sums of squares.
pub fn layer_norm(norm: &LayerNorm, x: Tensor<3>) -> Tensor<3> {
    layer_norm_with(norm, x, LAYER_NORM_EPSILON)
}

/// [`layer_norm`] with its own ε (burn's `LayerNorm` keeps its ε private; BERT uses 1e-12).
pub fn layer_norm_with(norm: &LayerNorm, x: Tensor<3>, epsilon: f64) -> Tensor<3> {
    let beta = match &norm.beta {
        Some(beta) => beta.val(),
        None => norm.gamma.val().zeros_like(),
    };
    let dtype = x.dtype();
    if dtype == DType::F16 {
        let (x, gamma, beta) = (x.cast(FloatDType::F32), norm.gamma.val(), beta);
        let normalized = kernels::layer_norm(
            x,
            gamma.cast(FloatDType::F32),
            beta.cast(FloatDType::F32),
            epsilon,
        );
        return normalized.cast(FloatDType::F16);
    }
    kernels::layer_norm(x, norm.gamma.val(), beta, epsilon)
}

/// Multi-head self-attention: q, k and v projections run as one, all heads in one kernel.
#[derive(Module, Debug)]
pub(super) struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    dropout: Dropout,
    #[module(skip)]
    heads: usize,
}

impl SelfAttention {
    pub(super) fn new(config: &EncoderConfig, device: &Device) -> Self {
        let linear = || {
            LinearConfig::new(config.d_model, config.d_model)
                .with_initializer(initializer())
                .init(device)
        };
        Self {
            query: linear(),
            key: linear(),
            value: linear(),
            output: linear(),
            dropout: Dropout::new(config.dropout),
            heads: config.n_heads,
        }
    }

    pub(super) fn forward(
        &self,
        x: Tensor<3>,
        padding: Tensor<2, Bool>,
        causal: bool,
    ) -> Tensor<3> {
        // One projection for q, k and v: their weights side by side, [d, 3d].
        let projections = [&self.query, &self.key, &self.value];
        let weight = Tensor::cat(projections.map(|p| p.weight.val()).to_vec(), 1);
        let bias = projections
            .iter()
            .map(|p| p.bias.as_ref().map(|b| b.val()))
            .collect::<Option<Vec<_>>>()
            .map(|biases| Tensor::cat(biases, 0));
        let qkv = kernels::linear(x.clone(), weight, bias); // [batch, length, 3d]
        let dropout = self.dropout.active_prob(&x);
        let context = kernels::attention(qkv, padding, self.heads, causal, dropout);
        project(&self.output, context)
    }
}

/// Two linear layers with the activation between them (dropout after the activation).
#[derive(Module, Debug)]
pub(super) struct FeedForward {
    linear_inner: Linear,
    linear_outer: Linear,
    dropout: Dropout,
    #[module(skip)]
    activation: Activation,
}

impl FeedForward {
    pub(super) fn new(config: &EncoderConfig, device: &Device) -> Self {
        let linear = |inputs, outputs| {
            LinearConfig::new(inputs, outputs)
                .with_initializer(initializer())
                .init(device)
        };
        Self {
            linear_inner: linear(config.d_model, config.d_ff),
            linear_outer: linear(config.d_ff, config.d_model),
            dropout: Dropout::new(config.dropout),
            activation: config.activation,
        }
    }

    pub(super) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = activate(self.activation, project(&self.linear_inner, x));
        project(&self.linear_outer, self.dropout.forward(x))
    }
}
