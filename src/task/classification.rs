//! Single-label classification, and language modelling as classification of the next token:
//! cross-entropy; accuracy, top-k accuracy, and macro-F1 from per-class counts (not for a
//! vocabulary).

use std::collections::BTreeMap;

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::prelude::*;

use super::{DeviceSum, TaskSums};

/// Cross-entropy, with `smoothing` of the target distribution spread over the classes.
pub(super) fn loss(logits: Tensor<2>, targets: Tensor<1, Int>, smoothing: f64) -> Tensor<1> {
    if smoothing == 0.0 {
        return CrossEntropyLoss::new(None, &logits.device()).forward(logits, targets);
    }
    CrossEntropyLossConfig::new()
        .with_smoothing(Some(smoothing as f32))
        .init(&logits.device())
        .forward(logits, targets)
}

pub(super) fn layout(classes: Option<usize>, top_k: Option<usize>) -> Vec<(&'static str, usize)> {
    let mut layout = vec![("correct", 1)];
    if top_k.is_some() {
        layout.push(("top_k_correct", 1));
    }
    if let Some(classes) = classes {
        layout.extend([
            ("true_positives", classes),
            ("predicted", classes),
            ("actual", classes),
        ]);
    }
    layout
}

/// Adds a batch's counts: correct predictions, targets among the top k, and per class (for
/// `classes`) true positives, predictions and occurrences.
pub(super) fn add(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    classes: Option<usize>,
    top_k: Option<usize>,
    add: &mut impl FnMut(&'static str, DeviceSum),
) {
    let [rows, _] = logits.dims();
    if let Some(k) = top_k {
        let (_, top) = logits.clone().topk_with_indices(k, 1);
        let hits = top
            .equal(targets.clone().reshape([rows, 1]).repeat_dim(1, k))
            .int()
            .sum();
        add("top_k_correct", DeviceSum::Int(hits));
    }
    let predicted = logits.argmax(1).reshape([rows]);
    let correct = predicted.clone().equal(targets.clone()).int().sum();
    add("correct", DeviceSum::Int(correct));
    if let Some(classes) = classes {
        let device = targets.device();
        let ids = Tensor::<1, Int>::arange(0..classes as i64, &device).reshape([1, classes]);
        let one_hot = |labels: Tensor<1, Int>| {
            labels.reshape([rows, 1]).equal(ids.clone()).float() // [rows, classes]
        };
        let (predicted, actual) = (one_hot(predicted), one_hot(targets));
        let true_positives = (predicted.clone() * actual.clone()).sum_dim(0);
        add(
            "true_positives",
            DeviceSum::Float(true_positives.reshape([classes])),
        );
        add(
            "predicted",
            DeviceSum::Float(predicted.sum_dim(0).reshape([classes])),
        );
        add(
            "actual",
            DeviceSum::Float(actual.sum_dim(0).reshape([classes])),
        );
    }
}

pub(super) fn measure(sums: &TaskSums, rows: f64, language: bool) -> BTreeMap<String, f64> {
    let first = |name: &str| sums.get(name).and_then(|v| v.first().copied());
    let mut metrics = BTreeMap::new();
    metrics.insert("accuracy".into(), first("correct").unwrap_or(0.0) / rows);
    if let Some(hits) = first("top_k_correct") {
        metrics.insert("top_k_accuracy".into(), hits / rows);
    }
    if !language
        && let (Some(tp), Some(predicted), Some(actual)) = (
            sums.get("true_positives"),
            sums.get("predicted"),
            sums.get("actual"),
        )
    {
        metrics.insert("macro_f1".into(), macro_f1(tp, predicted, actual));
    }
    metrics
}

/// Mean F1 over the classes that were predicted or occur.
pub fn macro_f1(true_positives: &[f64], predicted: &[f64], actual: &[f64]) -> f64 {
    let scores: Vec<f64> = true_positives
        .iter()
        .zip(predicted)
        .zip(actual)
        .filter(|((_, p), a)| **p + **a > 0.0)
        .map(|((&tp, &p), &a)| 2.0 * tp / (p + a))
        .collect();
    if scores.is_empty() {
        0.0
    } else {
        scores.iter().sum::<f64>() / scores.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_by_hand() {
        // Class 0: tp 2, predicted 3, actual 2 → F1 0.8; class 1: tp 1, predicted 1, actual 2
        // → F1 2/3; class 2 never seen.
        let f1 = macro_f1(&[2.0, 1.0, 0.0], &[3.0, 1.0, 0.0], &[2.0, 2.0, 0.0]);
        assert!((f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn label_smoothing_spreads_the_target_as_pytorch_does() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[2.0, 0.0, -1.0]], &device);
        let targets = Tensor::<1, Int>::from_ints([0], &device);
        let smoothed: f32 = loss(logits.clone(), targets.clone(), 0.1).into_scalar();
        // -(0.9 + 0.1/3) log p0 - 0.1/3 (log p1 + log p2)
        let log_z = (2f32.exp() + 1.0 + (-1f32).exp()).ln();
        let log_p = [2.0 - log_z, -log_z, -1.0 - log_z];
        let want = -(0.9 + 0.1 / 3.0) * log_p[0] - 0.1 / 3.0 * (log_p[1] + log_p[2]);
        assert!((smoothed - want).abs() < 1e-5, "{smoothed} vs {want}");
        let plain: f32 = loss(logits, targets, 0.0).into_scalar();
        assert!((plain + log_p[0]).abs() < 1e-5);
    }
}
