//! The networks stoke trains, one file per family, behind one `Model` the loop calls.
//!
//! To add a family: write `<family>.rs` with its config-driven constructor and `forward`, add
//! a variant here and to `config::ModelConfig`.

mod bert;
mod cnn;
mod dropout;
mod encoder;
mod gpt2;
mod mlp;
mod resnet;
mod transformer;

use burn::module::{ModuleVisitor, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::activation::{gelu_approximate, relu, tanh};
use burn::tensor::ops::ConvOptions;
use sha2::{Digest, Sha256};

pub use bert::Bert;
pub use cnn::Cnn;
pub use dropout::Dropout;
pub use gpt2::Gpt2;
pub use mlp::Mlp;
pub use resnet::Resnet;
pub use transformer::{LanguageModel, TextClassifier};

use crate::config::{Activation, ModelConfig, Network};
use crate::data::{DataSpec, ImageShape};
use crate::kernels;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "images of {input} are too small for a {model}; use larger data.image_size or fewer layers"
    )]
    InputTooSmall { input: ImageShape, model: String },
    #[error("a {model} model cannot be trained on {data}")]
    WrongData { model: String, data: String },
    #[error(
        "the tokenizer has {tokenizer} tokens but model.vocab_size is {model}; use the model's own tokenizer (the tokenizer.json beside its weights) or a smaller vocabulary"
    )]
    VocabularyTooLarge { tokenizer: usize, model: usize },
    #[error(
        "{what} = {asked} is longer than the model's {positions} learned positions (model.max_positions); lower it"
    )]
    TooLong {
        what: &'static str,
        asked: usize,
        positions: usize,
    },
}

#[derive(Module, Debug)]
pub enum Model {
    Mlp(Mlp),
    Cnn(Cnn),
    Resnet(Resnet),
    TextClassifier(TextClassifier),
    Lm(LanguageModel),
    Bert(Bert),
    Gpt2(Gpt2),
}

/// A batch as a model takes it.
// One per step, moved straight into `forward`: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Input {
    /// Normalised images, `[batch, channels, height, width]`.
    Images(Tensor<4>),
    /// Token ids `[batch, length]`, with `padding` true after each text's end.
    Tokens {
        ids: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
    },
    /// Language-model windows `[batch, length]`; one prediction per position.
    Sequences(Tensor<2, Int>),
}

impl Model {
    pub fn new(config: &ModelConfig, data: &DataSpec, device: &Device) -> Result<Self, ModelError> {
        let wrong_data = || ModelError::WrongData {
            model: config.kind().to_string(),
            data: data.describe(),
        };
        let vocabulary = |asked: Option<usize>, tokenizer: usize| match asked {
            Some(model) if model < tokenizer => {
                Err(ModelError::VocabularyTooLarge { tokenizer, model })
            }
            asked => Ok(asked.unwrap_or(tokenizer)),
        };
        let fits = |what, asked: usize, positions: usize| match asked > positions {
            true => Err(ModelError::TooLong {
                what,
                asked,
                positions,
            }),
            false => Ok(()),
        };
        Ok(match (&config.network, data) {
            (
                Network::Bert(bert),
                DataSpec::TextClassification {
                    classes,
                    vocab_size,
                    max_length,
                    ..
                },
            ) => {
                let vocab = vocabulary(bert.vocab_size, *vocab_size)?;
                fits("data.max_length", *max_length, bert.positions())?;
                Model::Bert(Bert::new(bert, vocab, classes.len(), device))
            }
            (
                Network::Gpt2(gpt2),
                DataSpec::LanguageModel {
                    vocab_size,
                    context_length,
                    ..
                },
            ) => {
                let vocab = vocabulary(gpt2.vocab_size, *vocab_size)?;
                let positions = gpt2.max_positions.unwrap_or(*context_length);
                fits("data.context_length", *context_length, positions)?;
                Model::Gpt2(Gpt2::new(gpt2, vocab, positions, device))
            }
            (Network::Mlp(mlp), DataSpec::ImageClassification { input, classes, .. }) => {
                Model::Mlp(Mlp::new(mlp, *input, classes.len(), device))
            }
            (Network::Cnn(cnn), DataSpec::ImageClassification { input, classes, .. }) => {
                Model::Cnn(Cnn::new(cnn, *input, classes.len(), device)?)
            }
            (Network::Resnet(resnet), DataSpec::ImageClassification { input, classes, .. }) => {
                Model::Resnet(Resnet::new(resnet, *input, classes.len(), device))
            }
            (
                Network::TextClassifier(transformer),
                DataSpec::TextClassification {
                    classes,
                    vocab_size,
                    max_length,
                    ..
                },
            ) => Model::TextClassifier(TextClassifier::new(
                transformer,
                *vocab_size,
                *max_length,
                classes.len(),
                device,
            )),
            (
                Network::Lm(lm),
                DataSpec::LanguageModel {
                    vocab_size,
                    context_length,
                    ..
                },
            ) => Model::Lm(LanguageModel::new(lm, *vocab_size, *context_length, device)),
            _ => return Err(wrong_data()),
        })
    }

    /// Logits `[predictions, classes]`: one row per image or text, or one per position of
    /// every language-model window.
    ///
    /// # Panics
    /// If `input` is not the kind the model takes; `DeviceBatch` builds it from the same
    /// `DataSpec` the model was built from.
    pub fn forward(&self, input: Input) -> Tensor<2> {
        match (self, input) {
            (Model::Mlp(model), Input::Images(images)) => model.forward(images),
            (Model::Cnn(model), Input::Images(images)) => model.forward(images),
            (Model::Resnet(model), Input::Images(images)) => model.forward(images),
            (Model::TextClassifier(model), Input::Tokens { ids, padding }) => {
                model.forward(ids, padding)
            }
            (Model::Lm(model), Input::Sequences(ids)) => model.forward(ids),
            (Model::Bert(model), Input::Tokens { ids, padding }) => model.forward(ids, padding),
            (Model::Gpt2(model), Input::Sequences(ids)) => model.forward(ids),
            _ => unreachable!("a batch of the wrong kind for the model"),
        }
    }
}

impl Model {
    /// The module that maps features to classes (or tokens): what a model started from weights
    /// trained for other classes gets fresh.
    pub fn head(&self) -> &'static [&'static str] {
        match self {
            Model::Mlp(_) | Model::Cnn(_) | Model::Resnet(_) | Model::Lm(_) => &["output"],
            Model::TextClassifier(_) => &["head"],
            Model::Bert(_) => &["classifier"],
            // The tied output projection is the token embedding.
            Model::Gpt2(_) => &[],
        }
    }

    /// SHA-256 of every parameter and running statistic, in module order: equal digests mean
    /// bitwise-equal weights.
    pub fn weights_sha256(&self) -> String {
        self.weights_digest()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// SHA-256 of every weight and buffer, in module order.
    pub fn weights_digest(&self) -> [u8; 32] {
        let mut hasher = WeightHasher(Sha256::new());
        // `valid()` first folds pending batch-norm running-statistic updates in.
        self.valid().visit(&mut hasher);
        hasher.0.finalize().into()
    }
}

struct WeightHasher(Sha256);

impl ModuleVisitor for WeightHasher {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.update(param.val().into_data().as_bytes());
    }
}

/// Position ids `0..length` for each of `ids`' rows (learned position embeddings read them).
fn positions(ids: &Tensor<2, Int>) -> Tensor<2, Int> {
    let [batch, length] = ids.dims();
    Tensor::arange(0..length as i64, &ids.device())
        .reshape([1, length])
        .repeat_dim(0, batch)
}

/// A padding mask with no padded position, for `ids` (language-model windows are full).
fn no_padding(ids: &Tensor<2, Int>) -> Tensor<2, Bool> {
    let [batch, length] = ids.dims();
    Tensor::<2, Bool>::from_bool(
        TensorData::new(vec![false; batch * length], [batch, length]),
        &ids.device(),
    )
}

/// `layer` applied to `x` in f32, the result back in `x`'s type: under mixed precision, layers
/// whose statistics need f32's precision (batch norm) keep f32 parameters and run here.
fn in_f32<const D: usize>(x: Tensor<D>, layer: impl FnOnce(Tensor<D>) -> Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    layer(x.cast(FloatDType::F32)).cast(dtype)
}

/// `conv`'s forward pass on stoke's convolution kernels (gemm forward and backward on flex),
/// with the same parameters, padding and result as `Conv2d::forward`.
fn convolve(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let ((top, bottom), (left, right)) = match conv.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
        // No stoke model pads to "same"; burn computes that padding privately.
        PaddingConfig2d::Same => return conv.forward(x),
    };
    let options = ConvOptions::new_with_padding(
        conv.stride,
        [(top, bottom), (left, right)],
        conv.dilation,
        conv.groups,
    );
    kernels::conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// `layer` on stoke's linear kernels (gemm into fresh buffers, the bias folded in), with the
/// same parameters and result as `Linear::forward`.
fn project<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    kernels::linear(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}

fn activate<const D: usize>(activation: Activation, x: Tensor<D>) -> Tensor<D> {
    match activation {
        Activation::Relu => relu(x),
        Activation::Gelu => kernels::gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
        Activation::Tanh => tanh(x),
    }
}

/// The softmax of one row of logits, computed in `f64`: how `predict`, `serve` and the
/// evaluation report turn logits into probabilities, so that they agree to the bit.
pub fn probabilities(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}
