//! Writing checkpoints (their layout and reading are the parent module's): the model,
//! optimizer and scheduler records, the loop's state, the data spec and the tokenizer, then a
//! manifest with each file's SHA-256; the `latest` and `best` pointers; pruning.
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

use super::{
    Checkpoints, DATA_FILE, FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE, Manifest, OPTIMIZER_FILE,
    SCHEDULER_FILE, STATE_FILE, TOKENIZER_FILE,
};
use crate::Error;
use crate::data::{DataSpec, Tokenizer};
use crate::fault;
use crate::files::{digest, replace_dir, write_atomic, write_synced};
use crate::model::Recordable;
use crate::run::state::TrainingState;

/// The parts of a checkpoint that live on the device.
pub struct Snapshot<'a> {
    pub model: &'a dyn Recordable,
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

impl Checkpoints {
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
        let model = snapshot.model.record_bytes().map_err(record_error)?;
        let optimizer = snapshot.optimizer.into_bytes().map_err(record_error)?;
        let optimizer = in_name_order(&optimizer).map_err(|detail| Error::Record {
            path: final_dir.join(OPTIMIZER_FILE),
            detail,
        })?;
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

/// A burnpack record with its tensors in name order. burn writes the optimizer's state in
/// the order of a hash map, which changes from process to process; sorted (with parameter
/// ids made from paths, `net.rs`), the same training writes the same file, byte for byte.
fn in_name_order(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let reader = burn_pack::Reader::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|err| err.to_string())?;
    let (scalars, metadata) = (reader.scalars().clone(), reader.metadata().clone());
    let mut tensors = reader.into_tensors().map_err(|err| err.to_string())?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut writer = burn_pack::Writer::new(tensors);
    for (key, value) in &scalars {
        writer = writer.with_scalar(key, *value);
    }
    for (key, value) in &metadata {
        writer = writer.with_metadata(key, value);
    }
    writer
        .into_bytes()
        .map(|bytes| bytes.to_vec())
        .map_err(|err| err.to_string())
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
