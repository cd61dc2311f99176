//! The drift reference an artifact keeps (`profile.json`), and the statistics that compare a
//! window of served answers with it.
//!
//! At export, the model answers its run's holdout (the validation split, else the test
//! split). The profile keeps what those answers look like, never the inputs: the
//! predicted-class histogram, a confidence (top softmax probability) histogram, and the
//! quantiles of the confidence and of a few cheap features per input kind (images: mean
//! intensity per channel; texts: length in tokens and the unknown-token rate; table rows:
//! each numeric column). A window of answers is scored against it with the population
//! stability index on classes and the two-sample Kolmogorov–Smirnov distance on the rest.
//! Thresholds are calibrated by resampling: windows drawn from the reference itself, the
//! largest score among [`RESAMPLES`] of them (widened for the reference being a sample too),
//! so a window from the holdout's distribution crosses one about once in a thousand.
//! `stoke serve` keeps the windows (`serve/drift.rs`); this module owns the numbers.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{DataSpec, HostBatch};

pub const PROFILE_FILE: &str = "profile.json";
/// Answers per window, unless `stoke serve --drift-window` says otherwise.
pub const DEFAULT_WINDOW: usize = 200;
/// The most holdout samples a profile is built from.
pub const MAX_REFERENCE: usize = 4000;
/// Values kept per reference distribution.
const QUANTILES: usize = 1000;
const RESAMPLES: usize = 1000;
const CONFIDENCE_BINS: usize = 20;
/// The smallest alert threshold on the class PSI (0.1 is the usual "no real change" bound).
const MIN_PSI: f64 = 0.1;
/// Kolmogorov's c(α) for α = 0.001: the floor of the KS thresholds, so that a reference
/// without spread (every text without unknown tokens) does not alert on one odd input.
const KS_FLOOR: f64 = 1.949;

/// What the model answered for one input, as drift sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub class: usize,
    pub confidence: f32,
    pub features: Vec<f32>,
}

impl Observation {
    /// The predicted class and its softmax probability from a row of logits.
    pub fn new(logits: &[f32], features: Vec<f32>) -> Self {
        let (class, top) =
            logits
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                });
        let total: f32 = logits.iter().map(|&v| (v - top).exp()).sum();
        Observation {
            class,
            confidence: 1.0 / total,
            features,
        }
    }
}

/// A distribution kept as sorted quantiles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Distribution {
    pub name: String,
    pub quantiles: Vec<f32>,
}

/// One statistic's alert threshold for windows of [`Profile::window`] answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Threshold {
    pub statistic: String,
    /// `psi` (classes) or `ks` (confidence and features).
    pub method: String,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Which split, of which run, at which checkpoint.
    pub source: String,
    pub samples: usize,
    pub classes: Vec<String>,
    /// Holdout answers per predicted class, in the classes' order.
    pub class_counts: Vec<u64>,
    /// Holdout answers per confidence bin of width 1/20, from 0 to 1.
    pub confidence_histogram: Vec<u64>,
    /// `confidence`, then each feature.
    pub distributions: Vec<Distribution>,
    pub window: usize,
    /// `classes`, then one per distribution.
    pub thresholds: Vec<Threshold>,
}

impl Profile {
    /// The profile of `observations`, calibrated for windows of `window` answers.
    pub fn build(
        source: String,
        classes: Vec<String>,
        feature_names: Vec<String>,
        observations: &[Observation],
        window: usize,
    ) -> Self {
        let mut class_counts = vec![0u64; classes.len()];
        let mut confidence_histogram = vec![0u64; CONFIDENCE_BINS];
        for observation in observations {
            if let Some(count) = class_counts.get_mut(observation.class) {
                *count += 1;
            }
            let bin = (observation.confidence * CONFIDENCE_BINS as f32) as usize;
            confidence_histogram[bin.min(CONFIDENCE_BINS - 1)] += 1;
        }
        let confidence = quantiles(observations.iter().map(|o| o.confidence).collect());
        let mut distributions = vec![Distribution {
            name: "confidence".into(),
            quantiles: confidence,
        }];
        for (index, name) in feature_names.into_iter().enumerate() {
            let values = observations.iter().map(|o| o.features[index]).collect();
            distributions.push(Distribution {
                name,
                quantiles: quantiles(values),
            });
        }
        let mut profile = Profile {
            source,
            samples: observations.len(),
            classes,
            class_counts,
            confidence_histogram,
            distributions,
            window,
            thresholds: Vec::new(),
        };
        profile.calibrate(window);
        profile
    }

    /// The statistics' names, in the order of [`Profile::scores`].
    pub fn statistics(&self) -> Vec<String> {
        std::iter::once("classes".to_string())
            .chain(self.distributions.iter().map(|d| d.name.clone()))
            .collect()
    }

    /// Sets the thresholds for windows of `window` answers, by scoring [`RESAMPLES`] windows
    /// drawn (seeded) from the reference itself.
    pub fn calibrate(&mut self, window: usize) {
        let window = window.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(0x000D_81F7_2026);
        let total: u64 = self.class_counts.iter().sum();
        let mut largest = vec![0f64; 1 + self.distributions.len()];
        for _ in 0..RESAMPLES {
            let mut counts = vec![0u64; self.class_counts.len()];
            for _ in 0..window {
                let mut draw = rng.random_range(0..total.max(1));
                let class = self
                    .class_counts
                    .iter()
                    .position(|&count| {
                        let inside = draw < count;
                        draw = draw.saturating_sub(count);
                        inside
                    })
                    .unwrap_or(0);
                counts[class] += 1;
            }
            largest[0] = largest[0].max(psi(&self.class_counts, &counts));
            for (index, distribution) in self.distributions.iter().enumerate() {
                let reference = &distribution.quantiles;
                let drawn: Vec<f32> = (0..window)
                    .map(|_| reference[rng.random_range(0..reference.len().max(1))])
                    .collect();
                largest[index + 1] = largest[index + 1].max(ks(reference, drawn));
            }
        }
        // The reference is a sample of `samples`, not the population: a window from the
        // population differs from it by the two samples' spread, not the window's alone.
        let widen = 1.0 + window as f64 / self.samples.max(1) as f64;
        let ks_floor = KS_FLOOR * (1.0 / window as f64 + 1.0 / self.samples.max(1) as f64).sqrt();
        self.thresholds = self
            .statistics()
            .into_iter()
            .zip(largest)
            .enumerate()
            .map(|(index, (statistic, value))| match index {
                0 => Threshold {
                    statistic,
                    method: "psi".into(),
                    value: (value * widen).max(MIN_PSI),
                },
                _ => Threshold {
                    statistic,
                    method: "ks".into(),
                    value: (value * widen.sqrt()).max(ks_floor),
                },
            })
            .collect();
        self.window = window;
    }

    /// Each statistic of `window` against the reference, in [`Profile::statistics`]' order.
    pub fn scores(&self, window: &[Observation]) -> Vec<f64> {
        let mut counts = vec![0u64; self.class_counts.len()];
        for observation in window {
            if let Some(count) = counts.get_mut(observation.class) {
                *count += 1;
            }
        }
        let mut scores = vec![psi(&self.class_counts, &counts)];
        for (index, distribution) in self.distributions.iter().enumerate() {
            let values = window
                .iter()
                .map(|o| match index {
                    0 => o.confidence,
                    _ => o.features.get(index - 1).copied().unwrap_or(f32::NAN),
                })
                .collect();
            scores.push(ks(&distribution.quantiles, values));
        }
        scores
    }
}

/// The features drift watches, by name, for inputs of `spec`; empty for kinds it does not.
pub fn feature_names(spec: &DataSpec) -> Vec<String> {
    match spec {
        DataSpec::ImageClassification { input, .. } => (0..input.channels)
            .map(|channel| format!("intensity_c{channel}"))
            .collect(),
        DataSpec::TextClassification { .. } => {
            vec!["length_tokens".into(), "unknown_token_rate".into()]
        }
        DataSpec::Tabular { numeric, .. } => numeric
            .iter()
            .map(|column| format!("column_{}", column.name))
            .collect(),
        _ => Vec::new(),
    }
}

/// Each sample's features (in [`feature_names`]' order) from the batch the model read:
/// images' mean intensity per channel in [0, 1] (the normalisation undone), texts' length
/// and share of `unknown` ids, rows' standardised numeric columns.
pub fn features(batch: &HostBatch, spec: &DataSpec, unknown: Option<u32>) -> Vec<Vec<f32>> {
    match (batch, spec) {
        (
            HostBatch::Images { pixels, shape, .. },
            DataSpec::ImageClassification { normalization, .. },
        ) => {
            let plane = shape[2] * shape[3];
            pixels
                .chunks_exact(shape[1] * plane)
                .map(|image| {
                    image
                        .chunks_exact(plane)
                        .enumerate()
                        .map(|(channel, values)| {
                            let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>()
                                / plane.max(1) as f64;
                            let (m, s) = (
                                normalization.mean.get(channel).copied().unwrap_or(0.0),
                                normalization.std.get(channel).copied().unwrap_or(1.0),
                            );
                            (mean * f64::from(s) + f64::from(m)) as f32
                        })
                        .collect()
                })
                .collect()
        }
        (
            HostBatch::Tokens {
                ids,
                shape,
                lengths,
                ..
            },
            DataSpec::TextClassification { .. },
        ) => ids
            .chunks_exact(shape[1].max(1))
            .zip(lengths)
            .map(|(row, &length)| {
                let unknowns = unknown.map_or(0, |unknown| {
                    row[..length.min(row.len())]
                        .iter()
                        .filter(|&&id| id == i64::from(unknown))
                        .count()
                });
                vec![length as f32, unknowns as f32 / length.max(1) as f32]
            })
            .collect(),
        (
            HostBatch::Rows {
                numeric,
                numeric_width,
                ..
            },
            DataSpec::Tabular { .. },
        ) if *numeric_width > 0 => numeric
            .chunks_exact(*numeric_width)
            .map(<[f32]>::to_vec)
            .collect(),
        _ => vec![Vec::new(); batch.size()],
    }
}

/// At most [`QUANTILES`] evenly spaced order statistics of `values` (finite ones only).
fn quantiles(mut values: Vec<f32>) -> Vec<f32> {
    values.retain(|v| v.is_finite());
    values.sort_by(f32::total_cmp);
    if values.len() <= QUANTILES {
        return values;
    }
    (0..QUANTILES)
        .map(|i| values[(i * (values.len() - 1)) / (QUANTILES - 1)])
        .collect()
}

/// The population stability index of `window`'s class counts against `reference`'s:
/// Σ (w − r) ln(w / r) over classes, both smoothed by half a count.
pub fn psi(reference: &[u64], window: &[u64]) -> f64 {
    let smoothed = |counts: &[u64]| -> Vec<f64> {
        let total = counts.iter().sum::<u64>() as f64 + 0.5 * counts.len() as f64;
        counts.iter().map(|&c| (c as f64 + 0.5) / total).collect()
    };
    let (r, w) = (smoothed(reference), smoothed(window));
    r.iter().zip(&w).map(|(r, w)| (w - r) * (w / r).ln()).sum()
}

/// The two-sample Kolmogorov–Smirnov distance between sorted `reference` and `window`
/// (non-finite values dropped): the largest gap between their empirical CDFs.
pub fn ks(reference: &[f32], mut window: Vec<f32>) -> f64 {
    window.retain(|v| v.is_finite());
    window.sort_by(f32::total_cmp);
    let (n, m) = (reference.len(), window.len());
    if n == 0 || m == 0 {
        return 0.0;
    }
    let (mut i, mut j, mut largest) = (0, 0, 0f64);
    while i < n && j < m {
        let x = reference[i].min(window[j]);
        while i < n && reference[i] <= x {
            i += 1;
        }
        while j < m && window[j] <= x {
            j += 1;
        }
        largest = largest.max((i as f64 / n as f64 - j as f64 / m as f64).abs());
    }
    largest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observations(seed: u64, count: usize, shift: f32) -> Vec<Observation> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let class = rng.random_range(0..4);
                Observation {
                    class: if shift > 0.0 { 0 } else { class },
                    confidence: (rng.random::<f32>() * 0.5 + 0.5 - shift).clamp(0.0, 1.0),
                    features: vec![rng.random::<f32>() + shift],
                }
            })
            .collect()
    }

    fn profile() -> Profile {
        let classes = (0..4).map(|c| c.to_string()).collect();
        Profile::build(
            "test".into(),
            classes,
            vec!["f".into()],
            &observations(1, 3000, 0.0),
            200,
        )
    }

    #[test]
    fn ks_is_the_largest_gap_between_the_cdfs() {
        assert_eq!(ks(&[1.0, 2.0, 3.0, 4.0], vec![1.0, 2.0, 3.0, 4.0]), 0.0);
        assert_eq!(ks(&[1.0, 2.0], vec![3.0, 4.0]), 1.0);
        assert!((ks(&[1.0, 2.0, 3.0, 4.0], vec![3.0, 4.0]) - 0.5).abs() < 1e-12);
        // Ties count on both sides at once.
        assert_eq!(ks(&[0.0, 0.0, 0.0], vec![0.0, 0.0]), 0.0);
    }

    #[test]
    fn psi_is_zero_for_equal_shares_and_grows_with_the_shift() {
        assert!(psi(&[100, 100], &[50, 50]).abs() < 1e-12);
        assert!(psi(&[100, 100], &[60, 40]) < psi(&[100, 100], &[90, 10]));
    }

    #[test]
    fn windows_from_the_reference_distribution_stay_under_and_shifted_ones_cross() {
        let profile = profile();
        let thresholds: Vec<f64> = profile.thresholds.iter().map(|t| t.value).collect();
        for (seed, window) in observations(2, 2000, 0.0).chunks(200).enumerate() {
            let scores = profile.scores(window);
            for ((score, threshold), name) in
                scores.iter().zip(&thresholds).zip(profile.statistics())
            {
                assert!(
                    score < threshold,
                    "window {seed}: {name} {score} ≥ {threshold}"
                );
            }
        }
        let shifted = profile.scores(&observations(3, 200, 0.4));
        for ((score, threshold), name) in shifted.iter().zip(&thresholds).zip(profile.statistics())
        {
            assert!(score > threshold, "shifted: {name} {score} ≤ {threshold}");
        }
    }

    #[test]
    fn softmax_confidence_of_a_row() {
        let o = Observation::new(&[0.0, 0.0, 2.0], vec![]);
        assert_eq!(o.class, 2);
        let expected = 2f32.exp() / (2.0 + 2f32.exp());
        assert!((o.confidence - expected).abs() < 1e-6);
    }
}
