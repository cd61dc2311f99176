//! Evaluation reports a person can act on, written into a folder (`<run>/report/` at the end
//! of every run, or wherever `stoke eval --report` says): `report.json` with every number,
//! the charts as SVG and PNG, and `index.html`, one self-contained page.
//!
//! For classifiers (`classification.rs`): the confusion matrix, per-class metrics, the most
//! frequent confusions and calibration; slices of the examples by an attribute, each
//! against the rest with a Wilson interval (`slices.rs`); the most confidently wrong
//! examples (`errors.rs`). For language models (`language.rs`): loss by position in the
//! window and the hardest tokens. For regression and multi-label data (`targets.rs`): each
//! target's or label's scores, and the rows predicted worst. `page.rs` lays it all out with the run's training
//! curves, config and data report.
//!
//! It knows no model: `train::eval` runs the model and hands over outcomes and examples.

mod classification;
mod errors;
mod language;
mod page;
mod slices;
mod targets;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use classification::{
    Averages, CALIBRATION_BINS, Calibration, ClassMetrics, ClassificationReport, Confusion,
    Outcome, ReliabilityBin,
};
pub use errors::{WorstError, worst_errors};
pub use language::{LanguageReport, LossSums, TokenLoss};
pub use slices::{GroupMetrics, Slice, SliceReport, wilson};
pub use targets::{MultiLabelReport, RegressionReport, RegressionRows, TargetScores, WorstRow};

use crate::Error;
use crate::plot::{self, Heatmap, Lines, Reliability};

pub use crate::run::REPORT_DIR;

/// Everything the report says, as `report.json` holds it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub run_dir: PathBuf,
    pub checkpoint: String,
    pub split: String,
    /// The evaluation's numbers (loss, accuracy, macro-F1 or perplexity), as `stoke eval`
    /// prints them.
    pub eval: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<ClassificationReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slices: Option<SliceReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub worst_errors: Vec<WorstError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_model: Option<LanguageReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<MultiLabelReport>,
    /// The `stoke data inspect` report of the run's data, when one was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_report: Option<PathBuf>,
}

/// Writes `report.json`, the charts and `index.html` into `dir` (each file atomically);
/// returns the page's path.
pub fn write(report: &Report, dir: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if let Some(classification) = &report.classification {
        let heatmap = confusion_heatmap(classification);
        plot::write_chart(&dir.join("confusion"), heatmap.size(), &heatmap)?;
        let calibration = &classification.calibration;
        let reliability = Reliability {
            title: format!(
                "Reliability ({} equal-width bins, ECE {:.4})",
                calibration.bins, calibration.ece
            ),
            bins: calibration
                .reliability
                .iter()
                .map(|bin| (bin.lower, bin.upper, bin.accuracy))
                .collect(),
        };
        plot::write_chart(&dir.join("reliability"), (640, 560), &reliability)?;
    }
    let grid = errors::write_grid(&report.worst_errors, &dir.join(errors::GRID_FILE))?;
    if let Some(language) = &report.language_model {
        let curve = Lines {
            title: "Loss by position in the context window".into(),
            x_label: "position (tokens of context − 1)".into(),
            y_label: "mean loss (nats per token)".into(),
            series: vec![(
                report.split.clone(),
                language
                    .loss_by_position
                    .iter()
                    .enumerate()
                    .map(|(position, &loss)| (position as f64, loss))
                    .collect(),
            )],
        };
        plot::write_lines(&dir.join("loss-by-position"), &curve)?;
    }
    let json = serde_json::to_string_pretty(report).expect("the report serializes");
    crate::files::write_atomic(&dir.join("report.json"), json.as_bytes())?;
    let page = dir.join("index.html");
    crate::files::write_atomic(&page, page::render(report, dir, grid).as_bytes())?;
    Ok(page)
}

fn confusion_heatmap(report: &ClassificationReport) -> Heatmap {
    Heatmap {
        title: "Confusion matrix (rows: true class, shade: share of the row)".into(),
        x_label: "predicted".into(),
        y_label: "true".into(),
        labels: report.classes.clone(),
        shade: report.confusion_normalized.clone(),
        notes: report
            .confusion
            .iter()
            .map(|row| row.iter().map(u64::to_string).collect())
            .collect(),
    }
}
