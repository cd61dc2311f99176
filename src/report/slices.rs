//! Slices: the examples grouped by an attribute (a field of the records, a folder, a
//! per-file attribute), each group's accuracy with a 95 % Wilson score interval and its
//! macro-F1, against the rest of the examples. A slice whose accuracy interval lies wholly
//! below the rest's is flagged: the model fails that group.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Outcome;

/// At most this many slices are reported (the largest), so that slicing by an id-like field
/// does not produce a page per example.
pub const MAX_SLICES: usize = 50;

/// z for a two-sided 95 % interval.
const Z_95: f64 = 1.959_963_984_540_054;

#[derive(Debug, Clone, Serialize)]
pub struct SliceReport {
    pub attribute: String,
    pub interval: &'static str,
    /// Slices, the worst accuracy gap first.
    pub slices: Vec<Slice>,
    /// Examples without a value for the attribute (not in any slice, but in every "rest").
    pub without_value: usize,
    /// Slices left out beyond the largest [`MAX_SLICES`].
    pub slices_left_out: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Slice {
    pub value: String,
    #[serde(flatten)]
    pub metrics: GroupMetrics,
    /// Every other example.
    pub rest: GroupMetrics,
    /// This slice's accuracy minus the rest's.
    pub accuracy_gap: f64,
    pub macro_f1_gap: f64,
    /// The slice's accuracy interval lies wholly below the rest's.
    pub flagged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupMetrics {
    pub samples: usize,
    pub accuracy: f64,
    /// 95 % Wilson score interval of the accuracy.
    pub accuracy_interval: [f64; 2],
    /// Mean F1 over the classes that occur in the group (as targets or predictions).
    pub macro_f1: f64,
}

impl SliceReport {
    /// `values[i]` is the attribute of `outcomes[i]`.
    pub fn new(
        attribute: &str,
        outcomes: &[Outcome],
        values: &[Option<String>],
        classes: usize,
    ) -> Self {
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (position, value) in values.iter().enumerate() {
            if let Some(value) = value {
                groups.entry(value.as_str()).or_default().push(position);
            }
        }
        let mut by_size: Vec<(&str, Vec<usize>)> = groups.into_iter().collect();
        // Stable: equal sizes stay in value order.
        by_size.sort_by_key(|(_, members)| std::cmp::Reverse(members.len()));
        let slices_left_out = by_size.len().saturating_sub(MAX_SLICES);
        by_size.truncate(MAX_SLICES);
        let mut slices: Vec<Slice> = by_size
            .into_iter()
            .map(|(value, members)| {
                let mut inside = vec![false; outcomes.len()];
                for &m in &members {
                    inside[m] = true;
                }
                let pick = |wanted: bool| -> Vec<Outcome> {
                    outcomes
                        .iter()
                        .zip(&inside)
                        .filter(|(_, is_in)| **is_in == wanted)
                        .map(|(o, _)| *o)
                        .collect()
                };
                let metrics = GroupMetrics::new(&pick(true), classes);
                let rest = GroupMetrics::new(&pick(false), classes);
                Slice {
                    value: value.to_string(),
                    accuracy_gap: metrics.accuracy - rest.accuracy,
                    macro_f1_gap: metrics.macro_f1 - rest.macro_f1,
                    flagged: rest.samples > 0
                        && metrics.accuracy_interval[1] < rest.accuracy_interval[0],
                    metrics,
                    rest,
                }
            })
            .collect();
        slices.sort_by(|a, b| a.accuracy_gap.total_cmp(&b.accuracy_gap));
        SliceReport {
            attribute: attribute.to_string(),
            interval: "95 % Wilson score interval of the accuracy",
            slices,
            without_value: values.iter().filter(|v| v.is_none()).count(),
            slices_left_out,
        }
    }
}

impl GroupMetrics {
    fn new(outcomes: &[Outcome], classes: usize) -> Self {
        let correct = outcomes.iter().filter(|o| o.target == o.predicted).count();
        let samples = outcomes.len();
        GroupMetrics {
            samples,
            accuracy: if samples == 0 {
                0.0
            } else {
                correct as f64 / samples as f64
            },
            accuracy_interval: wilson(correct, samples),
            macro_f1: macro_f1(outcomes, classes),
        }
    }
}

/// The 95 % Wilson score interval of `successes` out of `trials` ([0, 1] for no trials).
pub fn wilson(successes: usize, trials: usize) -> [f64; 2] {
    if trials == 0 {
        return [0.0, 1.0];
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = Z_95 * Z_95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z_95 / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// Mean F1 over the classes that occur among the targets or predictions of `outcomes`.
fn macro_f1(outcomes: &[Outcome], classes: usize) -> f64 {
    let (mut hits, mut targets, mut predicted) = (
        vec![0u64; classes],
        vec![0u64; classes],
        vec![0u64; classes],
    );
    for o in outcomes {
        targets[o.target] += 1;
        predicted[o.predicted] += 1;
        hits[o.target] += u64::from(o.target == o.predicted);
    }
    let present: Vec<f64> = (0..classes)
        .filter(|&c| targets[c] + predicted[c] > 0)
        .map(|c| 2.0 * hits[c] as f64 / (targets[c] + predicted[c]) as f64)
        .collect();
    if present.is_empty() {
        0.0
    } else {
        present.iter().sum::<f64>() / present.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_published_example() {
        // 81 of 263 (Wilson 1927, as in Newcombe 1998, table II): 0.2553 to 0.3662.
        let [low, high] = wilson(81, 263);
        assert!(
            (low - 0.2553).abs() < 5e-4 && (high - 0.3662).abs() < 5e-4,
            "{low} {high}"
        );
        assert_eq!(wilson(0, 0), [0.0, 1.0]);
        assert!(wilson(10, 10)[1] <= 1.0 && wilson(0, 10)[0] >= 0.0);
    }

    #[test]
    fn a_slice_far_below_the_rest_is_flagged_and_the_others_are_not() {
        let o = |right: bool| Outcome {
            target: 0,
            predicted: usize::from(!right),
            confidence: 0.9,
        };
        let mut outcomes = Vec::new();
        let mut values = Vec::new();
        for i in 0..300 {
            let source = ["a", "b", "noisy"][i % 3];
            let right = if source == "noisy" {
                i % 10 < 6
            } else {
                i % 50 != 0
            };
            outcomes.push(o(right));
            values.push(Some(source.to_string()));
        }
        let report = SliceReport::new("source", &outcomes, &values, 2);
        assert_eq!(report.slices[0].value, "noisy");
        assert!(report.slices[0].flagged, "{report:?}");
        assert!(report.slices[1..].iter().all(|s| !s.flagged), "{report:?}");
    }
}
