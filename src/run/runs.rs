//! `stoke runs`: the runs under a directory, one run in detail, and several side by side
//! (the config keys they differ in, their metrics, and their curves overlaid).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::metrics::{MetricRecord, SplitName, read_metrics};
use super::{RunDir, RunState, RunStatus, SUMMARY_FILE, Summary};
use crate::Error;
use crate::config::{self, ExperimentConfig};
use crate::plot::{Lines, write_lines};

/// What `stoke runs` knows about one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub path: PathBuf,
    pub name: String,
    pub model: String,
    pub status: String,
    pub steps: usize,
    pub wall_time_s: f64,
    /// The best validation value of the run's quality metric, and that metric's name.
    pub best: Option<(String, f64)>,
    /// The test split's accuracy (classification) or perplexity (language models).
    pub test: Option<(String, f64)>,
    #[serde(skip)]
    pub config: ExperimentConfig,
    #[serde(skip)]
    pub records: Vec<MetricRecord>,
    #[serde(skip)]
    pub summary: Option<Summary>,
    /// Per-class F1 from the run's evaluation report (`report/report.json`), if it has one.
    #[serde(skip)]
    pub per_class: Option<PerClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads the run in `path`.
pub fn open(path: &Path) -> Result<RunInfo, Error> {
    let (run, config) = RunDir::open(path)?;
    let records = read_metrics(&run.metrics_path()).unwrap_or_default();
    let summary: Option<Summary> = std::fs::read_to_string(path.join(SUMMARY_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let status = RunStatus::read(path);
    let state = match (&status, &summary) {
        (Some(status), _) => status.state.to_string(),
        // Runs from before status.json: a summary means the run finished.
        (None, Some(_)) => RunState::Finished.to_string(),
        (None, None) => "unknown".into(),
    };
    let (metric, higher) = super::metrics::headline(&records);
    let pick: fn(f64, f64) -> f64 = if higher { f64::max } else { f64::min };
    let quality = |split: SplitName, pick: fn(f64, f64) -> f64| {
        records
            .iter()
            .filter(|r| r.split == split)
            .filter_map(|r| r.get(metric))
            .reduce(pick)
    };
    Ok(RunInfo {
        path: path.to_path_buf(),
        name: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        model: config.model.kind().to_string(),
        status: state,
        steps: records.last().map_or(0, |r| r.step),
        wall_time_s: summary.as_ref().map_or_else(
            || records.last().map_or(0.0, |r| r.time_s),
            |s| s.wall_time_s,
        ),
        best: quality(SplitName::Valid, pick).map(|v| (metric.to_string(), v)),
        test: quality(SplitName::Test, pick).map(|v| (metric.to_string(), v)),
        error: status.and_then(|s| s.error),
        config,
        records,
        summary,
        per_class: PerClass::read(&path.join(super::REPORT_DIR).join("report.json")),
    })
}

/// A run's per-class F1, and the split it was measured on.
#[derive(Debug, Clone, PartialEq)]
pub struct PerClass {
    pub split: String,
    pub f1: Vec<(String, f64)>,
}

impl PerClass {
    fn read(path: &Path) -> Option<Self> {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        let f1 = report["classification"]["per_class"]
            .as_array()?
            .iter()
            .map(|class| Some((class["class"].as_str()?.to_string(), class["f1"].as_f64()?)))
            .collect::<Option<Vec<_>>>()?;
        Some(PerClass {
            split: report["split"].as_str()?.to_string(),
            f1,
        })
    }
}

/// Per-class F1 of `runs` side by side: each class of any run's report, with each run's F1
/// (`None` where the run has no report or not that class), in the first report's class
/// order. `None` unless at least two runs have reports.
pub fn per_class_f1(runs: &[RunInfo]) -> Option<Vec<(String, Vec<Option<f64>>)>> {
    let reports: Vec<&PerClass> = runs.iter().filter_map(|r| r.per_class.as_ref()).collect();
    if reports.len() < 2 {
        return None;
    }
    let mut classes: Vec<&str> = Vec::new();
    for report in &reports {
        for (class, _) in &report.f1 {
            if !classes.contains(&class.as_str()) {
                classes.push(class);
            }
        }
    }
    Some(
        classes
            .into_iter()
            .map(|class| {
                let values = runs
                    .iter()
                    .map(|run| {
                        let report = run.per_class.as_ref()?;
                        report
                            .f1
                            .iter()
                            .find(|(c, _)| c == class)
                            .map(|(_, f1)| *f1)
                    })
                    .collect();
                (class.to_string(), values)
            })
            .collect(),
    )
}

/// Every run under `runs_dir` (directories with a config.toml), oldest first.
pub fn list(runs_dir: &Path) -> Result<Vec<RunInfo>, Error> {
    let entries = std::fs::read_dir(runs_dir).map_err(|source| Error::io(runs_dir, source))?;
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join(super::CONFIG_FILE).is_file())
        .collect();
    dirs.sort_by_key(|dir| {
        std::fs::metadata(dir.join(super::CONFIG_FILE))
            .and_then(|m| m.modified())
            .ok()
    });
    dirs.iter().map(|dir| open(dir)).collect()
}

/// Config keys whose values differ between `runs`: key → one value per run.
pub fn config_differences(runs: &[RunInfo]) -> BTreeMap<String, Vec<String>> {
    let flat: Vec<BTreeMap<String, String>> =
        runs.iter().map(|r| config::flatten(&r.config)).collect();
    let keys: std::collections::BTreeSet<&String> = flat.iter().flat_map(|f| f.keys()).collect();
    keys.into_iter()
        .filter(|key| key.as_str() != "run.name")
        .filter_map(|key| {
            let values: Vec<String> = flat
                .iter()
                .map(|f| f.get(key).cloned().unwrap_or_else(|| "(not set)".into()))
                .collect();
            values
                .iter()
                .any(|v| *v != values[0])
                .then(|| (key.clone(), values))
        })
        .collect()
}

/// Writes the validation curves of `runs` overlaid, one chart per metric, into `out`;
/// returns the files written.
pub fn write_overlays(runs: &[RunInfo], out: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(out).map_err(|source| Error::io(out, source))?;
    let all: Vec<MetricRecord> = runs.iter().flat_map(|r| r.records.clone()).collect();
    let (metric, _) = super::metrics::headline(&all);
    let curve = |run: &RunInfo, value: &dyn Fn(&MetricRecord) -> Option<f64>| {
        let points: Vec<(f64, f64)> = run
            .records
            .iter()
            .filter(|r| r.split == SplitName::Valid)
            .filter_map(|r| Some((r.step as f64, value(r)?)))
            .collect();
        (run.name.clone(), points)
    };
    let chart = |title: &str, y_label: &str, value: &dyn Fn(&MetricRecord) -> Option<f64>| Lines {
        title: title.into(),
        x_label: "step".into(),
        y_label: y_label.into(),
        series: runs.iter().map(|run| curve(run, value)).collect(),
    };
    let headline = match metric {
        "accuracy" => chart("Validation accuracy", "accuracy (%)", &|r| {
            r.get("accuracy").map(|a| a * 100.0)
        }),
        other => chart(&format!("Validation {other}"), other, &|r| r.get(other)),
    };
    let charts = [
        (
            "compare-loss".to_string(),
            chart("Validation loss", "loss", &|r| Some(r.loss)),
        ),
        (format!("compare-{}", metric.replace('_', "-")), headline),
    ];
    let mut written = Vec::new();
    for (name, chart) in charts {
        written.extend(write_lines(&out.join(name), &chart)?);
    }
    Ok(written)
}
