//! The classification report: the confusion matrix, per-class precision, recall, F1 and
//! support with macro and weighted averages, the most frequent confusions, and calibration
//! (expected calibration error over 15 equal-width bins, the reliability table, the mean
//! confidence of right and wrong answers).

use serde::Serialize;

/// Equal-width confidence bins for the expected calibration error, as in Guo et al. (2017).
pub const CALIBRATION_BINS: usize = 15;

/// How the model did on one example.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub target: usize,
    pub predicted: usize,
    /// The softmax probability of `predicted`.
    pub confidence: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassificationReport {
    pub classes: Vec<String>,
    pub samples: usize,
    pub accuracy: f64,
    /// `confusion[true][predicted]`: counts.
    pub confusion: Vec<Vec<u64>>,
    /// Each row divided by its class's support (a row of zeros for an absent class).
    pub confusion_normalized: Vec<Vec<f64>>,
    pub per_class: Vec<ClassMetrics>,
    pub macro_avg: Averages,
    pub weighted_avg: Averages,
    /// The most frequent (true → predicted) mistakes, most frequent first (at most 10).
    pub top_confusions: Vec<Confusion>,
    pub calibration: Calibration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Confusion {
    pub true_class: String,
    pub predicted: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// Σ over bins of (bin size / samples) × |accuracy − mean confidence|.
    pub ece: f64,
    pub bins: usize,
    pub binning: &'static str,
    /// The reliability diagram's data, one entry per bin (empty bins included).
    pub reliability: Vec<ReliabilityBin>,
    pub mean_confidence_correct: Option<f64>,
    pub mean_confidence_wrong: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    pub accuracy: Option<f64>,
    pub mean_confidence: Option<f64>,
}

impl ClassificationReport {
    pub fn new(outcomes: &[Outcome], classes: &[String]) -> Self {
        let n = classes.len();
        let mut confusion = vec![vec![0u64; n]; n];
        for outcome in outcomes {
            confusion[outcome.target][outcome.predicted] += 1;
        }
        let support: Vec<u64> = confusion.iter().map(|row| row.iter().sum()).collect();
        let predicted: Vec<u64> = (0..n)
            .map(|c| confusion.iter().map(|row| row[c]).sum())
            .collect();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let per_class: Vec<ClassMetrics> = (0..n)
            .map(|c| {
                let hits = confusion[c][c];
                let (precision, recall) = (ratio(hits, predicted[c]), ratio(hits, support[c]));
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                ClassMetrics {
                    class: classes[c].clone(),
                    precision,
                    recall,
                    f1,
                    support: support[c],
                }
            })
            .collect();
        let samples = outcomes.len();
        let average = |weight: &dyn Fn(&ClassMetrics) -> f64| {
            let total: f64 = per_class.iter().map(weight).sum();
            let mean = |value: fn(&ClassMetrics) -> f64| {
                if total == 0.0 {
                    0.0
                } else {
                    per_class.iter().map(|m| weight(m) * value(m)).sum::<f64>() / total
                }
            };
            Averages {
                precision: mean(|m| m.precision),
                recall: mean(|m| m.recall),
                f1: mean(|m| m.f1),
            }
        };
        let macro_avg = average(&|_| 1.0);
        let weighted_avg = average(&|m| m.support as f64);
        let mut top_confusions: Vec<Confusion> = (0..n)
            .flat_map(|t| (0..n).map(move |p| (t, p)))
            .filter(|&(t, p)| t != p && confusion[t][p] > 0)
            .map(|(t, p)| Confusion {
                true_class: classes[t].clone(),
                predicted: classes[p].clone(),
                count: confusion[t][p],
            })
            .collect();
        // Stable: ties keep the (true, predicted) class order.
        top_confusions.sort_by_key(|c| std::cmp::Reverse(c.count));
        top_confusions.truncate(10);
        let confusion_normalized = confusion
            .iter()
            .zip(&support)
            .map(|(row, &total)| row.iter().map(|&count| ratio(count, total)).collect())
            .collect();
        let correct = outcomes.iter().filter(|o| o.target == o.predicted).count();
        ClassificationReport {
            classes: classes.to_vec(),
            samples,
            accuracy: ratio(correct as u64, samples as u64),
            confusion,
            confusion_normalized,
            per_class,
            macro_avg,
            weighted_avg,
            top_confusions,
            calibration: Calibration::new(outcomes),
        }
    }
}

impl Calibration {
    fn new(outcomes: &[Outcome]) -> Self {
        let bin_of = |confidence: f64| {
            // Bins are (lower, upper]; a confidence of 0 goes in the first.
            ((confidence * CALIBRATION_BINS as f64).ceil() as usize).clamp(1, CALIBRATION_BINS) - 1
        };
        let mut counts = [0u64; CALIBRATION_BINS];
        let mut hits = [0u64; CALIBRATION_BINS];
        let mut confidence_sums = [0f64; CALIBRATION_BINS];
        for outcome in outcomes {
            let bin = bin_of(outcome.confidence);
            counts[bin] += 1;
            hits[bin] += u64::from(outcome.target == outcome.predicted);
            confidence_sums[bin] += outcome.confidence;
        }
        let samples = outcomes.len() as f64;
        let mut ece = 0.0;
        let reliability = (0..CALIBRATION_BINS)
            .map(|bin| {
                let count = counts[bin];
                let (accuracy, mean_confidence) = if count == 0 {
                    (None, None)
                } else {
                    let accuracy = hits[bin] as f64 / count as f64;
                    let confidence = confidence_sums[bin] / count as f64;
                    ece += count as f64 / samples * (accuracy - confidence).abs();
                    (Some(accuracy), Some(confidence))
                };
                ReliabilityBin {
                    lower: bin as f64 / CALIBRATION_BINS as f64,
                    upper: (bin + 1) as f64 / CALIBRATION_BINS as f64,
                    count,
                    accuracy,
                    mean_confidence,
                }
            })
            .collect();
        let mean = |right: bool| {
            let chosen: Vec<f64> = outcomes
                .iter()
                .filter(|o| (o.target == o.predicted) == right)
                .map(|o| o.confidence)
                .collect();
            (!chosen.is_empty()).then(|| chosen.iter().sum::<f64>() / chosen.len() as f64)
        };
        Calibration {
            ece,
            bins: CALIBRATION_BINS,
            binning: "15 equal-width bins of the top class's probability, (lower, upper]",
            reliability,
            mean_confidence_correct: mean(true),
            mean_confidence_wrong: mean(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_metrics_and_calibration_of_a_small_case() {
        let classes: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let o = |target, predicted, confidence| Outcome {
            target,
            predicted,
            confidence,
        };
        let outcomes = [o(0, 0, 0.9), o(0, 1, 0.6), o(1, 1, 0.95), o(1, 1, 0.5)];
        let report = ClassificationReport::new(&outcomes, &classes);
        assert_eq!(report.confusion, vec![vec![1, 1], vec![0, 2]]);
        assert_eq!(report.per_class[0].recall, 0.5);
        assert!((report.per_class[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(report.top_confusions[0].count, 1);
        // Bins: 0.9 → (13/15, 14/15], 0.95 → (14/15, 1], 0.6 → (8/15, 9/15], 0.5 → (7/15, 8/15].
        let ece = 0.25 * (1.0 - 0.9) + 0.25 * (1.0 - 0.95) + 0.25 * 0.6 + 0.25 * (1.0 - 0.5);
        assert!((report.calibration.ece - ece).abs() < 1e-12);
        assert_eq!(report.calibration.mean_confidence_wrong, Some(0.6));
    }
}
