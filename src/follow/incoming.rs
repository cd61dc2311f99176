//! The followed directory: which shards have landed, reading one, and putting aside one that
//! does not read. Writers rename each file into the directory when it is complete, so a name
//! starting with `.` or ending in `.tmp` or `.part` is still being written and is left alone.
//! What a shard is (its files, how it reads and what the model trains on) is its kind's
//! ([`ShardKind`]): IDX image pairs (`idx_shards.rs`), files of labelled text records
//! (`text_shards.rs`) or of table rows (`table_shards.rs`), chosen from the run's data in
//! [`kind_for`], the one place a new kind is registered. A shard that does not read (truncated, another schema or image shape, a label
//! outside the classes) is moved into `rejected/` beside a `<name>.reason.txt`, and following
//! goes on.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::idx_shards::IdxShards;
use super::table_shards::TableShards;
use super::text_shards::TextShards;
use crate::Error;
use crate::data::{DataSpec, Dataset};
use crate::files::write_atomic;
use crate::train::Experiment;

pub const REJECTED_DIR: &str = "rejected";

/// A shard read whole and checked, with what the ledger records of it.
pub struct Shard {
    pub name: String,
    /// Its records as the model reads them.
    pub data: Arc<dyn Dataset>,
    pub records: usize,
    /// All its files' bytes.
    pub bytes: u64,
    /// SHA-256 of its files, one after the other.
    pub sha256: String,
}

/// What a followed shard is, for one kind of data.
pub trait ShardKind {
    /// The shards this kind takes, for messages.
    fn describe(&self) -> &'static str;
    /// The endings of a one-file shard's name (`.jsonl`, …).
    fn suffixes(&self) -> &'static [&'static str] {
        &[]
    }
    /// The shard that complete file `file` of `dir` completes, if it is one of this kind: by
    /// default the file itself, when its name has one of [`Self::suffixes`].
    fn shard_of(&self, dir: &Path, file: &str) -> Option<String> {
        let ours = self.suffixes().iter().any(|suffix| file.ends_with(suffix));
        (ours && dir.join(file).is_file()).then(|| file.to_string())
    }
    /// The files of shard `name`, in the order they are hashed: by default the one file.
    fn files(&self, dir: &Path, name: &str) -> Vec<PathBuf> {
        vec![dir.join(name)]
    }
    /// Shard `name` of `dir`'s records as the model reads them, checked against the run's
    /// data; the error is the reason it is rejected.
    fn load(&self, dir: &Path, name: &str) -> Result<Arc<dyn Dataset>, String>;
    /// What a round trains on: `shard`'s records, then the reservoir's `replay` records
    /// (`(shard, record)` of shards taken earlier, which must still be in `dir`).
    fn training_set(
        &self,
        dir: &Path,
        shard: &Shard,
        replay: &[(String, u32)],
    ) -> Result<Arc<dyn Dataset>, Error>;
}

/// The shard kind of the run's data, or why it cannot be followed.
pub fn kind_for(experiment: &Experiment) -> Result<Box<dyn ShardKind>, Error> {
    let splits = &experiment.splits;
    match (&splits.spec, &splits.tokenizer) {
        (
            DataSpec::ImageClassification {
                input,
                classes,
                normalization,
                resize: None,
            },
            _,
        ) if input.channels == 1 => Ok(Box::new(IdxShards {
            shape: *input,
            classes: classes.len(),
            normalization: normalization.clone(),
        })),
        (
            DataSpec::TextClassification {
                classes,
                max_length,
                ..
            },
            Some(tokenizer),
        ) => Ok(Box::new(TextShards {
            text: experiment.config.data.text.clone().unwrap_or_default(),
            tokenizer: tokenizer.clone(),
            classes: classes.clone(),
            max_length: *max_length,
        })),
        (spec @ DataSpec::Tabular { .. }, _) => Ok(Box::new(TableShards {
            data: experiment.config.data.clone(),
            spec: spec.clone(),
        })),
        (spec, _) => Err(Error::Usage(format!(
            "--follow takes IDX image shards (grayscale, one size: image-shards, mnist and fashion-mnist data), files of labelled texts (text-classification data) or of table rows (tabular data); this run's data is {}",
            spec.describe()
        ))),
    }
}

/// The complete shards of `kind` in `dir` (names, sorted), whether or not they were taken.
pub fn landed(dir: &Path, kind: &dyn ShardKind) -> Result<Vec<String>, Error> {
    let entries = fs::read_dir(dir).map_err(|source| Error::io(dir, source))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::io(dir, source))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with('.') || file.ends_with(".tmp") || file.ends_with(".part") {
            continue;
        }
        if let Some(name) = kind.shard_of(dir, &file) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// All of shard `name`'s bytes, if every file can be read.
pub fn size(dir: &Path, name: &str, kind: &dyn ShardKind) -> Option<u64> {
    kind.files(dir, name)
        .iter()
        .map(|path| fs::metadata(path).ok().map(|meta| meta.len()))
        .sum()
}

/// Reads shard `name` of `dir` whole, with what the ledger records of it; the error is the
/// reason it is rejected.
pub fn read(dir: &Path, name: &str, kind: &dyn ShardKind) -> Result<Shard, String> {
    let (bytes, sha256) = fingerprint(&kind.files(dir, name))?;
    let data = kind.load(dir, name)?;
    if data.is_empty() {
        return Err("holds no records".into());
    }
    Ok(Shard {
        name: name.to_string(),
        records: data.len(),
        data,
        bytes,
        sha256,
    })
}

/// The size and SHA-256 of `files`, one after the other.
fn fingerprint(files: &[PathBuf]) -> Result<(u64, String), String> {
    let mut hasher = Sha256::new();
    let mut bytes = 0;
    for path in files {
        let content = fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
        bytes += content.len() as u64;
        hasher.update(&content);
    }
    Ok((bytes, format!("{:x}", hasher.finalize())))
}

/// Moves shard `name` out of `dir` into `dir/rejected/`, after writing why beside it.
pub fn reject(
    dir: &Path,
    name: &str,
    reason: &str,
    kind: &dyn ShardKind,
) -> Result<PathBuf, Error> {
    let rejected = dir.join(REJECTED_DIR);
    fs::create_dir_all(&rejected).map_err(|source| Error::io(&rejected, source))?;
    let reason_path = rejected.join(format!("{name}.reason.txt"));
    write_atomic(&reason_path, format!("{reason}\n").as_bytes())?;
    for path in kind.files(dir, name) {
        if let Some(file) = path.file_name() {
            let to = rejected.join(file);
            fs::rename(&path, &to).map_err(|source| Error::io(&path, source))?;
        }
    }
    Ok(reason_path)
}

/// The first line of `err`: a reason file and a progress line hold one line (a data error may
/// add advice that does not apply to a shard).
pub fn first_line(err: &impl std::fmt::Display) -> String {
    err.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The error of a replayed shard that is no longer readable in `dir`.
pub fn replay_gone(dir: &Path, err: impl std::fmt::Display) -> Error {
    Error::Usage(format!(
        "replay reads the shards it took, which must stay in {}: {err}",
        dir.display()
    ))
}
