//! Durable files: atomic replacement, fsynced writes and SHA-256 digests, shared by
//! checkpoints, run directories and exported artifacts so that a kill at any instant leaves
//! either the old file or the new one, and damage is recognised.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// A file's size and SHA-256, as manifests record them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

pub fn digest(bytes: &[u8]) -> FileDigest {
    FileDigest {
        bytes: bytes.len() as u64,
        sha256: format!("{:x}", Sha256::digest(bytes)),
    }
}

/// Checks every file of `dir` that `files` lists against its digest; the error says which
/// file and how it differs.
pub fn verify_digests(dir: &Path, files: &BTreeMap<String, FileDigest>) -> Result<(), String> {
    for (file, expected) in files {
        // A manifest names files of its own directory, never a path out of it.
        let mut components = Path::new(file).components();
        let plain = matches!(
            (components.next(), components.next()),
            (Some(std::path::Component::Normal(_)), None)
        );
        if !plain {
            return Err(format!(
                "{file:?} is not a file name of the directory (a manifest lists its own files)"
            ));
        }
        let bytes = fs::read(dir.join(file)).map_err(|err| format!("{file}: {err}"))?;
        let actual = digest(&bytes);
        if actual != *expected {
            return Err(format!(
                "{file} does not match its checksum ({} bytes, sha256 {}; expected {} bytes, sha256 {})",
                actual.bytes, actual.sha256, expected.bytes, expected.sha256
            ));
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` and fsyncs the file.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut file = File::create(path).map_err(|source| Error::io(path, source))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::io(path, source))
}

/// Replaces `path` with `bytes` atomically: a temporary file, fsync, rename, directory fsync.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let temp = temp_path(path);
    write_synced(&temp, bytes)?;
    fs::rename(&temp, path).map_err(|source| Error::io(path, source))?;
    sync_dir(parent_dir(path))
}

/// The directory that holds `path`'s entry: its parent, or `.` for a bare file name such as
/// `report.json` (whose `Path::parent` is the empty path, which cannot be opened).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Where a file is written before it is renamed to `path`: beside it, hidden.
fn temp_path(path: &Path) -> std::path::PathBuf {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{file_name}"))
}

/// Moves the fully written directory `temp` to `target`, replacing what was there: `temp`
/// is fsynced, renamed, and the parent's entry fsynced, so a kill leaves the old directory
/// or the new one, never a mix.
pub fn replace_dir(temp: &Path, target: &Path) -> Result<(), Error> {
    sync_dir(temp)?;
    if target.exists() {
        fs::remove_dir_all(target).map_err(|source| Error::io(target, source))?;
    }
    fs::rename(temp, target).map_err(|source| Error::io(target, source))?;
    sync_dir(parent_dir(target))
}

/// A file written under a temporary name beside `path` and moved into place by
/// [`PendingFile::commit`] once complete, for files too large to build in memory first.
pub struct PendingFile {
    writer: std::io::BufWriter<File>,
    temp: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl PendingFile {
    pub fn create(path: &Path) -> Result<Self, Error> {
        let temp = temp_path(path);
        let file = File::create(&temp).map_err(|source| Error::io(&temp, source))?;
        Ok(Self {
            writer: std::io::BufWriter::with_capacity(1 << 20, file),
            temp,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.writer
            .write_all(bytes)
            .map_err(|source| Error::io(&self.temp, source))
    }

    /// Flushes and fsyncs the file, renames it to its path and fsyncs the directory entry.
    pub fn commit(self) -> Result<(), Error> {
        let file = self
            .writer
            .into_inner()
            .map_err(|err| Error::io(&self.temp, err.into_error()))?;
        file.sync_all()
            .map_err(|source| Error::io(&self.temp, source))?;
        fs::rename(&self.temp, &self.path).map_err(|source| Error::io(&self.path, source))?;
        sync_dir(parent_dir(&self.path))
    }
}

pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|source| Error::io(dir, source))
}
