//! The library's error: what went wrong, said for the user, and the exit code it earns
//! (2 for mistakes in what the user gave us, 1 for failures while running).

use std::path::{Path, PathBuf};

use crate::backend::BackendError;
use crate::config::ConfigError;
use crate::data::DataError;
use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot write or read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("record {}: {detail}", path.display())]
    Record { path: PathBuf, detail: String },
    #[error("{} is corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("no checkpoint \"{what}\" in {}; available: {available}", root.display())]
    MissingCheckpoint {
        root: PathBuf,
        what: String,
        available: String,
    },
    #[error("run directory {} already exists and is not empty; choose another --run-dir", .0.display())]
    RunDirExists(PathBuf),
    #[error("{} is not a run directory (it has no config.toml)", .0.display())]
    NotARun(PathBuf),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// 2 when the user can fix the input (config, data, paths), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::Data(_)
            | Error::Model(_)
            | Error::Backend(_)
            | Error::MissingCheckpoint { .. }
            | Error::RunDirExists(_)
            | Error::NotARun(_) => 2,
            Error::Io { .. } | Error::Record { .. } | Error::Corrupt { .. } => 1,
        }
    }
}
