//! `[model] kind = "forecaster"`: a GRU over a window of sensor readings, its last state
//! through dropout and a linear layer to the remaining useful life. The loss is the model's
//! own (mean squared error); stoke's regression metrics (MAE, RMSE, R² in cycles) read the
//! predictions beside it.

use burn::nn::gru::{Gru, GruConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use stoke::task::{Output, Scored, Task};

use crate::data::{EngineBatch, EngineSpec};

/// The kind's keys in `[model]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecasterConfig {
    /// Width of the GRU's state.
    pub hidden: usize,
    pub dropout: f64,
}

impl Default for ForecasterConfig {
    fn default() -> Self {
        Self {
            hidden: 32,
            dropout: 0.1,
        }
    }
}

#[derive(Module, Debug)]
pub struct Forecaster {
    gru: Gru,
    dropout: Dropout,
    head: Linear,
}

impl stoke::Model for Forecaster {
    const KIND: &'static str = "forecaster";
    type Config = ForecasterConfig;
    type Spec = EngineSpec;
    type Batch = EngineBatch;

    fn new(config: &ForecasterConfig, spec: &EngineSpec, device: &Device) -> Result<Self, String> {
        Ok(Self {
            gru: GruConfig::new(spec.sensors.len(), config.hidden, true).init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
            head: LinearConfig::new(config.hidden, 1).init(device),
        })
    }

    fn forward(&self, batch: EngineBatch, _task: &Task) -> Output {
        let states = self.gru.forward(batch.windows, None); // [batch, window, hidden]
        let [size, window, hidden] = states.dims();
        let last = states.slice([0..size, window - 1..window, 0..hidden]);
        let predicted = self
            .head
            .forward(self.dropout.forward(last.reshape([size, hidden]))); // [batch, 1]
        let targets = batch.targets.cast(predicted.dtype());
        let loss = (predicted.clone() - targets.clone()).powi_scalar(2).mean();
        Output::new(loss, Scored::Values { predicted, targets })
    }

    fn check(config: &ForecasterConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if config.hidden == 0 {
            problems.push(("hidden".into(), "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&config.dropout) {
            problems.push((
                "dropout".into(),
                format!("must be at least 0 and below 1, got {}", config.dropout),
            ));
        }
        problems
    }
}
