//! Regression on one or more real targets: MSE, MAE or Huber loss on the targets as the data
//! gives them (standardised, for the built-in tabular data); MAE, RMSE and R² per target in
//! the targets' own units, and their mean over the targets.

use std::collections::BTreeMap;

use burn::nn::loss::{HuberLossConfig, MseLoss, Reduction};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{DeviceSum, TaskConfig, TaskSums};

/// The regression loss (`task.loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegressionLoss {
    /// Mean squared error.
    Mse,
    /// Mean absolute error.
    Mae,
    /// Huber: squared below `task.huber_delta`, linear above, so outliers pull less.
    Huber,
}

/// How a target was standardised for training: the model sees `(y - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetScale {
    pub mean: f64,
    pub std: f64,
}

impl TargetScale {
    /// A standardised value back in the target's own units.
    pub fn restore(&self, value: f64) -> f64 {
        value * self.std + self.mean
    }
}

pub(super) fn loss(config: &TaskConfig, predicted: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    match config.loss {
        RegressionLoss::Mse => MseLoss::new().forward(predicted, targets, Reduction::Mean),
        RegressionLoss::Mae => (predicted - targets).abs().mean(),
        RegressionLoss::Huber => HuberLossConfig::new(config.huber_delta as f32)
            .init()
            .forward(predicted, targets, Reduction::Mean),
    }
}

pub(super) fn layout(targets: usize) -> Vec<(&'static str, usize)> {
    vec![
        ("absolute_error", targets),
        ("squared_error", targets),
        ("target_sum", targets),
        ("target_squared_sum", targets),
    ]
}

/// Adds a batch's per-target sums of absolute and squared errors, and of the targets and
/// their squares (for R²'s total sum of squares).
pub(super) fn add(
    predicted: Tensor<2>,
    targets: Tensor<2>,
    add: &mut impl FnMut(&'static str, DeviceSum),
) {
    let [_, columns] = targets.dims();
    let per_target = |values: Tensor<2>| DeviceSum::Float(values.sum_dim(0).reshape([columns]));
    let error = predicted - targets.clone();
    add("absolute_error", per_target(error.clone().abs()));
    add("squared_error", per_target(error.powi_scalar(2)));
    add("target_sum", per_target(targets.clone()));
    add("target_squared_sum", per_target(targets.powi_scalar(2)));
}

pub(super) fn measure(
    sums: &TaskSums,
    rows: f64,
    targets: &[String],
    scales: &[TargetScale],
) -> BTreeMap<String, f64> {
    let column = |name: &str, t: usize| sums.get(name).and_then(|v| v.get(t)).copied();
    let mut metrics = BTreeMap::new();
    let (mut mae_sum, mut rmse_sum, mut r2_sum) = (0.0, 0.0, 0.0);
    for (t, target) in targets.iter().enumerate() {
        let std = scales.get(t).map_or(1.0, |scale| scale.std);
        let absolute = column("absolute_error", t).unwrap_or(0.0);
        let squared = column("squared_error", t).unwrap_or(0.0);
        let sum = column("target_sum", t).unwrap_or(0.0);
        let total = column("target_squared_sum", t).unwrap_or(0.0) - sum * sum / rows;
        let mae = std * absolute / rows;
        let rmse = std * (squared / rows).sqrt();
        let r2 = r_squared(squared, total);
        if targets.len() > 1 {
            metrics.insert(format!("mae/{target}"), mae);
            metrics.insert(format!("rmse/{target}"), rmse);
            metrics.insert(format!("r2/{target}"), r2);
        }
        (mae_sum, rmse_sum, r2_sum) = (mae_sum + mae, rmse_sum + rmse, r2_sum + r2);
    }
    let count = targets.len().max(1) as f64;
    metrics.insert("mae".into(), mae_sum / count);
    metrics.insert("rmse".into(), rmse_sum / count);
    metrics.insert("r2".into(), r2_sum / count);
    metrics
}

/// 1 - SSE/SST, with scikit-learn's convention for constant targets: 1 when they are
/// predicted exactly, else 0.
fn r_squared(squared_error: f64, total: f64) -> f64 {
    if total > 0.0 {
        1.0 - squared_error / total
    } else if squared_error == 0.0 {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand_in_the_targets_units() {
        // Standardised targets 1, -1, 0 predicted as 1, 0, 0: errors 0, 1, 0.
        let sums: TaskSums = [
            ("absolute_error", vec![1.0]),
            ("squared_error", vec![1.0]),
            ("target_sum", vec![0.0]),
            ("target_squared_sum", vec![2.0]),
        ]
        .into_iter()
        .map(|(name, values)| (name.to_string(), values))
        .collect();
        let scale = TargetScale {
            mean: 100.0,
            std: 10.0,
        };
        let metrics = measure(&sums, 3.0, &["price".into()], &[scale]);
        assert!((metrics["mae"] - 10.0 / 3.0).abs() < 1e-12);
        assert!((metrics["rmse"] - 10.0 * (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((metrics["r2"] - 0.5).abs() < 1e-12);
        assert_eq!(scale.restore(-1.0), 90.0);
    }
}
