//! The networks stoke trains, one file per family, behind one `Model` the loop calls.
//!
//! To add a family: write `<family>.rs` with its config-driven constructor and `forward`, add
//! a variant here and to `config::ModelConfig`.

mod cnn;
mod mlp;
mod resnet;

use std::fmt;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::activation::{gelu, relu, tanh};
use sha2::{Digest, Sha256};

pub use cnn::Cnn;
pub use mlp::Mlp;
pub use resnet::Resnet;

use crate::config::{Activation, ModelConfig};

/// Channels, height and width of the images a model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for ImageShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "images of {input} are too small for a {model}; use larger data.image_size or fewer layers"
    )]
    InputTooSmall { input: ImageShape, model: String },
}

#[derive(Module, Debug)]
pub enum Model {
    Mlp(Mlp),
    Cnn(Cnn),
    Resnet(Resnet),
}

impl Model {
    pub fn new(
        config: &ModelConfig,
        input: ImageShape,
        classes: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Ok(match config {
            ModelConfig::Mlp(mlp) => Model::Mlp(Mlp::new(mlp, input, classes, device)),
            ModelConfig::Cnn(cnn) => Model::Cnn(Cnn::new(cnn, input, classes, device)?),
            ModelConfig::Resnet(resnet) => {
                Model::Resnet(Resnet::new(resnet, input, classes, device))
            }
        })
    }

    /// Class logits for a batch of normalised images.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Model::Mlp(model) => model.forward(images),
            Model::Cnn(model) => model.forward(images),
            Model::Resnet(model) => model.forward(images),
        }
    }
}

impl Model {
    /// SHA-256 of every parameter and running statistic, in module order: equal digests mean
    /// bitwise-equal weights.
    pub fn weights_sha256(&self) -> String {
        let mut hasher = WeightHasher(Sha256::new());
        // `valid()` first folds pending batch-norm running-statistic updates in.
        self.valid().visit(&mut hasher);
        format!("{:x}", hasher.0.finalize())
    }
}

struct WeightHasher(Sha256);

impl ModuleVisitor for WeightHasher {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.update(param.val().into_data().as_bytes());
    }
}

fn activate<const D: usize>(activation: Activation, x: Tensor<D>) -> Tensor<D> {
    match activation {
        Activation::Relu => relu(x),
        Activation::Gelu => gelu(x),
        Activation::Tanh => tanh(x),
    }
}
