//! `metrics.jsonl`: one JSON object per log interval and per evaluation.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::state::IntervalSums;
use crate::Error;
use crate::task::Task;

/// Metrics read back to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Mean loss per prediction (per token, for a language model).
    pub loss: f64,
    /// Samples (images, texts, windows, rows) seen.
    pub samples: usize,
    /// Tokens read (text tasks).
    #[serde(default)]
    pub tokens: usize,
    /// The task's metrics: `accuracy`, `macro_f1`, `rmse`, `perplexity`, ...
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
}

impl Measured {
    /// The task metric `name`, if the task reports it.
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "loss" => Some(self.loss),
            name => self.metrics.get(name).copied(),
        }
    }

    /// The metrics of `sums`; `None` when they hold no sample.
    pub fn from_sums(sums: &IntervalSums, task: &Task) -> Option<Self> {
        (sums.samples > 0).then(|| {
            let loss = sums.loss_sum / sums.predictions as f64;
            Measured {
                loss,
                samples: sums.samples,
                tokens: sums.tokens,
                metrics: task.measure(&sums.task, sums.predictions, loss),
            }
        })
    }

    /// The metrics of a split's `sums`: NaN where they hold no sample (an empty split).
    pub fn of_split(sums: &IntervalSums, task: &Task) -> Self {
        Self::from_sums(sums, task).unwrap_or(Measured {
            loss: f64::NAN,
            samples: 0,
            tokens: 0,
            metrics: BTreeMap::new(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitName {
    Train,
    Valid,
    Test,
}

impl std::fmt::Display for SplitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SplitName::Train => "train",
            SplitName::Valid => "valid",
            SplitName::Test => "test",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Optimizer steps taken so far.
    pub step: usize,
    /// The epoch in progress, from 1.
    pub epoch: usize,
    pub split: SplitName,
    pub loss: f64,
    pub lr: f64,
    /// Training throughput over the interval, or evaluation throughput.
    pub samples_per_s: f64,
    /// Seconds since the run started.
    pub time_s: f64,
    /// Text tasks: tokens read per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    /// The task's metrics: `accuracy`, `macro_f1`, `top_k_accuracy` (classification);
    /// `perplexity`, `bits_per_char` (language models); `mae`, `rmse`, `r2` (regression);
    /// `micro_f1`, `macro_f1`, `exact_match` (multi-label).
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
}

impl MetricRecord {
    /// A record of `measured` at `seconds` of throughput time.
    pub fn new(
        split: SplitName,
        measured: &Measured,
        seconds: f64,
        position: (usize, usize, f64, f64),
    ) -> Self {
        let (step, epoch, lr, time_s) = position;
        Self {
            step,
            epoch,
            split,
            loss: measured.loss,
            lr,
            samples_per_s: measured.samples as f64 / seconds,
            time_s,
            tokens_per_s: (measured.tokens > 0).then(|| measured.tokens as f64 / seconds),
            metrics: measured.metrics.clone(),
        }
    }

    /// The value of `name`: the loss or one of the task's metrics.
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "loss" => Some(self.loss),
            name => self.metrics.get(name).copied(),
        }
    }
}

/// The metric a run is read by, from the names its records hold: perplexity (language
/// models), RMSE (regression), micro-F1 (multi-label), else accuracy; with whether higher is
/// better.
pub fn headline(records: &[MetricRecord]) -> (&'static str, bool) {
    let has = |name: &str| records.iter().any(|r| r.metrics.contains_key(name));
    if has("perplexity") {
        ("perplexity", false)
    } else if has("rmse") {
        ("rmse", false)
    } else if has("micro_f1") {
        ("micro_f1", true)
    } else {
        ("accuracy", true)
    }
}

pub struct MetricsLog {
    path: PathBuf,
    /// `None` on the ranks of a distributed run that do not write the run directory: they
    /// count the lines rank 0 writes and write none.
    writer: Option<BufWriter<File>>,
    lines: usize,
}

impl MetricsLog {
    pub fn create(path: &Path) -> Result<Self, Error> {
        let file = File::create(path).map_err(|source| Error::io(path, source))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Some(BufWriter::new(file)),
            lines: 0,
        })
    }

    /// A log that only counts, starting at `lines`: on ranks other than 0.
    pub fn counting(path: &Path, lines: usize) -> Self {
        Self {
            path: path.to_path_buf(),
            writer: None,
            lines,
        }
    }

    /// Reopens a run's log keeping only its first `lines` lines: the records a resumed
    /// checkpoint had seen. Returns the log and how many lines were dropped.
    pub fn resume(path: &Path, lines: usize) -> Result<(Self, usize), Error> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let kept = all.len().min(lines);
        let mut content = all[..kept].join("\n");
        if kept > 0 {
            content.push('\n');
        }
        crate::files::write_atomic(path, content.as_bytes())?;
        let file = File::options()
            .append(true)
            .open(path)
            .map_err(|source| Error::io(path, source))?;
        let log = Self {
            path: path.to_path_buf(),
            writer: Some(BufWriter::new(file)),
            lines: kept,
        };
        Ok((log, all.len() - kept))
    }

    /// Appends one record and flushes it, so a killed run keeps every line it logged.
    pub fn append(&mut self, record: &MetricRecord) -> Result<(), Error> {
        if let Some(writer) = &mut self.writer {
            let line = serde_json::to_string(record).expect("metric records serialize");
            writeln!(writer, "{line}")
                .and_then(|()| writer.flush())
                .map_err(|source| Error::io(&self.path, source))?;
        }
        self.lines += 1;
        Ok(())
    }

    /// Lines written so far.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Makes the lines written so far durable (before a checkpoint that counts them).
    pub fn sync(&mut self) -> Result<(), Error> {
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        writer
            .flush()
            .and_then(|()| writer.get_ref().sync_data())
            .map_err(|source| Error::io(&self.path, source))
    }
}

/// Reads a metrics log back, for tests and tools.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRecord>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::io(path, source))?;
    text.lines()
        .enumerate()
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|err| Error::Corrupt {
                path: path.to_path_buf(),
                detail: format!("line {}: {err}", number + 1),
            })
        })
        .collect()
}
