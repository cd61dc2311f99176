//! `metrics.jsonl`: one JSON object per log interval and per evaluation.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

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
    pub accuracy: f64,
    pub lr: f64,
    /// Training throughput over the interval, or evaluation throughput.
    pub samples_per_s: f64,
    /// Seconds since the run started.
    pub time_s: f64,
}

pub struct MetricsLog {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl MetricsLog {
    pub fn create(path: &Path) -> Result<Self, Error> {
        let file = File::create(path).map_err(|source| Error::io(path, source))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
        })
    }

    /// Appends one record and flushes it, so a killed run keeps every line it logged.
    pub fn append(&mut self, record: &MetricRecord) -> Result<(), Error> {
        let line = serde_json::to_string(record).expect("metric records serialize");
        writeln!(self.writer, "{line}")
            .and_then(|()| self.writer.flush())
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
