//! `stoke eval`: a finished run's checkpoint scored on one of its splits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::checkpoint::{self, CheckpointChoice};
use super::metrics::MetricRecord;
use super::state::TrainingState;
use super::step::{evaluate, for_each_eval_batch};
use super::{Experiment, RunDir, SplitName};
use crate::Error;
use crate::backend::{self, BackendName};
use crate::config::BackendChoice;
use crate::data::{Part, Split};
use crate::model::{Model, probabilities};
use crate::report::{self, ClassificationReport, Outcome};

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

/// Scores `choice` of the run at `run_path` on `split`; with `report_dir`, also writes the
/// classification report (`report.json`) there.
pub fn evaluate_run(
    run_path: &Path,
    choice: &CheckpointChoice,
    split: SplitName,
    backend_choice: Option<BackendChoice>,
    report_dir: Option<&Path>,
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
    let classes = match (report_dir, experiment.splits.spec.classes()) {
        (Some(_), None) => {
            return Err(Error::Usage(format!(
                "--report covers classifiers for now; {} is a language model",
                run_path.display()
            )));
        }
        (_, classes) => classes.map(<[String]>::to_vec),
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
    let eval = EvalReport {
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
    };
    if let (Some(dir), Some(classes)) = (report_dir, classes) {
        let outcomes = outcomes(
            &model,
            data,
            experiment.config.train.eval_batch_size,
            experiment.config.data.workers,
            &device,
        );
        let classification = ClassificationReport::new(&outcomes, &classes);
        let path = report::write(
            &serde_json::json!({"eval": &eval, "classification": classification}),
            dir,
        )?;
        eprintln!("report: {}", path.display());
    }
    Ok(eval)
}

/// Each example of `split`: its class, the model's top class and that class's probability.
fn outcomes(
    model: &Model,
    split: &Split,
    batch_size: usize,
    workers: usize,
    device: &burn::prelude::Device,
) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(split.indices.len());
    for_each_eval_batch(
        model,
        split,
        batch_size,
        workers,
        device,
        Part::WHOLE,
        |logits, batch| {
            let [_, width] = logits.dims();
            let values: Vec<f32> = logits.into_data().iter::<f32>().collect();
            let targets = batch.targets.into_data().iter::<i64>().collect::<Vec<_>>();
            for (row, target) in values.chunks_exact(width).zip(targets) {
                let probabilities = probabilities(row);
                let (predicted, confidence) = probabilities.iter().copied().enumerate().fold(
                    (0, f64::NEG_INFINITY),
                    |best, (class, p)| {
                        if p > best.1 { (class, p) } else { best }
                    },
                );
                outcomes.push(Outcome {
                    target: target as usize,
                    predicted,
                    confidence,
                });
            }
        },
    );
    outcomes
}
