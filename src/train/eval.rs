//! `stoke eval`: a finished run's checkpoint scored on one of its splits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use std::collections::BTreeMap;

use burn::prelude::*;
use serde::Serialize;

use super::Experiment;
use super::step::evaluate;
use crate::Error;
use crate::backend::{self, BackendName};
use crate::config::BackendChoice;
use crate::config::{DataConfig, DatasetKind, EvalConfig};
use crate::data::{SliceBy, Split, slice_values};
use crate::model::probabilities;
use crate::report::{
    self, ClassificationReport, LossSums, MultiLabelReport, Outcome, REPORT_DIR, RegressionReport,
    RegressionRows, Report, SliceReport, WorstError, worst_errors,
};
use crate::run::Measured;
use crate::run::checkpoint::{self, CheckpointChoice};
use crate::run::metrics::MetricRecord;
use crate::run::state::TrainingState;
use crate::run::{RunDir, SplitName};
use crate::task::{Scored, Task, TaskSpec, TaskSums};
use crate::train::Net;

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub run_dir: PathBuf,
    pub checkpoint: String,
    pub split: SplitName,
    pub backend: BackendName,
    pub samples: usize,
    pub loss: f64,
    pub samples_per_s: f64,
    /// The task's metrics.
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
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
        ReportOptions {
            slice_by: SliceBy::chosen(eval.slice_by.clone(), eval.slice_file.clone()),
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
    let mut model = experiment.new_model(&device)?;
    checkpoint::load_model(&chosen.dir, model.as_mut())?;
    let model = model.as_ref();
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
    let (metrics, seconds, gathered) = score(&experiment, model, data, report.is_some())?;
    let state: TrainingState = chosen.state()?;
    let position = (state.global_step, state.epoch, state.lr, 0.0);
    let record = MetricRecord::new(split, &metrics, seconds, position);
    let eval = EvalReport {
        run_dir: run.path.clone(),
        checkpoint: chosen.name.clone(),
        split,
        backend: experiment.backend.name,
        samples: metrics.samples,
        loss: record.loss,
        samples_per_s: record.samples_per_s,
        metrics: record.metrics.clone(),
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
            split,
            data,
            run_dir: &run.path,
            checkpoint: &chosen.name,
        };
        let gathered = gathered.expect("gathered for the report");
        let page = write_report(
            &subject,
            headline(&record, metrics.samples),
            gathered,
            &options,
            &dir,
        )?;
        eprintln!("report: {}", page.display());
    }
    Ok(eval)
}

/// What a report is about: a checkpoint of a run on one of its splits.
pub(crate) struct Subject<'a> {
    pub experiment: &'a Experiment,
    pub split: SplitName,
    pub data: &'a Split,
    pub run_dir: &'a Path,
    pub checkpoint: &'a str,
}

/// The numbers of an evaluation that head its report.
pub(crate) fn headline(record: &MetricRecord, samples: usize) -> serde_json::Value {
    let mut numbers = serde_json::json!({
        "samples": samples,
        "loss": record.loss,
    });
    for (key, value) in &record.metrics {
        numbers[key] = (*value).into();
    }
    numbers
}

/// Scores `model` on the whole of `split` in one pass (no collectives: one process, or
/// rank 0 alone), and with `gather` also gathers what a report needs from each batch.
/// Returns the metrics, the seconds the pass took and what was gathered.
pub(crate) fn score(
    experiment: &Experiment,
    model: &dyn Net,
    split: &Split,
    gather: bool,
) -> Result<(Measured, f64, Option<Gathered>), Error> {
    let mut gathered = gather.then(|| Gathered::for_task(&experiment.task));
    let started = Instant::now();
    let measured = evaluate(
        model,
        &experiment.task,
        split,
        experiment.config.train.eval_batch_size,
        experiment.config.data.workers,
        &experiment.batch_context(&experiment.backend.device, None),
        |output| {
            if let Some(gathered) = gathered.as_mut() {
                gathered.add(&output.scored);
            }
        },
    )?;
    Ok((measured, started.elapsed().as_secs_f64(), gathered))
}

/// Writes the report on `subject` from what its evaluation `gathered` into `dir`; returns
/// the page's path.
pub(crate) fn write_report(
    subject: &Subject,
    eval: serde_json::Value,
    gathered: Gathered,
    options: &ReportOptions,
    dir: &Path,
) -> Result<PathBuf, Error> {
    let experiment = subject.experiment;
    let config = &experiment.config;
    let mut report = Report {
        run_dir: subject.run_dir.to_path_buf(),
        checkpoint: subject.checkpoint.to_string(),
        split: subject.split.to_string(),
        eval,
        classification: None,
        slices: None,
        worst_errors: Vec::new(),
        language_model: None,
        regression: None,
        multi_label: None,
        data_report: find_data_report(&config.data.path, subject.run_dir),
    };
    match gathered {
        Gathered::TokenLosses { .. } | Gathered::Values(_) | Gathered::Labels { .. }
            if options.slice_by.is_some() =>
        {
            return Err(Error::Usage(format!(
                "slices are for classifiers; this is {} data",
                experiment.task.spec().name()
            )));
        }
        Gathered::Values(rows) => {
            let TaskSpec::Regression { targets, scales } = experiment.task.spec() else {
                unreachable!("values are gathered for regression");
            };
            report.regression = Some(RegressionReport::new(
                &rows,
                targets,
                scales,
                &subject.data.indices,
                options.worst_errors,
                |index| subject.data.data.example(index),
            ));
        }
        Gathered::Labels { sums, threshold } => {
            let TaskSpec::MultiLabel { labels } = experiment.task.spec() else {
                unreachable!("labels are gathered for multi-label data");
            };
            report.multi_label = Some(MultiLabelReport::new(&sums, labels, threshold));
        }
        Gathered::TokenLosses { sums, .. } => {
            let tokenizer = experiment.splits.tokenizer.as_deref();
            report.language_model = Some(sums.finish(|id| match tokenizer {
                Some(tokenizer) => tokenizer.decode(&[id]),
                None => id.to_string(),
            }));
        }
        Gathered::Outcomes(outcomes) => {
            let classes = experiment.splits.spec.classes().unwrap_or_default();
            let classes = classes.as_slice();
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
            describe_records(&mut report.worst_errors, &config.data, subject.data);
            report.classification = Some(ClassificationReport::new(&outcomes, classes));
        }
    }
    report::write(&report, dir)
}

/// Gives each of `errors` that is a text record its `id` field (where the records have one)
/// and its text's first characters, read back from the records' files.
fn describe_records(errors: &mut [WorstError], data: &DataConfig, split: &Split) {
    if data.dataset != DatasetKind::TextClassification {
        return;
    }
    let text_field = data.text.clone().unwrap_or_default().text_field;
    let records = Split::new(split.data.clone(), errors.iter().map(|e| e.index).collect());
    // Images and records without ids are shown by their location alone.
    let field = |name: &str| {
        slice_values(data, &records, &SliceBy::Field(name.into()))
            .map_or_else(|_| vec![None; errors.len()], |(_, values)| values)
    };
    let (ids, texts) = (field(RECORD_ID), field(&text_field));
    for ((error, id), text) in errors.iter_mut().zip(ids).zip(texts) {
        error.id = id;
        error.text = text.map(|text| text.chars().take(TEXT_SHOWN).collect());
    }
}

/// The field that names a record, when the records have one.
const RECORD_ID: &str = "id";

/// Characters of a wrongly classified text the report shows.
const TEXT_SHOWN: usize = 200;

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

/// What a report takes from each evaluated batch besides the metrics.
pub(crate) enum Gathered {
    /// Each example's class, the model's top class and that class's probability, in the
    /// split's order.
    Outcomes(Vec<Outcome>),
    /// A language model's loss on every token, by position in the window and by target.
    TokenLosses {
        sums: LossSums,
        context_length: usize,
    },
    /// Each row's predicted and true values (regression).
    Values(RegressionRows),
    /// Per-label counts (multi-label) at the task's threshold.
    Labels { sums: TaskSums, threshold: f64 },
}

impl Gathered {
    pub(crate) fn for_task(task: &Task) -> Self {
        match task.spec() {
            TaskSpec::LanguageModel { context_length, .. } => Gathered::TokenLosses {
                sums: LossSums::default(),
                context_length: *context_length,
            },
            TaskSpec::Regression { .. } => Gathered::Values(RegressionRows::default()),
            TaskSpec::MultiLabel { .. } => Gathered::Labels {
                sums: TaskSums::new(),
                threshold: task.threshold(),
            },
            TaskSpec::Classification { .. } => Gathered::Outcomes(Vec::new()),
        }
    }

    /// One batch's scores (for a language model the rows are the windows' positions in
    /// order).
    pub(crate) fn add(&mut self, scored: &Scored) {
        match (self, scored) {
            (Gathered::Outcomes(outcomes), Scored::Classes { logits, targets }) => {
                let [_, width] = logits.dims();
                let values: Vec<f32> = logits.to_data().iter::<f32>().collect();
                let targets = targets.to_data().iter::<i64>().collect::<Vec<_>>();
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
            }
            (
                Gathered::TokenLosses {
                    sums,
                    context_length,
                },
                Scored::Classes { logits, targets },
            ) => {
                let [rows, _] = logits.dims();
                let losses: Vec<f32> = burn::tensor::activation::log_softmax(logits.clone(), 1)
                    .gather(1, targets.clone().reshape([rows, 1]))
                    .into_data()
                    .iter::<f32>()
                    .collect();
                let targets = targets.to_data().iter::<i64>().collect::<Vec<_>>();
                for (row, (loss, target)) in losses.into_iter().zip(targets).enumerate() {
                    sums.add(row % *context_length, target as u32, -f64::from(loss));
                }
            }
            (Gathered::Values(rows), Scored::Values { predicted, targets }) => {
                let [_, width] = predicted.dims();
                let read = |t: &Tensor<2>| -> Vec<Vec<f64>> {
                    let values: Vec<f64> = t.to_data().iter::<f32>().map(f64::from).collect();
                    values.chunks_exact(width).map(<[f64]>::to_vec).collect()
                };
                rows.predicted.extend(read(predicted));
                rows.actual.extend(read(targets));
            }
            (Gathered::Labels { sums, threshold }, Scored::Labels { logits, targets }) => {
                let [_, width] = logits.dims();
                let cut = (*threshold / (1.0 - *threshold)).ln() as f32;
                let logits: Vec<f32> = logits.to_data().iter::<f32>().collect();
                let targets: Vec<i64> = targets.to_data().iter::<i64>().collect();
                let mut add = |name: &str, label: usize| {
                    let counts = sums
                        .entry(name.to_string())
                        .or_insert_with(|| vec![0.0; width]);
                    counts[label] += 1.0;
                };
                for (i, (&logit, &target)) in logits.iter().zip(&targets).enumerate() {
                    let (predicted, actual) = (logit >= cut, target == 1);
                    let label = i % width;
                    if predicted {
                        add("predicted", label);
                    }
                    if actual {
                        add("actual", label);
                    }
                    if predicted && actual {
                        add("true_positives", label);
                    }
                }
            }
            // A model's own loss alone, or scores the task check refused: nothing to report.
            _ => {}
        }
    }
}
