//! Transformers over tokens, on stoke's encoder (`encoder.rs`): a text classifier (padding
//! masked, pooled, a linear head) and a decoder-only language model (causally masked, with
//! optionally tied input and output embeddings). Both use pre-norm layers and a final layer
//! norm, as GPT-2 does.

use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::prelude::*;

use super::encoder::{Encoder, EncoderConfig, layer_norm};
use super::{
    Dropout, builtin_forward, check_dropout, check_transformer, no_padding, positions, project,
    wrong_data,
};
use crate::config::{Activation, LmConfig, Pooling, TransformerConfig};
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::task::{Output, Task};

/// Token plus learned position embeddings, then dropout.
#[derive(Module, Debug)]
struct Embeddings {
    tokens: Embedding,
    positions: Embedding,
    dropout: Dropout,
}

impl Embeddings {
    fn new(vocab: usize, positions: usize, d_model: usize, dropout: f64, device: &Device) -> Self {
        // GPT-2's N(0, 0.02), not burn's N(0, 1): with tied weights the output logits are
        // dot products with these rows, and unit-variance rows start the loss near 40 nats.
        let small = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        Self {
            tokens: EmbeddingConfig::new(vocab, d_model)
                .with_initializer(small.clone())
                .init(device),
            positions: EmbeddingConfig::new(positions, d_model)
                .with_initializer(small)
                .init(device),
            dropout: Dropout::new(dropout),
        }
    }

    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let positions = positions(&ids);
        let x = self.tokens.forward(ids) + self.positions.forward(positions); // [batch, length, d]
        self.dropout.forward(x)
    }
}

fn encoder(
    d_model: usize,
    d_ff: usize,
    n_heads: usize,
    n_layers: usize,
    dropout: f64,
    activation: Activation,
    device: &Device,
) -> Encoder {
    let config = EncoderConfig {
        d_model,
        d_ff,
        n_heads,
        n_layers,
        dropout,
        activation,
    };
    Encoder::new(&config, device)
}

#[derive(Module, Debug)]
pub struct TextClassifier {
    embeddings: Embeddings,
    encoder: Encoder,
    norm: LayerNorm,
    head: Linear,
    #[module(skip)]
    pooling: Pooling,
}

impl super::Model for TextClassifier {
    const KIND: &'static str = "text-classifier";
    type Config = TransformerConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &TransformerConfig, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        match spec {
            DataSpec::TextClassification {
                classes,
                vocab_size,
                max_length,
                ..
            } => Ok(Self::build(
                config,
                *vocab_size,
                *max_length,
                classes.len(),
                device,
            )),
            _ => Err(wrong_data(Self::KIND, spec)),
        }
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &TransformerConfig) -> Vec<(String, String)> {
        let mut problems = check_transformer(
            ("d_model", config.d_model),
            ("n_heads", config.n_heads),
            ("n_layers", config.n_layers),
            ("d_ff", config.d_ff),
        );
        problems.extend(check_dropout("dropout", config.dropout));
        problems
    }

    fn head() -> &'static [&'static str] {
        &["head"]
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Tokens { ids, padding } => Some(self.logits(ids, padding)),
            _ => None,
        }
    }
}

impl TextClassifier {
    pub fn build(
        config: &TransformerConfig,
        vocab: usize,
        max_length: usize,
        classes: usize,
        device: &Device,
    ) -> Self {
        Self {
            embeddings: Embeddings::new(vocab, max_length, config.d_model, config.dropout, device),
            encoder: encoder(
                config.d_model,
                config.d_ff,
                config.n_heads,
                config.n_layers,
                config.dropout,
                config.activation,
                device,
            ),
            norm: LayerNormConfig::new(config.d_model).init(device),
            head: LinearConfig::new(config.d_model, classes).init(device),
            pooling: config.pooling,
        }
    }

    /// `padding` is true at the positions after each text's end.
    pub fn logits(&self, ids: Tensor<2, Int>, padding: Tensor<2, Bool>) -> Tensor<2> {
        let [batch, length] = ids.dims();
        let x = self.embeddings.forward(ids);
        let x = self.encoder.forward(x, padding.clone(), false);
        let x = layer_norm(&self.norm, x); // [batch, length, d]
        let [_, _, d_model] = x.dims();
        let padded = padding.reshape([batch, length, 1]);
        let pooled = match self.pooling {
            Pooling::Mean => {
                let real = padded.bool_not().float().cast(x.dtype()); // [batch, length, 1]
                let sum = (x * real.clone()).sum_dim(1); // [batch, 1, d]
                sum / real.sum_dim(1)
            }
            Pooling::Max => x
                .mask_fill(padded.expand([batch, length, d_model]), f32::NEG_INFINITY)
                .max_dim(1),
        };
        project(&self.head, pooled.reshape([batch, d_model])) // [batch, classes]
    }
}

#[derive(Module, Debug)]
pub struct LanguageModel {
    embeddings: Embeddings,
    encoder: Encoder,
    norm: LayerNorm,
    /// The output projection, unless it is the token embedding (tied weights).
    output: Option<Linear>,
}

impl super::Model for LanguageModel {
    const KIND: &'static str = "lm";
    type Config = LmConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &LmConfig, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        match spec {
            DataSpec::LanguageModel {
                vocab_size,
                context_length,
                ..
            } => Ok(Self::build(config, *vocab_size, *context_length, device)),
            _ => Err(wrong_data(Self::KIND, spec)),
        }
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &LmConfig) -> Vec<(String, String)> {
        let mut problems = check_transformer(
            ("d_model", config.d_model),
            ("n_heads", config.n_heads),
            ("n_layers", config.n_layers),
            ("d_ff", config.d_ff),
        );
        problems.extend(check_dropout("dropout", config.dropout));
        problems
    }

    fn head() -> &'static [&'static str] {
        &["output"]
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Sequences(ids) => Some(self.logits(ids)),
            _ => None,
        }
    }
}

impl LanguageModel {
    pub fn build(config: &LmConfig, vocab: usize, context: usize, device: &Device) -> Self {
        Self {
            embeddings: Embeddings::new(vocab, context, config.d_model, config.dropout, device),
            encoder: encoder(
                config.d_model,
                config.d_ff,
                config.n_heads,
                config.n_layers,
                config.dropout,
                config.activation,
                device,
            ),
            norm: LayerNormConfig::new(config.d_model).init(device),
            output: (!config.tie_weights).then(|| {
                LinearConfig::new(config.d_model, vocab)
                    .with_bias(false)
                    .init(device)
            }),
        }
    }

    /// Next-token logits at every position, `[batch × length, vocab]`.
    pub fn logits(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        let [batch, length] = ids.dims();
        let no_padding = no_padding(&ids);
        let x = self.embeddings.forward(ids);
        let x = self.encoder.forward(x, no_padding, true);
        let x = layer_norm(&self.norm, x); // [batch, length, d]
        let [_, _, d_model] = x.dims();
        let x = x.reshape([batch * length, d_model]);
        match &self.output {
            Some(output) => project(output, x),
            None => x.matmul(self.embeddings.tokens.weight.val().transpose()), // [b·l, vocab]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TransformerConfig {
        TransformerConfig {
            d_model: 16,
            n_layers: 2,
            n_heads: 2,
            d_ff: 32,
            activation: Activation::Gelu,
            dropout: 0.0,
            pooling: Pooling::Mean,
        }
    }

    #[test]
    fn padding_changes_nothing_for_the_real_tokens() {
        let device = Device::flex();
        device.seed(3);
        for pooling in [Pooling::Mean, Pooling::Max] {
            let model =
                TextClassifier::build(&TransformerConfig { pooling, ..tiny() }, 20, 8, 3, &device);
            let short = Tensor::<2, Int>::from_ints([[5, 6, 7]], &device);
            let padded = Tensor::<2, Int>::from_ints([[5, 6, 7, 0, 0, 0]], &device);
            let no_padding = Tensor::<2, Bool>::from_bool(TensorData::from([[false; 3]]), &device);
            let padding = Tensor::<2, Bool>::from_bool(
                TensorData::from([[false, false, false, true, true, true]]),
                &device,
            );
            let a = model.logits(short, no_padding).into_data();
            let b = model.logits(padded, padding).into_data();
            a.assert_approx_eq::<f32>(&b, burn::tensor::Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn the_language_model_is_causal() {
        let device = Device::flex();
        device.seed(4);
        let config = LmConfig {
            d_model: 16,
            n_layers: 2,
            n_heads: 2,
            d_ff: 32,
            activation: Activation::Gelu,
            dropout: 0.0,
            tie_weights: true,
        };
        let model = LanguageModel::build(&config, 12, 6, &device);
        let a = model.logits(Tensor::<2, Int>::from_ints([[1, 2, 3, 4]], &device));
        let b = model.logits(Tensor::<2, Int>::from_ints([[1, 2, 3, 9]], &device));
        assert_eq!(a.dims(), [4, 12]);
        // Changing the last token changes only the last position's prediction.
        let first_three = |t: Tensor<2>| t.slice([0..3, 0..12]).into_data();
        first_three(a.clone()).assert_approx_eq::<f32>(
            &first_three(b.clone()),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        let last = |t: Tensor<2>| t.slice([3..4, 0..12]).into_data();
        assert_ne!(last(a), last(b));
    }
}
