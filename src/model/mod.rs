//! The networks stoke trains: the [`Model`] trait every kind implements (the built-in
//! families here, one file each, and a user's own), and the layers they share.
//!
//! To add a family: write `<family>.rs` with its config, `new` and `forward` as an
//! implementation of [`Model`], and register it in `crate::registry::builtins`.

mod batch_norm;
mod bert;
mod cnn;
mod dropout;
pub mod efficientnet_lite;
mod encoder;
mod gpt2;
mod mlp;
pub(crate) mod onnx;
mod resnet;
mod tabular;
pub mod timm_convnext;
pub mod timm_resnet;
pub mod timm_vit;
mod transformer;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::activation::{gelu_approximate, relu, tanh};
use burn::tensor::ops::ConvOptions;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

pub use bert::Bert;
pub use cnn::Cnn;
pub use dropout::Dropout;
pub use efficientnet_lite::EfficientNetLite;
pub use gpt2::Gpt2;
pub use mlp::Mlp;
pub use resnet::Resnet;
pub use tabular::TabularMlp;
pub use timm_convnext::TimmConvnext;
pub use timm_resnet::TimmResnet;
pub use timm_vit::TimmVit;
pub use transformer::{LanguageModel, TextClassifier};

use crate::config::Activation;
pub use crate::data::Input;
use crate::data::{Batch, DataSpec, DeviceBatch, ImageShape, Spec};
use crate::kernels;
use crate::task::{Output, Task};

/// What a checkpoint or an artifact stores of a built model, whatever its kind: its record.
/// Every model handle is one (`train::Net`), so `run::checkpoint` writes and reads records
/// without knowing the loop.
pub trait Recordable {
    /// The model record (burnpack), with pending batch-norm updates folded in.
    fn record_bytes(&self) -> Result<Vec<u8>, burn::store::RecordError>;

    /// Loads a model record into the model (built from the same config).
    fn load_record(
        &mut self,
        record: burn::store::ModuleRecord,
    ) -> Result<(), burn::store::RecordError>;
}

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
    /// A model kind refused its config or data.
    #[error("model kind \"{kind}\": {detail}")]
    Build { kind: String, detail: String },
    /// A model's forward pass gave what the loop cannot use (a mistake in the model's code).
    #[error("model kind \"{kind}\": {detail}")]
    Output { kind: String, detail: String },
}

/// A network stoke trains: a burn module built from its `[model]` table for the data it is
/// given, turning a batch into a loss and what the task's metrics read. stoke runs the
/// backward pass, so loss weighting, loss scaling, clipping, the all-reduce and the optimizer
/// stay stoke's: an implementation never calls `backward()` or an optimizer.
///
/// Every built-in family implements it; a user's own is registered with
/// `Cli::with_builtins().model::<M>()`.
pub trait Model: Module + 'static {
    /// The kind's name in configs (`[model] kind = "..."`), runs and artifacts.
    const KIND: &'static str;
    /// Its keys in the `[model]` table, as a serde struct; `#[serde(default)]` gives keys
    /// their defaults. A key the struct does not know is refused with its file and line.
    type Config: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static;
    /// What it is built from: stoke's [`DataSpec`] for the built-in data kinds, or the spec
    /// of a user's data kind.
    type Spec: FromData;
    /// The batch it takes: [`DeviceBatch`] from the built-in data kinds, or a user data
    /// kind's own.
    type Batch: Batch;

    /// Builds the network on `device` with fresh weights (stoke seeds the device first); an
    /// error says, for people, why this config or data cannot be built.
    fn new(config: &Self::Config, spec: &Self::Spec, device: &Device) -> Result<Self, String>;

    /// The loss on one batch and what the task's metrics read. Hand the model's scores to
    /// `task.output` for the task's own loss (cross-entropy, MSE, ...), or build an
    /// [`Output`] from a loss of the model's own.
    fn forward(&self, batch: Self::Batch, task: &Task) -> Output;

    /// Range checks on the config the types alone cannot express: each problem as (the key
    /// under `model.`, what was expected).
    fn check(_config: &Self::Config) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Parameter path prefixes of the layer that maps features to outputs: what a model
    /// started from weights trained for other classes gets fresh.
    fn head() -> &'static [&'static str] {
        &[]
    }

    /// Scores `[rows, outputs]` for inputs stoke reads itself (images, texts, token windows,
    /// table rows), for predict, serve, generate, reports and ONNX export; `None` for a model
    /// that takes inputs of its own.
    fn scores(&self, _input: Input) -> Option<Tensor<2>> {
        None
    }
}

/// How a model's spec is read from what the data described: stoke's [`DataSpec`] as it is,
/// or a user's [`Spec`] from the description its data kind saved.
pub trait FromData: Sized + Send + Sync + 'static {
    fn from_data(spec: &DataSpec) -> Result<Self, String>;
}

impl FromData for DataSpec {
    fn from_data(spec: &DataSpec) -> Result<Self, String> {
        Ok(spec.clone())
    }
}

impl<S: Spec> FromData for S {
    fn from_data(spec: &DataSpec) -> Result<Self, String> {
        spec.custom_spec()
    }
}

/// A built-in model's forward pass: its scores for the batch's input, against the batch's
/// targets, under the task's loss.
fn builtin_forward<M: Model>(model: &M, batch: DeviceBatch, task: &Task) -> Output {
    let scores = model
        .scores(batch.input)
        .expect("the data the model was built for gives it inputs it takes");
    task.output(batch.targets.scored(scores))
}

/// The vocabulary a text model is built for: `asked` (the weights') when given, which must
/// hold the tokenizer's `tokenizer` ids, else the tokenizer's.
fn vocabulary(asked: Option<usize>, tokenizer: usize) -> Result<usize, String> {
    match asked {
        Some(model) if model < tokenizer => {
            Err(ModelError::VocabularyTooLarge { tokenizer, model }.to_string())
        }
        asked => Ok(asked.unwrap_or(tokenizer)),
    }
}

/// Refuses texts or windows longer than the model's learned positions.
fn fits_positions(what: &'static str, asked: usize, positions: usize) -> Result<(), String> {
    match asked > positions {
        true => Err(ModelError::TooLong {
            what,
            asked,
            positions,
        }
        .to_string()),
        false => Ok(()),
    }
}

/// A problem with a dropout probability `key`, if it is not in [0, 1).
fn check_dropout(key: &str, probability: f64) -> Option<(String, String)> {
    (!(0.0..1.0).contains(&probability)).then(|| {
        (
            key.to_string(),
            format!("must be at least 0 and below 1, got {probability}"),
        )
    })
}

/// Problems with a transformer's shape.
fn check_transformer(
    d_model: (&str, usize),
    n_heads: (&str, usize),
    n_layers: (&str, usize),
    d_ff: (&str, usize),
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let (heads_key, heads) = n_heads;
    if heads == 0 || d_model.1 == 0 || !d_model.1.is_multiple_of(heads) {
        problems.push((
            d_model.0.to_string(),
            format!(
                "must be a positive multiple of model.{heads_key} ({heads}), got {}",
                d_model.1
            ),
        ));
    }
    for (key, value) in [n_layers, d_ff] {
        if value == 0 {
            problems.push((key.to_string(), "must be at least 1".into()));
        }
    }
    problems
}

/// Problems with sizes that must be at least 1 when given, and a layer-norm epsilon.
fn check_sizes(sizes: &[(&str, Option<usize>)], epsilon: f64) -> Vec<(String, String)> {
    let mut problems: Vec<(String, String)> = sizes
        .iter()
        .filter(|(_, size)| *size == Some(0))
        .map(|(key, _)| (key.to_string(), "must be at least 1".into()))
        .collect();
    if !(epsilon > 0.0 && epsilon < 1.0) {
        problems.push((
            "layer_norm_eps".into(),
            format!("must be above 0 and below 1, got {epsilon}"),
        ));
    }
    problems
}

/// The image shape and class count an image classifier is built for, or why `spec` is not
/// an image classification.
fn image_classes(kind: &str, spec: &DataSpec) -> Result<(ImageShape, usize), String> {
    match spec {
        DataSpec::ImageClassification { input, classes, .. } => Ok((*input, classes.len())),
        _ => Err(wrong_data(kind, spec)),
    }
}

/// The error a built-in model gives for data of another kind than it takes.
fn wrong_data(kind: &str, spec: &DataSpec) -> String {
    ModelError::WrongData {
        model: kind.to_string(),
        data: spec.describe(),
    }
    .to_string()
}

/// SHA-256 of every parameter and running statistic of `model`, in module order: equal
/// digests mean bitwise-equal weights.
pub fn weights_digest<M: Module>(model: &M) -> [u8; 32] {
    let mut hasher = WeightHasher(Sha256::new());
    // `valid()` first folds pending batch-norm running-statistic updates in.
    model.valid().visit(&mut hasher);
    hasher.0.finalize().into()
}

/// [`weights_digest`] in hex.
pub fn weights_sha256<M: Module>(model: &M) -> String {
    hex(&weights_digest(model))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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
