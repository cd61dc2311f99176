//! `stoke eval`: a finished run's checkpoint scored on one of its splits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::checkpoint::{self, CheckpointChoice};
use super::step::{Measured, evaluate};
use super::{Experiment, RunDir, SplitName};
use crate::Error;
use crate::backend::{self, BackendName};
use crate::config::BackendChoice;

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub run_dir: PathBuf,
    pub checkpoint: String,
    pub split: SplitName,
    pub backend: BackendName,
    #[serde(flatten)]
    pub metrics: Measured,
    pub samples_per_s: f64,
}

pub fn evaluate_run(
    run_path: &Path,
    choice: &CheckpointChoice,
    split: SplitName,
    backend_choice: Option<BackendChoice>,
) -> Result<EvalReport, Error> {
    let (run, config) = RunDir::open(run_path)?;
    let chosen = run.checkpoints().open(choice)?;
    let selected = backend::select(
        backend_choice.unwrap_or(config.run.backend),
        config.run.cpu_backend,
    )?;
    eprintln!("backend: {}", selected.reason);
    let experiment = Experiment::prepare(config, selected)?;
    let device = experiment.backend.device.clone();
    let model = checkpoint::load_model(&chosen.dir, experiment.new_model(&device)?)?;
    let data = match split {
        SplitName::Train => &experiment.splits.train,
        SplitName::Valid => &experiment.splits.valid,
        SplitName::Test => &experiment.splits.test,
    };
    let started = Instant::now();
    let metrics = evaluate(
        &model,
        data,
        experiment.eval_batcher(data),
        experiment.config.train.eval_batch_size,
        experiment.config.data.workers,
        &device,
    );
    Ok(EvalReport {
        run_dir: run.path,
        checkpoint: chosen.name,
        split,
        backend: experiment.backend.name,
        samples_per_s: metrics.samples as f64 / started.elapsed().as_secs_f64(),
        metrics,
    })
}
