//! Files derived from `metrics.jsonl` for people and for other tools, rewritten after every
//! evaluation: `metrics.csv`, `plots/` (loss, accuracy or perplexity, learning rate and
//! throughput against steps, as SVG and PNG) and, if asked for, TensorBoard event files.

use std::path::Path;

use serde::Serialize;

use super::metrics::{MetricRecord, SplitName, read_metrics};
use crate::Error;
use crate::plot::{Lines, write_lines};

pub const CSV_FILE: &str = "metrics.csv";
pub const PLOTS_DIR: &str = "plots";

/// One CSV row: every field of a record, empty where the task has no such metric.
#[derive(Serialize)]
struct Row<'a> {
    step: usize,
    epoch: usize,
    split: &'a str,
    loss: f64,
    accuracy: f64,
    lr: f64,
    samples_per_s: f64,
    time_s: f64,
    macro_f1: Option<f64>,
    perplexity: Option<f64>,
    bits_per_char: Option<f64>,
    tokens_per_s: Option<f64>,
    top_k_accuracy: Option<f64>,
}

/// Rewrites `metrics.csv`, the plots and, with `tensorboard`, the TensorBoard event file of
/// the run in `run_dir` from its metrics log.
pub fn write(run_dir: &Path, tensorboard: bool) -> Result<(), Error> {
    let records = read_metrics(&run_dir.join(super::run_dir::METRICS_FILE))?;
    write_csv(&run_dir.join(CSV_FILE), &records)?;
    if tensorboard {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let started = now - records.last().map_or(0.0, |r| r.time_s);
        super::tensorboard::write(run_dir, &records, started)?;
    }
    let plots = run_dir.join(PLOTS_DIR);
    std::fs::create_dir_all(&plots).map_err(|source| Error::io(&plots, source))?;
    for (name, chart) in charts(&records) {
        write_lines(&plots.join(name), &chart)?;
    }
    Ok(())
}

fn write_csv(path: &Path, records: &[MetricRecord]) -> Result<(), Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for record in records {
        let split = record.split.to_string();
        writer
            .serialize(Row {
                step: record.step,
                epoch: record.epoch,
                split: &split,
                loss: record.loss,
                accuracy: record.accuracy,
                lr: record.lr,
                samples_per_s: record.samples_per_s,
                time_s: record.time_s,
                macro_f1: record.macro_f1,
                perplexity: record.perplexity,
                bits_per_char: record.bits_per_char,
                tokens_per_s: record.tokens_per_s,
                top_k_accuracy: record.top_k_accuracy,
            })
            .expect("metric rows serialise");
    }
    let bytes = writer.into_inner().expect("writing to memory cannot fail");
    crate::files::write_atomic(path, &bytes)
}

/// The run's charts: the curves of the training and validation records against steps.
pub fn charts(records: &[MetricRecord]) -> Vec<(&'static str, Lines)> {
    let series = |split: SplitName, value: &dyn Fn(&MetricRecord) -> Option<f64>| {
        let points: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| r.split == split)
            .filter_map(|r| Some((r.step as f64, value(r)?)))
            .collect();
        (!points.is_empty()).then(|| (split.to_string(), points))
    };
    let both = |value: &dyn Fn(&MetricRecord) -> Option<f64>| -> Vec<(String, Vec<(f64, f64)>)> {
        [SplitName::Train, SplitName::Valid]
            .into_iter()
            .filter_map(|split| series(split, value))
            .collect()
    };
    let chart = |title: &str, y_label: &str, series| Lines {
        title: title.into(),
        x_label: "step".into(),
        y_label: y_label.into(),
        series,
    };
    let language = records.iter().any(|r| r.perplexity.is_some());
    let quality = if language {
        chart(
            "Perplexity",
            "perplexity (exp of loss per token)",
            both(&|r| r.perplexity),
        )
    } else {
        chart(
            "Accuracy",
            "accuracy (%)",
            both(&|r| Some(r.accuracy * 100.0)),
        )
    };
    vec![
        (
            "loss",
            chart("Loss", "cross-entropy loss (nats)", both(&|r| Some(r.loss))),
        ),
        (if language { "perplexity" } else { "accuracy" }, quality),
        (
            "lr",
            chart(
                "Learning rate",
                "learning rate",
                series(SplitName::Train, &|r| Some(r.lr))
                    .into_iter()
                    .collect(),
            ),
        ),
        (
            "throughput",
            chart(
                "Training throughput",
                "samples/s",
                series(SplitName::Train, &|r| Some(r.samples_per_s))
                    .into_iter()
                    .collect(),
            ),
        ),
    ]
}
