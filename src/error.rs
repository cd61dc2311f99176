//! The library's error: what went wrong, said for the user, and the exit code it earns
//! (2 for mistakes in what the user gave us, 1 for failures while running).

use std::path::{Path, PathBuf};

use crate::backend::BackendError;
use crate::config::{Change, ConfigError};
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
    #[error("every checkpoint in {} is damaged:\n{}", root.display(), render_damaged(damaged))]
    NoGoodCheckpoint {
        root: PathBuf,
        /// Each checkpoint, newest first, and what is wrong with it.
        damaged: Vec<(String, String)>,
    },
    #[error("run directory {} already exists and is not empty; choose another --run-dir, or continue it with --resume", .0.display())]
    RunDirExists(PathBuf),
    #[error("{} is not a run directory (it has no config.toml)", .0.display())]
    NotARun(PathBuf),
    /// A command asked for something its inputs cannot give.
    #[error("{0}")]
    Usage(String),
    /// `stoke serve` could not go on (not a mistake in its input).
    #[error("{0}")]
    Serve(String),
    #[error("cannot write checkpoint {name}: {detail}\n  the last complete checkpoint is {}", last_good.as_deref().unwrap_or("none"))]
    CheckpointWrite {
        name: String,
        detail: String,
        last_good: Option<String>,
    },
    #[error("artifact {} is refused: {detail}", dir.display())]
    Artifact { dir: PathBuf, detail: String },
    /// `model.init_from` names weights the model cannot start from.
    #[error("model.init_from = {}: {detail}", from.display())]
    Pretrained { from: PathBuf, detail: String },
    #[error("checkpoint {} is damaged: {detail}", dir.display())]
    CorruptCheckpoint { dir: PathBuf, detail: String },
    #[error("cannot resume {} with a different {}:\n{}\n  only the run's length, evaluation, logging and checkpoint cadence and backend may change", run.display(), if changes.len() == 1 { "setting" } else { "settings" }, render_changes(changes))]
    IncompatibleResume { run: PathBuf, changes: Vec<Change> },
    /// Ranks of one distributed run started from different inputs (checked at the start).
    #[error(
        "the {size} ranks of this run do not agree on {what}: rank {} differs from rank 0\n  every rank must run the same stoke on the same config and data",
        render_ranks(ranks)
    )]
    RanksDisagree {
        what: String,
        ranks: Vec<usize>,
        size: usize,
    },
    /// Ranks whose weights drifted apart during training (checked at every checkpoint).
    #[error(
        "rank {} no longer holds the same weights as rank 0 at step {step}; the checkpoint was not written",
        render_ranks(ranks)
    )]
    RanksDiverged { step: usize, ranks: Vec<usize> },
    #[error("the training loss became {value} by step {step}; the run stopped without saving that state\n  the last good checkpoint is {}; lower optimizer.lr or set train.grad_clip_norm, then: stoke train --resume {}", last_good.as_deref().unwrap_or("none"), run.display())]
    NonFiniteLoss {
        step: usize,
        value: f64,
        last_good: Option<String>,
        run: PathBuf,
    },
}

fn render_damaged(damaged: &[(String, String)]) -> String {
    damaged
        .iter()
        .map(|(name, problem)| format!("  {name}: {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_ranks(ranks: &[usize]) -> String {
    let ranks: Vec<String> = ranks.iter().map(ToString::to_string).collect();
    ranks.join(", ")
}

fn render_changes(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|change| {
            format!(
                "  {}: {} in the run, {} now",
                change.key, change.saved, change.requested
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether every rank of a distributed run meets this error at the same point (a
    /// disagreement found by a collective check), so that no rank waits for another.
    pub fn is_collective(&self) -> bool {
        matches!(
            self,
            Error::RanksDisagree { .. } | Error::RanksDiverged { .. }
        )
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
            | Error::NotARun(_)
            | Error::Usage(_)
            | Error::Artifact { .. }
            | Error::Pretrained { .. }
            | Error::IncompatibleResume { .. }
            | Error::RanksDisagree { .. } => 2,
            Error::Io { .. }
            | Error::Record { .. }
            | Error::Corrupt { .. }
            | Error::CheckpointWrite { .. }
            | Error::CorruptCheckpoint { .. }
            | Error::NoGoodCheckpoint { .. }
            | Error::NonFiniteLoss { .. }
            | Error::RanksDiverged { .. }
            | Error::Serve(_) => 1,
        }
    }
}
