//! Multi-label classification: each label present or not, scored by binary cross-entropy on
//! its logit; a label is predicted at or above `task.threshold`. Micro- and macro-F1 and the
//! share of samples with every label right, from per-label counts.

use std::collections::BTreeMap;

use burn::nn::loss::BinaryCrossEntropyLossConfig;
use burn::prelude::*;

use super::{DeviceSum, TaskSums};

pub(super) fn loss(logits: Tensor<2>, targets: Tensor<2, Int>) -> Tensor<1> {
    BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init(&logits.device())
        .forward(logits, targets)
}

pub(super) fn layout(labels: usize) -> Vec<(&'static str, usize)> {
    vec![
        ("exact", 1),
        ("true_positives", labels),
        ("predicted", labels),
        ("actual", labels),
    ]
}

/// Adds a batch's per-label true positives, predictions and occurrences, and the samples
/// whose every label is right.
pub(super) fn add(
    logits: Tensor<2>,
    targets: Tensor<2, Int>,
    threshold: f64,
    add: &mut impl FnMut(&'static str, DeviceSum),
) {
    let [rows, labels] = logits.dims();
    // sigmoid(x) >= p  ⇔  x >= logit(p)
    let cut = (threshold / (1.0 - threshold)).ln();
    let predicted = logits.greater_equal_elem(cut);
    let actual = targets.equal_elem(1);
    let per_label = |values: Tensor<2>| DeviceSum::Float(values.sum_dim(0).reshape([labels]));
    let both = predicted.clone().bool_and(actual.clone());
    let agree = predicted
        .clone()
        .equal(actual.clone())
        .int()
        .sum_dim(1)
        .reshape([rows]);
    add(
        "exact",
        DeviceSum::Int(agree.equal_elem(labels as i64).int().sum()),
    );
    add("true_positives", per_label(both.float()));
    add("predicted", per_label(predicted.float()));
    add("actual", per_label(actual.float()));
}

pub(super) fn measure(sums: &TaskSums, rows: f64, labels: &[String]) -> BTreeMap<String, f64> {
    let get = |name: &str| {
        sums.get(name)
            .cloned()
            .unwrap_or_else(|| vec![0.0; labels.len()])
    };
    let (tp, predicted, actual) = (get("true_positives"), get("predicted"), get("actual"));
    let mut metrics = BTreeMap::new();
    let (tp_sum, both_sum) = (
        tp.iter().sum::<f64>(),
        predicted.iter().sum::<f64>() + actual.iter().sum::<f64>(),
    );
    let micro = if both_sum > 0.0 {
        2.0 * tp_sum / both_sum
    } else {
        0.0
    };
    metrics.insert("micro_f1".into(), micro);
    metrics.insert(
        "macro_f1".into(),
        super::classification::macro_f1(&tp, &predicted, &actual),
    );
    let exact = sums
        .get("exact")
        .and_then(|v| v.first())
        .copied()
        .unwrap_or(0.0);
    metrics.insert("exact_match".into(), exact / rows);
    metrics
}

/// Per label: precision, recall, F1 and support, from the counts `measure` reads.
pub fn per_label(sums: &TaskSums, labels: &[String]) -> Vec<LabelScores> {
    let get = |name: &str, i: usize| {
        sums.get(name)
            .and_then(|v| v.get(i))
            .copied()
            .unwrap_or(0.0)
    };
    labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let (tp, predicted, actual) = (
                get("true_positives", i),
                get("predicted", i),
                get("actual", i),
            );
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
            LabelScores {
                label: label.clone(),
                precision: ratio(tp, predicted),
                recall: ratio(tp, actual),
                f1: ratio(2.0 * tp, predicted + actual),
                support: actual as usize,
            }
        })
        .collect()
}

/// One label's scores in a multi-label report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}
