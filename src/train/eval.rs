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
use crate::config::{DataConfig, EvalConfig};
use crate::data::{DataSpec, Part, SliceBy, Split, slice_values};
use crate::model::{Model, probabilities};
use crate::report::{
    self, ClassificationReport, LossSums, Outcome, REPORT_DIR, Report, SliceReport, WorstError,
    worst_errors,
};

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

/// What the evaluation report holds beyond the numbers: how to slice the examples and how
/// many of the worst errors to list.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    pub slice_by: Option<SliceBy>,
    pub worst_errors: usize,
}

impl ReportOptions {
    /// The options of a run's `[eval]` section.
    pub fn from_config(eval: &EvalConfig) -> Self {
        let slice_by = match (&eval.slice_by, &eval.slice_file) {
            (Some(field), _) => Some(SliceBy::Field(field.clone())),
            (None, Some(file)) => Some(SliceBy::File(file.clone())),
            (None, None) => None,
        };
        ReportOptions {
            slice_by,
            worst_errors: eval.worst_errors,
        }
    }
}

/// `stoke eval`'s request for a report: each field left `None` takes the run's `[eval]`
/// setting (the folder: `<run>/report`).
#[derive(Debug, Clone, Default)]
pub struct ReportRequest {
    pub dir: Option<PathBuf>,
    pub slice_by: Option<SliceBy>,
    pub worst_errors: Option<usize>,
}

/// Scores `choice` of the run at `run_path` on `split`; with `report`, also writes the
/// evaluation report.
pub fn evaluate_run(
    run_path: &Path,
    choice: &CheckpointChoice,
    split: SplitName,
    backend_choice: Option<BackendChoice>,
    report: Option<&ReportRequest>,
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
    if data.is_empty() {
        return Err(Error::Usage(format!(
            "the {split} split of {} is empty{}",
            run_path.display(),
            if split == SplitName::Test {
                " (the run holds out no test data; --split valid scores the validation split)"
            } else {
                ""
            }
        )));
    }
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
        run_dir: run.path.clone(),
        checkpoint: chosen.name.clone(),
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
    if let Some(request) = report {
        let mut options = ReportOptions::from_config(&experiment.config.eval);
        if let Some(by) = &request.slice_by {
            options.slice_by = Some(by.clone());
        }
        options.worst_errors = request.worst_errors.unwrap_or(options.worst_errors);
        let dir = request
            .dir
            .clone()
            .unwrap_or_else(|| run.path.join(REPORT_DIR));
        let subject = Subject {
            experiment: &experiment,
            model: &model,
            split,
            data,
            run_dir: &run.path,
            checkpoint: &chosen.name,
        };
        let page = write_report(&subject, headline(&record, metrics.samples), &options, &dir)?;
        eprintln!("report: {}", page.display());
    }
    Ok(eval)
}

/// What a report is about: a model of a run on one of its splits.
pub(super) struct Subject<'a> {
    pub experiment: &'a Experiment,
    pub model: &'a Model,
    pub split: SplitName,
    pub data: &'a Split,
    pub run_dir: &'a Path,
    pub checkpoint: &'a str,
}

/// The numbers of an evaluation that head its report.
pub(super) fn headline(record: &MetricRecord, samples: usize) -> serde_json::Value {
    let mut numbers = serde_json::json!({
        "samples": samples,
        "loss": record.loss,
        "accuracy": record.accuracy,
    });
    for (key, value) in [
        ("macro_f1", record.macro_f1),
        ("top_k_accuracy", record.top_k_accuracy),
        ("perplexity", record.perplexity),
        ("bits_per_char", record.bits_per_char),
    ] {
        if let Some(value) = value {
            numbers[key] = value.into();
        }
    }
    numbers
}

/// Runs `subject`'s model over its split once more to collect what the report needs, and
/// writes the report into `dir`; returns the page's path.
pub(super) fn write_report(
    subject: &Subject,
    eval: serde_json::Value,
    options: &ReportOptions,
    dir: &Path,
) -> Result<PathBuf, Error> {
    let experiment = subject.experiment;
    let config = &experiment.config;
    let device = &experiment.backend.device;
    let (batch_size, workers) = (config.train.eval_batch_size, config.data.workers);
    let mut report = Report {
        run_dir: subject.run_dir.to_path_buf(),
        checkpoint: subject.checkpoint.to_string(),
        split: subject.split.to_string(),
        eval,
        classification: None,
        slices: None,
        worst_errors: Vec::new(),
        language_model: None,
        data_report: find_data_report(&config.data.path, subject.run_dir),
    };
    match &experiment.splits.spec {
        DataSpec::LanguageModel { .. } if options.slice_by.is_some() => {
            return Err(Error::Usage(
                "slices are for classifiers; a language model's report has its loss by \
                 position and token"
                    .into(),
            ));
        }
        DataSpec::LanguageModel { context_length, .. } => {
            let tokenizer = experiment.splits.tokenizer.as_deref();
            let sums = token_losses(
                subject.model,
                subject.data,
                *context_length,
                batch_size,
                workers,
                device,
            );
            report.language_model = Some(sums.finish(|id| match tokenizer {
                Some(tokenizer) => tokenizer.decode(&[id]),
                None => id.to_string(),
            }));
        }
        spec => {
            let classes = spec.classes().unwrap_or_default();
            let outcomes = outcomes(subject.model, subject.data, batch_size, workers, device);
            if let Some(by) = &options.slice_by {
                let (attribute, values) = slice_values(&config.data, subject.data, by)?;
                let sliced = SliceReport::new(&attribute, &outcomes, &values, classes.len());
                for slice in sliced.slices.iter().filter(|s| s.flagged) {
                    eprintln!(
                        "slice {}={}: accuracy {:.3} ({:.3} – {:.3}) against {:.3} for the rest: \
                         below the rest",
                        sliced.attribute,
                        slice.value,
                        slice.metrics.accuracy,
                        slice.metrics.accuracy_interval[0],
                        slice.metrics.accuracy_interval[1],
                        slice.rest.accuracy
                    );
                }
                report.slices = Some(sliced);
            }
            report.worst_errors = worst_errors(
                &outcomes,
                &subject.data.indices,
                classes,
                options.worst_errors,
                |index| subject.data.data.example(index),
            );
            name_errors_by_id(&mut report.worst_errors, &config.data, subject.data);
            report.classification = Some(ClassificationReport::new(&outcomes, classes));
        }
    }
    report::write(&report, dir)
}

/// Gives each of `errors` its record's `id` field, where the records have one.
fn name_errors_by_id(errors: &mut [WorstError], data: &DataConfig, split: &Split) {
    let indices = errors.iter().map(|e| e.index).collect();
    let records = Split::new(split.data.clone(), indices);
    // Records without ids (or images) are shown by their location alone.
    if let Ok((_, ids)) = slice_values(data, &records, &SliceBy::Field(RECORD_ID.into())) {
        for (error, id) in errors.iter_mut().zip(ids) {
            error.id = id;
        }
    }
}

/// The field that names a record, when the records have one.
const RECORD_ID: &str = "id";

/// A `stoke data inspect` report of the data at `data_path`: `data-report.json` in the run
/// directory, the data folder, beside it, or the working directory, if it names that data.
fn find_data_report(data_path: &Path, run_dir: &Path) -> Option<PathBuf> {
    let folder = if data_path.is_dir() {
        Some(data_path)
    } else {
        data_path.parent()
    };
    let candidates = [
        Some(run_dir),
        folder,
        folder.and_then(Path::parent),
        Some(Path::new(".")),
    ];
    let wanted = std::fs::canonicalize(data_path).ok()?;
    candidates.into_iter().flatten().find_map(|dir| {
        let path = dir.join("data-report.json");
        let text = std::fs::read_to_string(&path).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        let named = std::fs::canonicalize(value.get("path")?.as_str()?).ok()?;
        (named == wanted).then_some(path)
    })
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

/// A language model's loss on every token of `split`, summed by position in the window and
/// by target token. Rows of the logits are the windows' positions in order.
fn token_losses(
    model: &Model,
    split: &Split,
    context_length: usize,
    batch_size: usize,
    workers: usize,
    device: &burn::prelude::Device,
) -> LossSums {
    let mut sums = LossSums::default();
    for_each_eval_batch(
        model,
        split,
        batch_size,
        workers,
        device,
        Part::WHOLE,
        |logits, batch| {
            let [rows, _] = logits.dims();
            let targets = batch.targets;
            let log_probabilities = burn::tensor::activation::log_softmax(logits, 1)
                .gather(1, targets.clone().reshape([rows, 1]));
            let losses = log_probabilities
                .into_data()
                .iter::<f32>()
                .collect::<Vec<_>>();
            let targets = targets.into_data().iter::<i64>().collect::<Vec<_>>();
            for (row, (loss, target)) in losses.into_iter().zip(targets).enumerate() {
                sums.add(row % context_length, target as u32, -f64::from(loss));
            }
        },
    );
    sums
}
