//! Reports for tasks whose targets are not one class: regression (per target MAE, RMSE, R²
//! and the residuals' spread, in the targets' own units, and the rows predicted worst) and
//! multi-label classification (per label precision, recall, F1 and support, micro and
//! macro F1).

use serde::Serialize;

use crate::data::Example;
use crate::task::{LabelScores, TargetScale, TaskSums, per_label};

/// One target's scores on a split, in the target's own units.
#[derive(Debug, Clone, Serialize)]
pub struct TargetScores {
    pub target: String,
    pub mae: f64,
    pub rmse: f64,
    pub r2: f64,
    /// Mean of predicted − true: above 0 when the model predicts too high on the whole.
    pub bias: f64,
    /// The 50th, 90th and 99th percentile of the absolute error.
    pub absolute_error_percentiles: [f64; 3],
    pub mean: f64,
    pub std: f64,
}

/// A row predicted worst: the largest error, summed over the targets in standard deviations.
#[derive(Debug, Clone, Serialize)]
pub struct WorstRow {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Per target: (true, predicted), in the targets' units.
    pub values: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegressionReport {
    pub rows: usize,
    pub targets: Vec<TargetScores>,
    pub worst_rows: Vec<WorstRow>,
}

/// Each evaluated row's predictions and true values, standardised as the model saw them.
#[derive(Debug, Default)]
pub struct RegressionRows {
    pub predicted: Vec<Vec<f64>>,
    pub actual: Vec<Vec<f64>>,
}

impl RegressionReport {
    /// The report of `rows` (`indices[i]` is the dataset index of row `i`), the `worst` rows
    /// described by `example`.
    pub fn new(
        rows: &RegressionRows,
        targets: &[String],
        scales: &[TargetScale],
        indices: &[u32],
        worst: usize,
        example: impl Fn(u32) -> Option<Example>,
    ) -> Self {
        let scale = |t: usize| {
            scales.get(t).copied().unwrap_or(TargetScale {
                mean: 0.0,
                std: 1.0,
            })
        };
        let n = rows.predicted.len();
        let restored = |values: &[Vec<f64>], t: usize| -> Vec<f64> {
            values.iter().map(|row| scale(t).restore(row[t])).collect()
        };
        let scores = targets
            .iter()
            .enumerate()
            .map(|(t, target)| {
                let (predicted, actual) = (restored(&rows.predicted, t), restored(&rows.actual, t));
                target_scores(target, &predicted, &actual)
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        let error = |i: usize| -> f64 {
            (0..targets.len())
                .map(|t| (rows.predicted[i][t] - rows.actual[i][t]).abs())
                .sum()
        };
        order.sort_by(|&a, &b| error(b).total_cmp(&error(a)));
        let worst_rows = order
            .into_iter()
            .take(worst)
            .map(|i| {
                let index = indices[i];
                WorstRow {
                    index,
                    location: example(index).as_ref().and_then(Example::location),
                    values: (0..targets.len())
                        .map(|t| {
                            let scale = scale(t);
                            (
                                scale.restore(rows.actual[i][t]),
                                scale.restore(rows.predicted[i][t]),
                            )
                        })
                        .collect(),
                }
            })
            .collect();
        Self {
            rows: n,
            targets: scores,
            worst_rows,
        }
    }
}

fn target_scores(target: &str, predicted: &[f64], actual: &[f64]) -> TargetScores {
    let n = actual.len().max(1) as f64;
    let mean = actual.iter().sum::<f64>() / n;
    let total: f64 = actual.iter().map(|y| (y - mean).powi(2)).sum();
    let errors: Vec<f64> = predicted.iter().zip(actual).map(|(p, y)| p - y).collect();
    let squared: f64 = errors.iter().map(|e| e * e).sum();
    let mut absolute: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    absolute.sort_by(f64::total_cmp);
    let percentile = |q: f64| -> f64 {
        match absolute.len() {
            0 => 0.0,
            len => absolute[((q * (len - 1) as f64).round() as usize).min(len - 1)],
        }
    };
    TargetScores {
        target: target.to_string(),
        mae: absolute.iter().sum::<f64>() / n,
        rmse: (squared / n).sqrt(),
        r2: if total > 0.0 {
            1.0 - squared / total
        } else {
            0.0
        },
        bias: errors.iter().sum::<f64>() / n,
        absolute_error_percentiles: [percentile(0.5), percentile(0.9), percentile(0.99)],
        mean,
        std: (total / n).sqrt(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MultiLabelReport {
    pub threshold: f64,
    pub micro_f1: f64,
    pub macro_f1: f64,
    pub labels: Vec<LabelScores>,
}

impl MultiLabelReport {
    /// The report of a split's summed per-label counts.
    pub fn new(sums: &TaskSums, labels: &[String], threshold: f64) -> Self {
        let get = |name: &str| sums.get(name).cloned().unwrap_or_default();
        let (tp, predicted, actual) = (get("true_positives"), get("predicted"), get("actual"));
        let base: f64 = predicted.iter().sum::<f64>() + actual.iter().sum::<f64>();
        Self {
            threshold,
            micro_f1: if base > 0.0 {
                2.0 * tp.iter().sum::<f64>() / base
            } else {
                0.0
            },
            macro_f1: crate::task::macro_f1(&tp, &predicted, &actual),
            labels: per_label(sums, labels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_scores_by_hand() {
        let scores = target_scores("y", &[1.0, 2.0, 5.0], &[1.0, 3.0, 5.0]);
        assert!((scores.mae - 1.0 / 3.0).abs() < 1e-12);
        assert!((scores.rmse - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        // mean 3, total 8, squared 1
        assert!((scores.r2 - (1.0 - 1.0 / 8.0)).abs() < 1e-12);
        assert!((scores.bias + 1.0 / 3.0).abs() < 1e-12);
    }
}
