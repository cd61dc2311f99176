//! A multi-layer perceptron over table rows: each categorical column through an embedding of
//! its own (id 0 is a value unseen in training), concatenated with the standardised numeric
//! columns, then hidden layers and one output per class, target or label.

use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Dropout, activate, builtin_forward, check_dropout, project, wrong_data};
use crate::config::Activation;
use crate::data::{DataSpec, DeviceBatch, Input};
use crate::task::{Output, Task};

/// `[model] kind = "tabular-mlp"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TabularMlpConfig {
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub dropout: f64,
    /// Width of each categorical column's embedding; by default fastai's rule,
    /// `min(600, round(1.6 × values^0.56))`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_dim: Option<usize>,
}

impl Default for TabularMlpConfig {
    fn default() -> Self {
        Self {
            hidden: vec![256, 128],
            activation: Activation::Relu,
            dropout: 0.1,
            embedding_dim: None,
        }
    }
}

#[derive(Module, Debug)]
pub struct TabularMlp {
    embeddings: Vec<Embedding>,
    hidden: Vec<Linear>,
    output: Linear,
    dropout: Dropout,
    #[module(skip)]
    activation: Activation,
}

impl super::Model for TabularMlp {
    const KIND: &'static str = "tabular-mlp";
    type Config = TabularMlpConfig;
    type Spec = DataSpec;
    type Batch = DeviceBatch;

    fn new(config: &TabularMlpConfig, spec: &DataSpec, device: &Device) -> Result<Self, String> {
        let DataSpec::Tabular {
            numeric,
            categorical,
            target: task,
            ..
        } = spec
        else {
            return Err(wrong_data(Self::KIND, spec));
        };
        let embeddings: Vec<Embedding> = categorical
            .iter()
            .map(|column| {
                // One row per value seen in training, and row 0 for any other.
                let rows = column.values.len() + 1;
                let width = config
                    .embedding_dim
                    .unwrap_or_else(|| embedding_width(column.values.len()));
                EmbeddingConfig::new(rows, width).init(device)
            })
            .collect();
        let mut width =
            numeric.len() + embeddings.iter().map(|e| e.weight.dims()[1]).sum::<usize>();
        if width == 0 {
            return Err("the table has no feature columns".into());
        }
        let hidden = config
            .hidden
            .iter()
            .map(|&size| {
                let layer = LinearConfig::new(width, size).init(device);
                width = size;
                layer
            })
            .collect();
        Ok(Self {
            embeddings,
            hidden,
            output: LinearConfig::new(width, task.outputs()).init(device),
            dropout: Dropout::new(config.dropout),
            activation: config.activation,
        })
    }

    fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
        builtin_forward(self, batch, task)
    }

    fn check(config: &TabularMlpConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if config.hidden.contains(&0) {
            problems.push(("hidden".into(), "layer sizes must be at least 1".into()));
        }
        if config.embedding_dim == Some(0) {
            problems.push(("embedding_dim".into(), "must be at least 1".into()));
        }
        problems.extend(check_dropout("dropout", config.dropout));
        problems
    }

    fn head() -> &'static [&'static str] {
        &["output"]
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        match input {
            Input::Rows {
                numeric,
                categorical,
            } => Some(self.logits(numeric, categorical)),
            _ => None,
        }
    }
}

impl TabularMlp {
    /// Outputs `[rows, outputs]` for standardised numeric columns `[rows, numeric]` and
    /// category ids `[rows, categorical]`.
    pub fn logits(&self, numeric: Tensor<2>, categorical: Tensor<2, Int>) -> Tensor<2> {
        let [rows, numeric_width] = numeric.dims();
        let dtype = numeric.dtype();
        let mut parts = Vec::with_capacity(self.embeddings.len() + 1);
        if numeric_width > 0 {
            parts.push(numeric);
        }
        for (column, embedding) in self.embeddings.iter().enumerate() {
            let ids = categorical.clone().slice([0..rows, column..column + 1]); // [rows, 1]
            let width = embedding.weight.dims()[1];
            let embedded = embedding.forward(ids).reshape([rows, width]);
            parts.push(embedded.cast(dtype));
        }
        let x = Tensor::cat(parts, 1);
        let x = self.hidden.iter().fold(x, |x, layer| {
            self.dropout
                .forward(activate(self.activation, project(layer, x)))
        });
        project(&self.output, x)
    }
}

/// fastai's embedding width for a column of `values` distinct values.
fn embedding_width(values: usize) -> usize {
    ((1.6 * (values.max(1) as f64).powf(0.56)).round() as usize).clamp(1, 600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_widths_follow_fastais_rule() {
        assert_eq!(embedding_width(5), 4);
        assert_eq!(embedding_width(7), 5);
        assert_eq!(embedding_width(100_000), 600);
    }
}
