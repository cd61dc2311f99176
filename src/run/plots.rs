//! Files derived from `metrics.jsonl` for people and for other tools, rewritten after every
//! evaluation: `metrics.csv`, `plots/` (loss, accuracy or perplexity, learning rate and
//! throughput against steps, as SVG and PNG; for a followed run, each shard's score before
//! training on it and the candidates' holdout figures, from `follow.jsonl`) and, if asked
//! for, TensorBoard event files.

use std::path::Path;

use super::follow::RoundRecord;
use super::metrics::{MetricRecord, SplitName, read_metrics};
use crate::Error;
use crate::plot::{Lines, write_lines};

pub const CSV_FILE: &str = "metrics.csv";
pub const PLOTS_DIR: &str = "plots";
/// A followed run's rounds, one JSON line each.
pub const FOLLOW_FILE: &str = "follow.jsonl";

/// Rewrites `metrics.csv`, the plots and, with `tensorboard`, the TensorBoard event file of
/// the run in `run_dir` from its metrics log.
pub fn write(run_dir: &Path, tensorboard: bool) -> Result<(), Error> {
    let records = read_metrics(&run_dir.join(super::METRICS_FILE))?;
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
    if let Some(chart) = follow_chart(run_dir)? {
        write_lines(&plots.join(FOLLOW_PLOT), &chart)?;
    }
    Ok(())
}

/// The stem of the followed run's chart in `plots/`.
pub const FOLLOW_PLOT: &str = "follow";

/// The rounds of a followed run (`follow.jsonl`), none when the run did not follow.
pub fn follow_rounds(run_dir: &Path) -> Result<Vec<RoundRecord>, Error> {
    let path = run_dir.join(FOLLOW_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::io(&path, source)),
    };
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line)
                .map_err(|err| Error::Usage(format!("{}:{}: {err}", path.display(), index + 1)))
        })
        .collect()
}

/// A followed run's gate metric per shard: on the shard before training on it (how the
/// model did on fresh data) and the candidate's on the holdout after.
fn follow_chart(run_dir: &Path) -> Result<Option<Lines>, Error> {
    let rounds = follow_rounds(run_dir)?;
    let Some(metric) = rounds.first().map(|r| r.decision.metric.clone()) else {
        return Ok(None);
    };
    let series = |name: &str, value: &dyn Fn(&RoundRecord) -> Option<f64>| {
        let points = rounds
            .iter()
            .enumerate()
            .filter_map(|(index, round)| Some(((index + 1) as f64, value(round)?)))
            .collect();
        (name.to_string(), points)
    };
    Ok(Some(Lines {
        title: format!("Following: {metric} per shard"),
        x_label: "shard taken".into(),
        y_label: metric.clone(),
        series: vec![
            series("fresh shard, before training on it", &|r| {
                r.before.get(&metric)
            }),
            series("holdout, candidate", &|r| r.holdout.get(&metric)),
            series(
                "holdout, promoted version",
                &|r| match r.decision.promoted {
                    true => Some(r.decision.candidate),
                    false => r.decision.current,
                },
            ),
        ],
    }))
}

/// `metrics.csv`: one row per record, the loop's columns then every metric any record has
/// (in name order), empty where a record has none.
fn write_csv(path: &Path, records: &[MetricRecord]) -> Result<(), Error> {
    let metrics: std::collections::BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.metrics.keys().map(String::as_str))
        .collect();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fixed = [
        "step",
        "epoch",
        "split",
        "loss",
        "lr",
        "samples_per_s",
        "time_s",
        "tokens_per_s",
    ];
    let header: Vec<&str> = fixed
        .iter()
        .copied()
        .chain(metrics.iter().copied())
        .collect();
    writer
        .write_record(&header)
        .expect("writing to memory cannot fail");
    for record in records {
        let optional = |value: Option<f64>| value.map_or_else(String::new, |v| v.to_string());
        let mut row = vec![
            record.step.to_string(),
            record.epoch.to_string(),
            record.split.to_string(),
            record.loss.to_string(),
            record.lr.to_string(),
            record.samples_per_s.to_string(),
            record.time_s.to_string(),
            optional(record.tokens_per_s),
        ];
        row.extend(
            metrics
                .iter()
                .map(|name| optional(record.metrics.get(*name).copied())),
        );
        writer
            .write_record(&row)
            .expect("writing to memory cannot fail");
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
    // The task's headline metric: what a person reads the run by.
    let has = |name: &str| records.iter().any(|r| r.metrics.contains_key(name));
    let (name, quality) = if has("perplexity") {
        let curve = both(&|r| r.get("perplexity"));
        (
            "perplexity",
            chart("Perplexity", "perplexity (exp of loss per token)", curve),
        )
    } else if has("rmse") {
        (
            "rmse",
            chart("RMSE", "root mean squared error", both(&|r| r.get("rmse"))),
        )
    } else if has("micro_f1") {
        (
            "f1",
            chart("Micro-F1", "micro-F1", both(&|r| r.get("micro_f1"))),
        )
    } else {
        let curve = both(&|r| r.get("accuracy").map(|a| a * 100.0));
        ("accuracy", chart("Accuracy", "accuracy (%)", curve))
    };
    vec![
        ("loss", chart("Loss", "loss", both(&|r| Some(r.loss)))),
        (name, quality),
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
