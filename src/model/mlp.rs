//! Multi-layer perceptron over flattened images.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::{
    Dropout, ImageShape, activate, builtin_forward, check_dropout, image_classes, project,
};
use crate::config::{Activation, MlpConfig};
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::task::{Output, Task};

#[derive(Module, Debug)]
pub struct Mlp {
    hidden: Vec<Linear>,
    output: Linear,
    dropout: Dropout,
    #[module(skip)]
    activation: Activation,
}

impl super::Model for Mlp {
    const KIND: &'static str = "mlp";
    type Config = MlpConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &MlpConfig, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        let (input, classes) = image_classes(Self::KIND, spec)?;
        Ok(Self::build(config, input, classes, device))
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &MlpConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if config.hidden.contains(&0) {
            problems.push(("hidden".into(), "layer sizes must be at least 1".into()));
        }
        problems.extend(check_dropout("dropout", config.dropout));
        problems
    }

    fn head() -> &'static [&'static str] {
        &["output"]
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Images(images) => Some(self.logits(images)),
            _ => None,
        }
    }
}

impl Mlp {
    pub fn build(config: &MlpConfig, input: ImageShape, classes: usize, device: &Device) -> Self {
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

    pub fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = images.flatten(1, 3); // [batch, channels * height * width]
        let x = self.hidden.iter().fold(x, |x, layer| {
            self.dropout
                .forward(activate(self.activation, project(layer, x)))
        });
        project(&self.output, x) // [batch, classes]
    }
}
