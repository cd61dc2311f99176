//! Checkpoint directories as stored: `checkpoints/step-<N>/` with the model, optimizer and
//! scheduler records (burnpack), the loop's state, the data spec, the tokenizer and a
//! manifest with each file's SHA-256, plus the `latest` and `best` pointer files. This is the
//! reading side, which training (resume, evaluation), using a model (export, predict) and
//! `model.init_from` share; `write.rs` writes them.

mod write;

pub use write::{Snapshot, load_optimizer};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::store::ModuleRecord;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::data::{DataSpec, Tokenizer};
use crate::files::{FileDigest, verify_digests};
use crate::model::Recordable;

pub const FORMAT_VERSION: u32 = 1;
pub const MODEL_FILE: &str = "model.bpk";
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub const SCHEDULER_FILE: &str = "scheduler.bpk";
pub const STATE_FILE: &str = "state.json";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const DATA_FILE: &str = "data.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

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
    /// The loop's state (`state.json`), as the reader types it: the trainer's whole
    /// `TrainingState`, or just the position for an export.
    state: serde_json::Value,
}

impl VerifiedCheckpoint {
    /// The loop's state at this checkpoint, read as `T`.
    pub fn state<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(self.state.clone()).map_err(|err| Error::CorruptCheckpoint {
            dir: self.dir.clone(),
            detail: format!("{STATE_FILE}: {err}"),
        })
    }

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

/// A run's `checkpoints/` directory.
pub struct Checkpoints {
    pub(crate) root: PathBuf,
}

impl Checkpoints {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn name_for(step: usize) -> String {
        format!("step-{step}")
    }

    pub(crate) fn step_of(name: &str) -> Option<usize> {
        name.strip_prefix("step-")?.parse().ok()
    }

    pub(crate) fn read_pointer(&self, pointer: &str) -> Option<String> {
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
        let state: serde_json::Value = serde_json::from_slice(&state_bytes)
            .map_err(|err| corrupt(format!("{STATE_FILE} is unreadable: {err}")))?;
        Ok(VerifiedCheckpoint {
            dir,
            name: name.to_string(),
            manifest,
            state,
        })
    }
}

/// Loads checkpoint `dir`'s weights into `model` (built from the same config).
pub fn load_model(dir: &Path, model: &mut dyn Recordable) -> Result<(), Error> {
    load_model_record(&dir.join(MODEL_FILE), model)
}

/// Loads the burnpack model record at `path` into `model` (built from the same config).
///
/// Records written before the built-in families were kinds of their own name every tensor
/// under the family (`Mlp.hidden.0.weight`); such a record is read with that first segment
/// dropped, so runs and artifacts of earlier versions still load.
pub fn load_model_record(path: &Path, model: &mut dyn Recordable) -> Result<(), Error> {
    let record_error = |err: burn::store::RecordError| Error::Record {
        path: path.to_path_buf(),
        detail: err.to_string(),
    };
    let record = ModuleRecord::load(path).map_err(record_error)?;
    let loaded = model.load_record(record);
    let Err(err) = loaded else {
        return Ok(());
    };
    match without_family_prefix(path) {
        Some(record) => model.load_record(record).map_err(record_error),
        None => Err(record_error(err)),
    }
}

/// The record at `path` with the family name its tensor paths begin with dropped, when
/// every path begins with one (`Mlp.`, `TextClassifier.`, ...).
fn without_family_prefix(path: &Path) -> Option<ModuleRecord> {
    let tensors = burn_pack::Reader::from_file(path)
        .ok()?
        .into_tensors()
        .ok()?;
    let mut renamed = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        let (name, dtype, shape, id, bytes) = tensor.into_parts().ok()?;
        let (family, rest) = name.split_once('.')?;
        if !family.starts_with(|c: char| c.is_ascii_uppercase()) {
            return None;
        }
        renamed.push(burn_pack::Tensor::new(
            rest.to_string(),
            dtype,
            shape,
            id,
            bytes,
        ));
    }
    let bytes = burn_pack::Writer::new(renamed).into_bytes().ok()?;
    ModuleRecord::from_bytes(bytes).ok()
}
