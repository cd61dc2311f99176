//! Multi-layer perceptron over flattened images.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::{Dropout, ImageShape, activate, project};
use crate::config::{Activation, MlpConfig};

#[derive(Module, Debug)]
pub struct Mlp {
    hidden: Vec<Linear>,
    output: Linear,
    dropout: Dropout,
    #[module(skip)]
    activation: Activation,
}

impl Mlp {
    pub fn new(config: &MlpConfig, input: ImageShape, classes: usize, device: &Device) -> Self {
        let mut width = input.len();
        let hidden = config
            .hidden
            .iter()
            .map(|&size| {
                let layer = LinearConfig::new(width, size).init(device);
                width = size;
                layer
            })
            .collect();
        Self {
            hidden,
            output: LinearConfig::new(width, classes).init(device),
            dropout: Dropout::new(config.dropout),
            activation: config.activation,
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = images.flatten(1, 3); // [batch, channels * height * width]
        let x = self.hidden.iter().fold(x, |x, layer| {
            self.dropout
                .forward(activate(self.activation, project(layer, x)))
        });
        project(&self.output, x) // [batch, classes]
    }
}
