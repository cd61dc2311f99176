//! Convolutional network shaped like PyTorch's `examples/mnist` model, so speed and accuracy
//! compare one to one: conv 3×3 32 → conv 3×3 64 → max-pool 2 → dropout → fc 128 → fc classes.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::{
    Dropout, ImageShape, ModelError, builtin_forward, check_dropout, convolve, image_classes,
    project,
};
use crate::config::CnnConfig;
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::kernels;
use crate::task::{Output, Task};

#[derive(Module, Debug)]
pub struct Cnn {
    convs: Vec<Conv2d>,
    pool: MaxPool2d,
    dropout: Dropout,
    fc: Linear,
    fc_dropout: Dropout,
    output: Linear,
}

impl super::Model for Cnn {
    const KIND: &'static str = "cnn";
    type Config = CnnConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &CnnConfig, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        let (input, classes) = image_classes(Self::KIND, spec)?;
        Self::build(config, input, classes, device).map_err(|e| e.to_string())
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &CnnConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if config.channels.is_empty() || config.channels.contains(&0) {
            problems.push((
                "channels".into(),
                "needs at least one convolution, each with at least 1 channel".into(),
            ));
        }
        if config.kernel_size == 0 {
            problems.push(("kernel_size".into(), "must be at least 1".into()));
        }
        if config.hidden == 0 {
            problems.push(("hidden".into(), "must be at least 1".into()));
        }
        problems.extend(check_dropout("dropout", config.dropout));
        problems.extend(check_dropout("fc_dropout", config.fc_dropout));
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

impl Cnn {
    pub fn build(
        config: &CnnConfig,
        input: ImageShape,
        classes: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let shrink = config.channels.len() * (config.kernel_size - 1);
        let too_small = || ModelError::InputTooSmall {
            input,
            model: format!(
                "cnn with {} unpadded {k}×{k} convolutions and a 2×2 pool",
                config.channels.len(),
                k = config.kernel_size
            ),
        };
        let height = input.height.checked_sub(shrink).ok_or_else(too_small)? / 2;
        let width = input.width.checked_sub(shrink).ok_or_else(too_small)? / 2;
        if height == 0 || width == 0 {
            return Err(too_small());
        }

        let mut in_channels = input.channels;
        let convs = config
            .channels
            .iter()
            .map(|&out_channels| {
                let kernel = [config.kernel_size, config.kernel_size];
                let conv = Conv2dConfig::new([in_channels, out_channels], kernel).init(device);
                in_channels = out_channels;
                conv
            })
            .collect();
        Ok(Self {
            convs,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dropout: Dropout::new(config.dropout),
            fc: LinearConfig::new(in_channels * height * width, config.hidden).init(device),
            fc_dropout: Dropout::new(config.fc_dropout),
            output: LinearConfig::new(config.hidden, classes).init(device),
        })
    }

    pub fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self
            .convs
            .iter()
            .fold(images, |x, conv| relu(convolve(conv, x))); // [batch, 64, 24, 24]
        let x = self.dropout.forward(pool(&self.pool, x)); // [batch, 64, 12, 12]
        let x = relu(project(&self.fc, x.flatten(1, 3))); // [batch, 128]
        project(&self.output, self.fc_dropout.forward(x)) // [batch, classes]
    }
}

/// `pool` on stoke's pooling kernel when its windows do not overlap (the configured 2×2 pool),
/// as `MaxPool2d::forward` otherwise.
fn pool(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let plain = pool.stride == pool.kernel_size
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(pool.padding, burn::nn::PaddingConfig2d::Valid);
    if plain {
        kernels::max_pool2d(x, pool.kernel_size)
    } else {
        pool.forward(x)
    }
}
