//! A GPT-2-style language model: token plus learned position embeddings, pre-norm blocks
//! (norm, causal attention, add; norm, feed forward with the tanh-approximated GELU, add), a
//! final layer norm, and next-token logits from the token embedding itself (tied weights).
//!
//! The computation is Hugging Face's `GPT2LMHeadModel` in eval mode, dropout in the same
//! places in training. How its parameters are named in a Hugging Face checkpoint (`wte`,
//! `h.N.attn.c_attn`, …) is `weights::hf`'s business; the names here are stoke's.

use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::encoder::{EncoderConfig, FeedForward, SelfAttention, layer_norm_with};
use super::{
    Dropout, builtin_forward, check_dropout, check_sizes, check_transformer, fits_positions,
    no_padding, positions, vocabulary, wrong_data,
};
use crate::config::{Activation, Gpt2Config};
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::task::{Output, Task};

#[derive(Module, Debug)]
struct Gpt2Block {
    ln_1: LayerNorm,
    attention: SelfAttention,
    ln_2: LayerNorm,
    mlp: FeedForward,
    dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct Gpt2 {
    wte: Embedding,
    wpe: Embedding,
    dropout: Dropout,
    blocks: Vec<Gpt2Block>,
    ln_f: LayerNorm,
    #[module(skip)]
    epsilon: f64,
}

impl super::Model for Gpt2 {
    const KIND: &'static str = "gpt2";
    type Config = Gpt2Config;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &Gpt2Config, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        let DataSpec::LanguageModel {
            vocab_size,
            context_length,
            ..
        } = spec
        else {
            return Err(wrong_data(Self::KIND, spec));
        };
        let vocab = vocabulary(config.vocab_size, *vocab_size)?;
        let positions = config.max_positions.unwrap_or(*context_length);
        fits_positions("data.context_length", *context_length, positions)?;
        Ok(Self::build(config, vocab, positions, device))
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &Gpt2Config) -> Vec<(String, String)> {
        let mut problems = check_transformer(
            ("hidden_size", config.hidden()),
            ("num_heads", config.heads()),
            ("num_layers", config.layers()),
            ("intermediate_size", config.intermediate()),
        );
        problems.extend(check_dropout("dropout", config.dropout_prob()));
        problems.extend(check_sizes(
            &[
                ("vocab_size", config.vocab_size),
                ("max_positions", config.max_positions),
            ],
            config.epsilon(),
        ));
        problems
    }

    // The tied output projection is the token embedding: nothing to start fresh.

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Sequences(ids) => Some(self.logits(ids)),
            _ => None,
        }
    }
}

impl Gpt2 {
    /// A GPT-2 of `config`'s shape over `vocab` tokens with `positions` learned positions.
    pub fn build(config: &Gpt2Config, vocab: usize, positions: usize, device: &Device) -> Self {
        let hidden = config.hidden();
        let dropout = config.dropout_prob();
        // GPT-2's N(0, 0.02): the output logits are dot products with the token rows.
        let embedding = |count| {
            EmbeddingConfig::new(count, hidden)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(hidden)
                .with_epsilon(config.epsilon())
                .init(device)
        };
        let block = EncoderConfig {
            d_model: hidden,
            d_ff: config.intermediate(),
            n_heads: config.heads(),
            n_layers: config.layers(),
            dropout,
            activation: Activation::GeluTanh,
        };
        // GPT-2 drops out after the feed-forward block, not between its layers.
        let mlp = EncoderConfig {
            dropout: 0.0,
            ..block
        };
        Self {
            wte: embedding(vocab),
            wpe: embedding(positions),
            dropout: Dropout::new(dropout),
            blocks: (0..config.layers())
                .map(|_| Gpt2Block {
                    ln_1: norm(),
                    attention: SelfAttention::new(&block, device),
                    ln_2: norm(),
                    mlp: FeedForward::new(&mlp, device),
                    dropout: Dropout::new(dropout),
                })
                .collect(),
            ln_f: norm(),
            epsilon: config.epsilon(),
        }
    }

    /// Next-token logits at every position, `[batch × length, vocab]`.
    pub fn logits(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        let [batch, length] = ids.dims();
        let (positions, no_padding) = (positions(&ids), no_padding(&ids));
        let x = self.wte.forward(ids) + self.wpe.forward(positions);
        let x = self.dropout.forward(x);
        let x = self.blocks.iter().fold(x, |x, block| {
            let normed = layer_norm_with(&block.ln_1, x.clone(), self.epsilon);
            let attended = block.attention.forward(normed, no_padding.clone(), true);
            let x = x + block.dropout.forward(attended);
            let normed = layer_norm_with(&block.ln_2, x.clone(), self.epsilon);
            x + block.dropout.forward(block.mlp.forward(normed))
        });
        let x = layer_norm_with(&self.ln_f, x, self.epsilon);
        let [_, _, hidden] = x.dims();
        x.reshape([batch * length, hidden])
            .matmul(self.wte.weight.val().transpose()) // [b·l, vocab]
    }

    /// The number of token embeddings and positions the model was built with.
    pub fn sizes(&self) -> (usize, usize) {
        let [vocab, _] = self.wte.weight.dims();
        let [positions, _] = self.wpe.weight.dims();
        (vocab, positions)
    }
}
