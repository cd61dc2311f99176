//! A BERT-style encoder for text classification (BERT, MiniLM): token, position and
//! token-type embeddings summed and layer-normed, post-norm blocks (attention, add, norm; feed
//! forward with exact GELU, add, norm), a pooler (dense + tanh on the `[CLS]` state) and a
//! linear head on the pooled `[CLS]` vector or on the mean of the real tokens' states.
//!
//! The computation is Hugging Face's `BertForSequenceClassification` in eval mode, dropout in
//! the same places in training. How its parameters are named in a Hugging Face checkpoint is
//! `weights::hf`'s business; the names here are stoke's.

use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::tanh;

use super::encoder::{EncoderConfig, FeedForward, SelfAttention, layer_norm_with};
use super::{
    Dropout, builtin_forward, check_dropout, check_sizes, check_transformer, fits_positions,
    positions, project, vocabulary, wrong_data,
};
use crate::config::{Activation, BertConfig, BertPooling};
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::task::{Output, Task};

/// BERT's initializer, N(0, 0.02), for weights trained from scratch.
fn bert_init() -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: 0.02,
    }
}

#[derive(Module, Debug)]
struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
    dropout: Dropout,
}

#[derive(Module, Debug)]
struct BertLayer {
    attention: SelfAttention,
    attention_norm: LayerNorm,
    feed_forward: FeedForward,
    output_norm: LayerNorm,
    dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct Bert {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pooler: Linear,
    classifier: Linear,
    #[module(skip)]
    pooling: BertPooling,
    #[module(skip)]
    epsilon: f64,
}

impl super::Model for Bert {
    const KIND: &'static str = "bert";
    type Config = BertConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &BertConfig, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        let DataSpec::TextClassification {
            classes,
            vocab_size,
            max_length,
            ..
        } = spec
        else {
            return Err(wrong_data(Self::KIND, spec));
        };
        let vocab = vocabulary(config.vocab_size, *vocab_size)?;
        fits_positions("data.max_length", *max_length, config.positions())?;
        Ok(Self::build(config, vocab, classes.len(), device))
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &BertConfig) -> Vec<(String, String)> {
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
                ("type_vocab_size", config.type_vocab_size),
            ],
            config.epsilon(),
        ));
        problems
    }

    fn head() -> &'static [&'static str] {
        &["classifier"]
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Tokens { ids, padding } => Some(self.text_logits(ids, padding)),
            _ => None,
        }
    }
}

impl Bert {
    /// A BERT of `config`'s shape over `vocab` tokens with a head for `classes`.
    pub fn build(config: &BertConfig, vocab: usize, classes: usize, device: &Device) -> Self {
        let hidden = config.hidden();
        let dropout = config.dropout_prob();
        let embedding = |count| {
            EmbeddingConfig::new(count, hidden)
                .with_initializer(bert_init())
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(hidden)
                .with_epsilon(config.epsilon())
                .init(device)
        };
        let linear = |inputs, outputs| {
            LinearConfig::new(inputs, outputs)
                .with_initializer(bert_init())
                .init(device)
        };
        // The feed-forward block's own dropout (between its layers) is off: BERT drops out
        // after the second layer, which `BertLayer` does.
        let block = EncoderConfig {
            d_model: hidden,
            d_ff: config.intermediate(),
            n_heads: config.heads(),
            n_layers: config.layers(),
            dropout,
            activation: Activation::Gelu,
        };
        let feed_forward = EncoderConfig {
            dropout: 0.0,
            ..block
        };
        let embeddings = BertEmbeddings {
            word_embeddings: embedding(vocab),
            position_embeddings: embedding(config.positions()),
            token_type_embeddings: embedding(config.token_types()),
            layer_norm: norm(),
            dropout: Dropout::new(dropout),
        };
        let layers = (0..config.layers())
            .map(|_| BertLayer {
                attention: SelfAttention::new(&block, device),
                attention_norm: norm(),
                feed_forward: FeedForward::new(&feed_forward, device),
                output_norm: norm(),
                dropout: Dropout::new(dropout),
            })
            .collect();
        Self {
            embeddings,
            layers,
            pooler: linear(hidden, hidden),
            classifier: linear(hidden, classes),
            pooling: config.pooling,
            epsilon: config.epsilon(),
        }
    }

    /// Class logits `[batch, classes]` for token ids `[batch, length]`, `padding` true after
    /// each text's end; every token is of type 0 (one text per example).
    pub fn text_logits(&self, ids: Tensor<2, Int>, padding: Tensor<2, Bool>) -> Tensor<2> {
        let types = ids.zeros_like();
        self.logits(ids, types, padding)
    }

    /// Class logits for texts whose tokens have `types` (Hugging Face's `token_type_ids`).
    pub fn logits(
        &self,
        ids: Tensor<2, Int>,
        types: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
    ) -> Tensor<2> {
        let states = self.encode(ids, types, padding.clone());
        self.classify(states, padding)
    }

    /// The last layer's states `[batch, length, hidden]` (Hugging Face's `last_hidden_state`).
    pub fn encode(
        &self,
        ids: Tensor<2, Int>,
        types: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
    ) -> Tensor<3> {
        let (embeddings, positions) = (&self.embeddings, positions(&ids));
        let x = embeddings.word_embeddings.forward(ids)
            + embeddings.position_embeddings.forward(positions)
            + embeddings.token_type_embeddings.forward(types);
        let x = layer_norm_with(&embeddings.layer_norm, x, self.epsilon);
        let x = embeddings.dropout.forward(x);
        self.layers.iter().fold(x, |x, layer| {
            let attended = layer.attention.forward(x.clone(), padding.clone(), false);
            let x = layer_norm_with(
                &layer.attention_norm,
                x + layer.dropout.forward(attended),
                self.epsilon,
            );
            let fed = layer.feed_forward.forward(x.clone());
            layer_norm_with(
                &layer.output_norm,
                x + layer.dropout.forward(fed),
                self.epsilon,
            )
        })
    }

    /// The pooler's output `[batch, hidden]`: tanh of a dense layer on the `[CLS]` state.
    pub fn pool(&self, states: Tensor<3>) -> Tensor<2> {
        let [batch, _, hidden] = states.dims();
        let first = states
            .slice([0..batch, 0..1, 0..hidden])
            .reshape([batch, hidden]);
        tanh(project(&self.pooler, first))
    }

    fn classify(&self, states: Tensor<3>, padding: Tensor<2, Bool>) -> Tensor<2> {
        let [batch, length, hidden] = states.dims();
        let pooled = match self.pooling {
            BertPooling::Cls => self.pool(states),
            BertPooling::Mean => {
                let real = padding
                    .reshape([batch, length, 1])
                    .bool_not()
                    .float()
                    .cast(states.dtype());
                let sum = (states * real.clone()).sum_dim(1); // [batch, 1, hidden]
                (sum / real.sum_dim(1)).reshape([batch, hidden])
            }
        };
        // Hugging Face drops out the pooled vector before the classifier.
        let pooled = self.embeddings.dropout.forward(pooled);
        project(&self.classifier, pooled)
    }

    /// The number of token embeddings, positions and classes the model was built with.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let [vocab, _] = self.embeddings.word_embeddings.weight.dims();
        let [positions, _] = self.embeddings.position_embeddings.weight.dims();
        let [_, classes] = self.classifier.weight.dims();
        (vocab, positions, classes)
    }
}
