//! The run directory every training run writes:
//!
//! ```text
//! runs/<name>-<YYYYmmdd-HHMMSS>/
//!   config.toml      the resolved config (every default filled in)
//!   tokenizer.json   text tasks: the tokenizer
//!   metrics.jsonl    one JSON object per log interval and per evaluation
//!   checkpoints/     step-<N>/ directories, `latest` and `best` pointers
//!   metrics.csv      the same records as CSV
//!   plots/           loss, accuracy or perplexity, learning rate, throughput (SVG, PNG)
//!   status.json      running, finished, interrupted or failed (and the process)
//!   summary.json     final metrics, best epoch, wall time, backend
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::Checkpoints;
use super::metrics::Measured;
use crate::Error;
use crate::backend::BackendName;
use crate::config::{self, ExperimentConfig};
use crate::data::{DataSpec, Skipped, Tokenizer};
use crate::files::write_atomic;

pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
pub const STATUS_FILE: &str = "status.json";
/// Where a run keeps the report its training wrote (`report.html`, `report.json`, plots).
pub const REPORT_DIR: &str = "report";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Finished,
    Interrupted,
    Failed,
    /// Written as running by a process that no longer exists: killed, or the machine stopped.
    Killed,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self).expect("a state serialises");
        f.write_str(text.as_str().unwrap_or_default())
    }
}

/// `status.json`: what the process training the run is doing, or how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStatus {
    pub state: RunState,
    pub pid: u32,
    pub updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunStatus {
    pub fn running() -> Self {
        Self::ended(RunState::Running, None)
    }

    pub fn ended(state: RunState, error: Option<String>) -> Self {
        Self {
            state,
            pid: std::process::id(),
            updated: chrono::Local::now().to_rfc3339(),
            error,
        }
    }

    pub fn write(&self, run: &RunDir) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(self).expect("a status serialises");
        write_atomic(&run.path.join(STATUS_FILE), &json)
    }

    /// The status of the run in `dir`; a run whose process is gone reads as killed.
    pub fn read(dir: &Path) -> Option<Self> {
        let text = fs::read_to_string(dir.join(STATUS_FILE)).ok()?;
        let mut status: Self = serde_json::from_str(&text).ok()?;
        let alive = Path::new("/proc").join(status.pid.to_string()).exists();
        if status.state == RunState::Running && !alive {
            status.state = RunState::Killed;
        }
        Some(status)
    }
}

#[derive(Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates a fresh run directory (`explicit`, or a new timestamped one under
    /// `run.runs_dir`) and writes the resolved config into it.
    pub fn create(config: &ExperimentConfig, explicit: Option<&Path>) -> Result<Self, Error> {
        let path = match explicit {
            Some(path) => {
                let occupied = fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some());
                if occupied {
                    return Err(Error::RunDirExists(path.to_path_buf()));
                }
                fs::create_dir_all(path).map_err(|source| Error::io(path, source))?;
                path.to_path_buf()
            }
            None => Self::claim_new(config)?,
        };
        let run = Self { path };
        fs::create_dir_all(run.checkpoints_dir())
            .map_err(|source| Error::io(&run.checkpoints_dir(), source))?;
        write_atomic(
            &run.path.join(CONFIG_FILE),
            config::to_toml(config).as_bytes(),
        )?;
        Ok(run)
    }

    /// `runs_dir/<name>-<timestamp>`, with a numeric suffix if two runs start in one second.
    fn claim_new(config: &ExperimentConfig) -> Result<PathBuf, Error> {
        let runs_dir = &config.run.runs_dir;
        fs::create_dir_all(runs_dir).map_err(|source| Error::io(runs_dir, source))?;
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        let base = format!("{}-{stamp}", config.run.name);
        for attempt in 1.. {
            let name = match attempt {
                1 => base.clone(),
                n => format!("{base}-{n}"),
            };
            let path = runs_dir.join(name);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(path),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(Error::io(&path, source)),
            }
        }
        unreachable!("the loop returns")
    }

    /// An existing run directory, with its resolved config.
    pub fn open(path: &Path) -> Result<(Self, ExperimentConfig), Error> {
        let config_path = path.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(Error::NotARun(path.to_path_buf()));
        }
        let config = config::load(&config_path, &[])?;
        Ok((
            Self {
                path: path.to_path_buf(),
            },
            config,
        ))
    }

    /// The tokenizer a text model reads with, beside the config (each checkpoint has a copy).
    pub fn write_tokenizer(&self, tokenizer: &Tokenizer) -> Result<(), Error> {
        write_atomic(
            &self.path.join("tokenizer.json"),
            tokenizer.to_json().as_bytes(),
        )
    }

    /// Records the ranks of a distributed run (`world.json`).
    pub fn write_world(&self, record: &DistributedRecord) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(record).expect("the record serializes");
        write_atomic(&self.path.join("world.json"), &json)
    }

    /// Records a resumed run's config (it may extend the run).
    pub fn rewrite_config(&self, config: &ExperimentConfig) -> Result<(), Error> {
        write_atomic(
            &self.path.join(CONFIG_FILE),
            config::to_toml(config).as_bytes(),
        )
    }

    /// A resumed run is not finished until it writes a new summary.
    pub fn remove_summary(&self) -> Result<(), Error> {
        let path = self.path.join(SUMMARY_FILE);
        match fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, err)),
            _ => Ok(()),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.path.join(METRICS_FILE)
    }

    pub fn checkpoints_dir(&self) -> PathBuf {
        self.path.join("checkpoints")
    }

    pub fn checkpoints(&self) -> Checkpoints {
        Checkpoints::new(self.checkpoints_dir())
    }

    pub fn write_summary(&self, summary: &Summary) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(summary).expect("summary serializes");
        write_atomic(&self.path.join(SUMMARY_FILE), &json)
    }
}

/// `summary.json`: how the run ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub run_dir: PathBuf,
    pub backend: BackendName,
    pub adapter: Option<String>,
    pub model: String,
    pub parameters: usize,
    /// The task and its data: input shape, classes, normalisation or vocabulary.
    pub data: DataSpec,
    /// Bad records skipped under `data.on_error = "skip"`.
    pub skipped_records: Skipped,
    /// Table rows: per categorical column, the validation and test values not seen in
    /// training (read as unknown).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unseen_categories: std::collections::BTreeMap<String, usize>,
    pub steps: usize,
    /// `train.precision`, and under f16 the loss scale at the end and the steps it skipped.
    #[serde(default)]
    pub precision: crate::config::Precision,
    #[serde(default)]
    pub loss_scale: Option<super::state::LossScale>,
    pub epochs_completed: usize,
    /// Why training stopped: completed, max_steps or early_stopping.
    pub stopped: String,
    /// Training metrics over the last epoch (or the part of it trained).
    pub train: Option<Measured>,
    /// The last validation.
    pub valid: Option<Measured>,
    /// The test split, evaluated with the `test_checkpoint`.
    pub test: Option<Measured>,
    pub test_checkpoint: Option<String>,
    pub best: Option<super::state::BestCheckpoint>,
    /// Training time of each epoch, evaluation excluded.
    pub epoch_time_s: Vec<f64>,
    /// Time each checkpoint took to write.
    pub checkpoint_time_s: Vec<f64>,
    /// SHA-256 of the final weights: equal digests mean bitwise-equal models.
    pub weights_sha256: String,
    /// Mean training throughput.
    pub train_samples_per_s: f64,
    pub wall_time_s: f64,
    /// The ranks of a distributed run and what its all-reduce cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedRecord>,
}

/// `world.json` of a distributed run (and `summary.json`'s `distributed`): the ranks and
/// each one's share of a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistributedRecord {
    pub world_size: usize,
    /// Samples of one pass on one rank (`train.batch_size`).
    pub per_rank_batch_size: usize,
    pub grad_accum_steps: usize,
    /// Samples of one optimizer step over all ranks.
    pub global_batch_size: usize,
    /// Gradient values summed per step (the model's trainable parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_reduce_values: Option<usize>,
    /// Seconds this session spent summing gradients over the ranks, and their share of its
    /// training time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_reduce_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_reduce_share: Option<f64>,
    /// Seconds this session's rank 0 waited for slower ranks before the all-reduce (load
    /// imbalance, not communication), and their share of its training time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_share: Option<f64>,
}

impl DistributedRecord {
    pub fn new(train: &crate::config::TrainConfig, world_size: usize) -> Self {
        Self {
            world_size,
            per_rank_batch_size: train.batch_size,
            grad_accum_steps: train.grad_accum_steps,
            global_batch_size: world_size * train.samples_per_step(),
            all_reduce_values: None,
            all_reduce_s: None,
            all_reduce_share: None,
            waiting_s: None,
            waiting_share: None,
        }
    }
}
