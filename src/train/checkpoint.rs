//! Checkpoints: `checkpoints/step-<N>/` directories holding the model, optimizer and scheduler
//! records (burnpack) and the loop's state, plus `latest` and `best` pointer files.
//!
//! Every write goes to a temporary name, is fsynced, and is renamed into place, so a run
//! killed at any moment leaves every earlier checkpoint complete and loadable.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::lr_scheduler::LrSchedulerRecord;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use super::step::Measured;
use crate::Error;
use crate::model::Model;

pub const FORMAT_VERSION: u32 = 1;
const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const SCHEDULER_FILE: &str = "scheduler.bpk";
const STATE_FILE: &str = "state.json";

/// Where the loop stood when a checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    pub format_version: u32,
    pub stoke_version: String,
    /// Optimizer steps taken.
    pub global_step: usize,
    /// Epochs completed.
    pub epoch: usize,
    /// Batches of the epoch in progress already trained on (0 at an epoch boundary).
    pub batch_in_epoch: usize,
    /// Validation metrics at this checkpoint, when it was validated.
    pub valid: Option<Measured>,
    pub best: Option<BestCheckpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestCheckpoint {
    pub name: String,
    pub step: usize,
    pub epoch: usize,
    /// The monitored metric's value.
    pub value: f64,
}

/// Which checkpoint a command means.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointChoice {
    Best,
    Last,
    Named(String),
}

impl std::str::FromStr for CheckpointChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "best" => CheckpointChoice::Best,
            "last" | "latest" => CheckpointChoice::Last,
            name if name.starts_with("step-") => CheckpointChoice::Named(name.to_string()),
            other => return Err(format!("\"{other}\": expected best, last or step-<N>")),
        })
    }
}

pub struct Checkpoints {
    root: PathBuf,
}

impl Checkpoints {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn name_for(step: usize) -> String {
        format!("step-{step}")
    }

    /// Writes a complete checkpoint and points `latest` at it.
    pub fn save(
        &self,
        model: &Model,
        optimizer: &ModuleOptimizer,
        scheduler: &ModuleLrScheduler,
        state: &TrainingState,
    ) -> Result<PathBuf, Error> {
        let name = Self::name_for(state.global_step);
        let final_dir = self.root.join(&name);
        let temp_dir = self.root.join(format!(".tmp-{name}"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::io(&path, source)
        };
        if temp_dir.exists() {
            fs::remove_dir_all(&temp_dir).map_err(io(&temp_dir))?;
        }
        fs::create_dir_all(&temp_dir).map_err(io(&temp_dir))?;

        let record_error = |path: &Path| {
            let path = path.to_path_buf();
            move |err: burn::store::RecordError| Error::Record {
                path: path.clone(),
                detail: err.to_string(),
            }
        };
        let model_bytes = model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(record_error(&final_dir))?;
        let optimizer_bytes = optimizer.into_bytes().map_err(record_error(&final_dir))?;
        let scheduler_bytes = scheduler
            .to_record()
            .into_bytes()
            .map_err(record_error(&final_dir))?;
        let state_json = serde_json::to_vec_pretty(state).expect("state serializes");
        for (file, bytes) in [
            (MODEL_FILE, &model_bytes[..]),
            (OPTIMIZER_FILE, &optimizer_bytes[..]),
            (SCHEDULER_FILE, &scheduler_bytes[..]),
            (STATE_FILE, &state_json[..]),
        ] {
            write_synced(&temp_dir.join(file), bytes)?;
        }
        sync_dir(&temp_dir)?;
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
        }
        fs::rename(&temp_dir, &final_dir).map_err(io(&final_dir))?;
        sync_dir(&self.root)?;
        self.point("latest", &name)?;
        Ok(final_dir)
    }

    /// Atomically points `pointer` (`latest` or `best`) at checkpoint `name`.
    pub fn point(&self, pointer: &str, name: &str) -> Result<(), Error> {
        write_atomic(&self.root.join(pointer), name.as_bytes())
    }

    pub fn resolve(&self, choice: &CheckpointChoice) -> Result<PathBuf, Error> {
        let name = match choice {
            CheckpointChoice::Best => self
                .read_pointer("best")
                .or_else(|| self.read_pointer("latest")),
            CheckpointChoice::Last => self.read_pointer("latest"),
            CheckpointChoice::Named(name) => Some(name.clone()),
        };
        let available = self.list().join(", ");
        let missing = |what: String| Error::MissingCheckpoint {
            root: self.root.clone(),
            what,
            available: if available.is_empty() {
                "none".into()
            } else {
                available.clone()
            },
        };
        let name = name.ok_or_else(|| missing(format!("{choice:?}").to_lowercase()))?;
        let dir = self.root.join(&name);
        if !dir.join(STATE_FILE).is_file() {
            return Err(missing(name));
        }
        Ok(dir)
    }

    fn read_pointer(&self, pointer: &str) -> Option<String> {
        let name = fs::read_to_string(self.root.join(pointer)).ok()?;
        Some(name.trim().to_string()).filter(|name| !name.is_empty())
    }

    /// Complete checkpoints, oldest first.
    pub fn list(&self) -> Vec<String> {
        let mut steps: Vec<(usize, String)> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix("step-")?.parse().ok()?;
                entry
                    .path()
                    .join(STATE_FILE)
                    .is_file()
                    .then_some((step, name))
            })
            .collect();
        steps.sort();
        steps.into_iter().map(|(_, name)| name).collect()
    }

    /// Deletes all but the newest `keep_last` checkpoints, never the best one.
    pub fn prune(&self, keep_last: usize) -> Result<(), Error> {
        let best = self.read_pointer("best");
        let latest = self.read_pointer("latest");
        let all = self.list();
        let stale = all.len().saturating_sub(keep_last);
        for name in &all[..stale] {
            if Some(name) == best.as_ref() || Some(name) == latest.as_ref() {
                continue;
            }
            let dir = self.root.join(name);
            fs::remove_dir_all(&dir).map_err(|source| Error::io(&dir, source))?;
        }
        Ok(())
    }
}

pub fn read_state(dir: &Path) -> Result<TrainingState, Error> {
    let path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&path).map_err(|source| Error::io(&path, source))?;
    serde_json::from_str(&text).map_err(|err| Error::Corrupt {
        path,
        detail: err.to_string(),
    })
}

/// Loads the model weights of checkpoint `dir` into `model` (built from the same config).
pub fn load_model(dir: &Path, model: Model) -> Result<Model, Error> {
    let path = dir.join(MODEL_FILE);
    let record_error = |err: burn::store::RecordError| Error::Record {
        path: path.clone(),
        detail: err.to_string(),
    };
    let record = ModuleRecord::load(&path).map_err(record_error)?;
    model.try_load_record(record).map_err(record_error)
}

/// Restores optimizer and scheduler state from checkpoint `dir`.
pub fn load_optimizer(
    dir: &Path,
    optimizer: ModuleOptimizer,
    scheduler: ModuleLrScheduler,
) -> Result<(ModuleOptimizer, ModuleLrScheduler), Error> {
    let record_error = |path: PathBuf| {
        move |err: burn::store::RecordError| Error::Record {
            path,
            detail: err.to_string(),
        }
    };
    let optimizer_path = dir.join(OPTIMIZER_FILE);
    let optimizer = optimizer
        .load(&optimizer_path)
        .map_err(record_error(optimizer_path))?;
    let scheduler_path = dir.join(SCHEDULER_FILE);
    let bytes = fs::read(&scheduler_path).map_err(|source| Error::io(&scheduler_path, source))?;
    let record = LrSchedulerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(record_error(scheduler_path))?;
    Ok((optimizer, scheduler.load_record(record)))
}

/// Writes `bytes` to `path` and fsyncs the file.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut file = File::create(path).map_err(|source| Error::io(path, source))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::io(path, source))
}

/// Replaces `path` with `bytes` atomically: a temporary file, fsync, rename, directory fsync.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".tmp-{file_name}"));
    write_synced(&temp, bytes)?;
    fs::rename(&temp, path).map_err(|source| Error::io(path, source))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|source| Error::io(dir, source))
}
