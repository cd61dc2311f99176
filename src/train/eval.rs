//! `stoke eval`: a finished run's checkpoint scored on one of its splits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::checkpoint::{self, CheckpointChoice};
use super::metrics::MetricRecord;
use super::state::TrainingState;
use super::step::evaluate;
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
    pub samples: usize,
    pub loss: f64,
    pub accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits_per_char: Option<f64>,
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
    let experiment = Experiment::prepare(config, selected, chosen.tokenizer()?)?;
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
        experiment.metric_spec(),
        experiment.config.train.eval_batch_size,
        experiment.config.data.workers,
        &device,
    );
    let seconds = started.elapsed().as_secs_f64();
    let state: TrainingState = chosen.state()?;
    let position = (state.global_step, state.epoch, state.lr, 0.0);
    let record = MetricRecord::new(split, &metrics, &experiment.splits.spec, seconds, position);
    Ok(EvalReport {
        run_dir: run.path,
        checkpoint: chosen.name,
        split,
        backend: experiment.backend.name,
        samples: metrics.samples,
        loss: record.loss,
        accuracy: record.accuracy,
        macro_f1: record.macro_f1,
        perplexity: record.perplexity,
        bits_per_char: record.bits_per_char,
        samples_per_s: record.samples_per_s,
    })
}
