//! Slices: the examples grouped by an attribute (a field of the records, a folder, a
//! per-file attribute), each group's accuracy with a 95 % Wilson score interval and its
//! macro-F1, against the rest of the examples. A slice whose accuracy interval lies wholly
//! below the rest's is flagged: the model fails that group.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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
    /// Slices left out beyond the largest `MAX_SLICES`.
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
    /// 95 % percentile bootstrap interval of the macro-F1 (F1 is not a proportion, so it has
    /// no Wilson interval): 1000 resamples of the group, seeded, so reports are repeatable.
    /// For slices, not for the rest (resampling the rest of every slice costs the whole
    /// split a thousand times over, for a figure the flag does not use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macro_f1_interval: Option<[f64; 2]>,
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
                let metrics = GroupMetrics::new(&pick(true), classes, true);
                let rest = GroupMetrics::new(&pick(false), classes, false);
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
    fn new(outcomes: &[Outcome], classes: usize, bootstrap: bool) -> Self {
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
            macro_f1: ClassCounts::of(outcomes.iter(), classes).macro_f1(),
            macro_f1_interval: bootstrap.then(|| bootstrap_macro_f1(outcomes, classes)),
        }
    }
}

/// Resamples for the macro-F1 interval.
const BOOTSTRAP_RESAMPLES: usize = 1000;

fn bootstrap_macro_f1(outcomes: &[Outcome], classes: usize) -> [f64; 2] {
    if outcomes.is_empty() {
        return [0.0, 1.0];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0x5_11ce);
    let mut values: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let drawn = (0..outcomes.len()).map(|_| &outcomes[rng.random_range(0..outcomes.len())]);
            ClassCounts::of(drawn, classes).macro_f1()
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((BOOTSTRAP_RESAMPLES - 1) as f64 * q).round() as usize];
    [at(0.025), at(0.975)]
}

/// Per class: right answers, targets and predictions.
struct ClassCounts {
    hits: Vec<u64>,
    targets: Vec<u64>,
    predicted: Vec<u64>,
}

impl ClassCounts {
    fn of<'a>(outcomes: impl Iterator<Item = &'a Outcome>, classes: usize) -> Self {
        let mut counts = ClassCounts {
            hits: vec![0; classes],
            targets: vec![0; classes],
            predicted: vec![0; classes],
        };
        for o in outcomes {
            counts.targets[o.target] += 1;
            counts.predicted[o.predicted] += 1;
            counts.hits[o.target] += u64::from(o.target == o.predicted);
        }
        counts
    }

    /// Mean F1 over the classes that occur among the targets or predictions.
    fn macro_f1(&self) -> f64 {
        let present: Vec<f64> = (0..self.hits.len())
            .filter(|&c| self.targets[c] + self.predicted[c] > 0)
            .map(|c| 2.0 * self.hits[c] as f64 / (self.targets[c] + self.predicted[c]) as f64)
            .collect();
        if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
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
        let noisy = &report.slices[0].metrics;
        let [low, high] = noisy.macro_f1_interval.unwrap();
        assert!(low < noisy.macro_f1 && noisy.macro_f1 < high, "{noisy:?}");
    }
}
