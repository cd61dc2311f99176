//! Checkpoints: `checkpoints/step-<N>/` directories holding the model, optimizer and scheduler
//! records (burnpack), the loop's state, and a manifest with each file's SHA-256; plus
//! `latest` and `best` pointer files.
//!
//! A checkpoint is written into `.tmp-step-<N>/`, every file and the directory are fsynced,
//! the manifest is written last, and the directory is renamed into place; only then do the
//! pointers move and older checkpoints go. A process killed at any instant leaves every
//! earlier checkpoint complete, and a damaged one is recognised by its checksums.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::lr_scheduler::LrSchedulerRecord;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use super::fault;
use super::state::TrainingState;
use crate::Error;
use crate::data::{DataSpec, Tokenizer};
use crate::files::FileDigest;
use crate::files::{digest, replace_dir, verify_digests, write_atomic, write_synced};
use crate::model::Model;

pub const FORMAT_VERSION: u32 = 1;
pub const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const SCHEDULER_FILE: &str = "scheduler.bpk";
const STATE_FILE: &str = "state.json";
const MANIFEST_FILE: &str = "manifest.json";
const DATA_FILE: &str = "data.json";
const TOKENIZER_FILE: &str = "tokenizer.json";

/// What a checkpoint is and the digest of every file in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub stoke_version: String,
    pub step: usize,
    pub model: String,
    /// SHA-256 of the config keys that define the model and the data.
    pub definition_hash: String,
    /// Every config key a resumed run may not change, with the value it was trained with
    /// (empty in checkpoints of stoke before 0.1 recorded them).
    #[serde(default)]
    pub fixed_keys: BTreeMap<String, String>,
    pub files: BTreeMap<String, FileDigest>,
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
            name if name
                .strip_prefix("step-")
                .is_some_and(|n| n.parse::<usize>().is_ok()) =>
            {
                CheckpointChoice::Named(name.to_string())
            }
            other => return Err(format!("\"{other}\": expected best, last or step-<N>")),
        })
    }
}

impl std::fmt::Display for CheckpointChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointChoice::Best => f.write_str("best"),
            CheckpointChoice::Last => f.write_str("last"),
            CheckpointChoice::Named(name) => f.write_str(name),
        }
    }
}

/// A checkpoint whose files matched their checksums.
pub struct VerifiedCheckpoint {
    pub dir: PathBuf,
    pub name: String,
    pub manifest: Manifest,
    pub state: TrainingState,
}

impl VerifiedCheckpoint {
    /// The tokenizer a text model was trained with.
    pub fn tokenizer(&self) -> Result<Option<Tokenizer>, Error> {
        let path = self.dir.join(TOKENIZER_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let json = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Tokenizer::from_json(&json)
            .map(Some)
            .map_err(|err| Error::CorruptCheckpoint {
                dir: self.dir.clone(),
                detail: err.to_string(),
            })
    }

    /// What the model was built for.
    pub fn spec(&self) -> Result<DataSpec, Error> {
        let path = self.dir.join(DATA_FILE);
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|err| Error::CorruptCheckpoint {
            dir: self.dir.clone(),
            detail: format!("{DATA_FILE}: {err}"),
        })
    }
}

/// The parts of a checkpoint that live on the device.
pub struct Snapshot<'a> {
    pub model: &'a Model,
    pub optimizer: &'a ModuleOptimizer,
    pub scheduler: &'a ModuleLrScheduler,
    pub state: &'a TrainingState,
    pub model_kind: &'a str,
    pub definition_hash: &'a str,
    pub fixed_keys: &'a BTreeMap<String, String>,
    /// What the model was built for; with the tokenizer, all inference needs besides weights.
    pub spec: &'a DataSpec,
    pub tokenizer: Option<&'a Tokenizer>,
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

    fn step_of(name: &str) -> Option<usize> {
        name.strip_prefix("step-")?.parse().ok()
    }

    /// Writes a complete checkpoint of `snapshot.state.global_step` and points `latest` at it.
    /// On failure the temporary directory is removed and earlier checkpoints are untouched.
    pub fn save(&self, snapshot: &Snapshot) -> Result<PathBuf, Error> {
        let name = Self::name_for(snapshot.state.global_step);
        let temp_dir = self.root.join(format!(".tmp-{name}"));
        let result = self.write_into(&temp_dir, &name, snapshot);
        if result.is_err() {
            let _ = fs::remove_dir_all(&temp_dir);
        }
        result.map_err(|err| Error::CheckpointWrite {
            name: name.clone(),
            detail: err.to_string(),
            last_good: self.list().last().cloned(),
        })
    }

    fn write_into(
        &self,
        temp_dir: &Path,
        name: &str,
        snapshot: &Snapshot,
    ) -> Result<PathBuf, Error> {
        let final_dir = self.root.join(name);
        if temp_dir.exists() {
            fs::remove_dir_all(temp_dir).map_err(|e| Error::io(temp_dir, e))?;
        }
        fs::create_dir_all(temp_dir).map_err(|e| Error::io(temp_dir, e))?;

        let record_error = |err: burn::store::RecordError| Error::Record {
            path: final_dir.clone(),
            detail: err.to_string(),
        };
        // `valid()` folds pending running-statistic updates (batch norm) into the values the
        // record reads; without it a checkpoint would hold them one update behind.
        let model = snapshot
            .model
            .valid()
            .into_record()
            .into_bytes()
            .map_err(record_error)?;
        let optimizer = snapshot.optimizer.into_bytes().map_err(record_error)?;
        let scheduler = snapshot
            .scheduler
            .to_record()
            .into_bytes()
            .map_err(record_error)?;
        let state = serde_json::to_vec_pretty(snapshot.state).expect("state serializes");
        let spec = serde_json::to_vec_pretty(snapshot.spec).expect("the data spec serializes");
        let tokenizer = snapshot.tokenizer.map(Tokenizer::to_json);

        let mut files = BTreeMap::new();
        let mut parts = vec![
            (MODEL_FILE, &model[..]),
            (OPTIMIZER_FILE, &optimizer[..]),
            (SCHEDULER_FILE, &scheduler[..]),
            (STATE_FILE, &state[..]),
            (DATA_FILE, &spec[..]),
        ];
        if let Some(tokenizer) = &tokenizer {
            parts.push((TOKENIZER_FILE, tokenizer.as_bytes()));
        }
        for (file, bytes) in parts {
            fault::before_checkpoint_file(snapshot.state.global_step, file)?;
            write_synced(&temp_dir.join(file), bytes)?;
            files.insert(file.to_string(), digest(bytes));
        }
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            stoke_version: env!("CARGO_PKG_VERSION").to_string(),
            step: snapshot.state.global_step,
            model: snapshot.model_kind.to_string(),
            definition_hash: snapshot.definition_hash.to_string(),
            fixed_keys: snapshot.fixed_keys.clone(),
            files,
        };
        let manifest = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        write_synced(&temp_dir.join(MANIFEST_FILE), &manifest)?;
        // The same step saved again (a rewound run): the new copy replaces the old.
        replace_dir(temp_dir, &final_dir)?;
        self.point("latest", name)?;
        Ok(final_dir)
    }

    /// Atomically points `pointer` (`latest` or `best`) at checkpoint `name`.
    pub fn point(&self, pointer: &str, name: &str) -> Result<(), Error> {
        write_atomic(&self.root.join(pointer), name.as_bytes())
    }

    pub fn clear_pointer(&self, pointer: &str) -> Result<(), Error> {
        let path = self.root.join(pointer);
        match fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, err)),
            _ => Ok(()),
        }
    }

    fn read_pointer(&self, pointer: &str) -> Option<String> {
        let name = fs::read_to_string(self.root.join(pointer)).ok()?;
        Some(name.trim().to_string()).filter(|name| !name.is_empty())
    }

    /// Checkpoint directories (complete or not), oldest first.
    pub fn list(&self) -> Vec<String> {
        let mut steps: Vec<(usize, String)> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                Some((Self::step_of(&name)?, name))
            })
            .filter(|(_, name)| self.root.join(name).is_dir())
            .collect();
        steps.sort();
        steps.into_iter().map(|(_, name)| name).collect()
    }

    /// The checkpoint `choice` names, verified; `best` falls back to `latest` in a run that
    /// never validated.
    pub fn open(&self, choice: &CheckpointChoice) -> Result<VerifiedCheckpoint, Error> {
        let name = match choice {
            CheckpointChoice::Best => self
                .read_pointer("best")
                .or_else(|| self.read_pointer("latest")),
            CheckpointChoice::Last => self.read_pointer("latest"),
            CheckpointChoice::Named(name) => Some(name.clone()),
        };
        let name = name.ok_or_else(|| self.missing(&choice.to_string()))?;
        if !self.root.join(&name).is_dir() {
            return Err(self.missing(&name));
        }
        self.verify(&name)
    }

    /// The newest checkpoint that verifies, with the damaged ones passed over on the way
    /// (name, what is wrong), newest first.
    pub fn newest_good(&self) -> Result<(VerifiedCheckpoint, Vec<(String, String)>), Error> {
        let mut skipped = Vec::new();
        for name in self.list().into_iter().rev() {
            match self.verify(&name) {
                Ok(checkpoint) => return Ok((checkpoint, skipped)),
                Err(err) => skipped.push((name, err.to_string())),
            }
        }
        if skipped.is_empty() {
            return Err(self.missing("any complete checkpoint"));
        }
        Err(Error::NoGoodCheckpoint {
            root: self.root.clone(),
            damaged: skipped,
        })
    }

    fn missing(&self, what: &str) -> Error {
        let available = self.list().join(", ");
        Error::MissingCheckpoint {
            root: self.root.clone(),
            what: what.to_string(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available
            },
        }
    }

    /// Reads a checkpoint's manifest and checks every file against it.
    pub fn verify(&self, name: &str) -> Result<VerifiedCheckpoint, Error> {
        let dir = self.root.join(name);
        let corrupt = |detail: String| Error::CorruptCheckpoint {
            dir: dir.clone(),
            detail,
        };
        let manifest_bytes = fs::read(dir.join(MANIFEST_FILE)).map_err(|_| {
            corrupt("its manifest.json is missing: the write did not finish".into())
        })?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|err| corrupt(format!("manifest.json is unreadable: {err}")))?;
        if manifest.format_version > FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} is newer than this stoke's ({FORMAT_VERSION}); upgrade stoke",
                manifest.format_version
            )));
        }
        verify_digests(&dir, &manifest.files).map_err(corrupt)?;
        let state_bytes = fs::read(dir.join(STATE_FILE))
            .map_err(|err| corrupt(format!("{STATE_FILE}: {err}")))?;
        let state = serde_json::from_slice(&state_bytes)
            .map_err(|err| corrupt(format!("{STATE_FILE} is unreadable: {err}")))?;
        Ok(VerifiedCheckpoint {
            dir,
            name: name.to_string(),
            manifest,
            state,
        })
    }

    /// Deletes all but the newest `keep_last` checkpoints, never one of `keep` (the best).
    pub fn prune(&self, keep_last: usize, keep: &[String]) -> Result<(), Error> {
        let latest = self.read_pointer("latest");
        let all = self.list();
        let stale = all.len().saturating_sub(keep_last);
        for name in &all[..stale] {
            if keep.contains(name) || Some(name) == latest.as_ref() {
                continue;
            }
            let dir = self.root.join(name);
            fs::remove_dir_all(&dir).map_err(|source| Error::io(&dir, source))?;
        }
        Ok(())
    }

    /// Removes the checkpoints after `step` (a run rewound to an earlier checkpoint abandons
    /// them) and the leftovers of interrupted writes; returns the names removed.
    pub fn remove_after(&self, step: usize) -> Result<Vec<String>, Error> {
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.root)
            .map_err(|e| Error::io(&self.root, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let later = Self::step_of(&name).is_some_and(|s| s > step);
            if later || name.starts_with(".tmp-") {
                let path = entry.path();
                if path.is_dir() {
                    fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                } else {
                    fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                }
                if later {
                    removed.push(name);
                }
            }
        }
        removed.sort_by_key(|name| Self::step_of(name));
        Ok(removed)
    }
}

/// Loads checkpoint `dir`'s weights into `model` (built from the same config).
pub fn load_model(dir: &Path, model: Model) -> Result<Model, Error> {
    load_model_record(&dir.join(MODEL_FILE), model)
}

/// Loads the burnpack model record at `path` into `model` (built from the same config).
pub fn load_model_record(path: &Path, model: Model) -> Result<Model, Error> {
    let path = path.to_path_buf();
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
    let bytes = fs::read(&scheduler_path).map_err(|e| Error::io(&scheduler_path, e))?;
    let record = LrSchedulerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(record_error(scheduler_path))?;
    Ok((optimizer, scheduler.load_record(record)))
}
