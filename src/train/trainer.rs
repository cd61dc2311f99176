//! The training loop: epochs over shuffled batches, logging, validation, early stopping,
//! checkpoints and the final test evaluation, writing everything into the run directory. It
//! runs from the state [`super::session`] gives it, fresh or resumed.

use std::time::Instant;

use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;

use super::Experiment;
use super::eval;
use super::optim::{build_optimizer, build_scheduler};
use super::progress::{Progress, format_duration};
use super::step::{StepShare, Stepper, evaluate_part, predictions};
use super::{interrupt, ranks};
use crate::Error;
use crate::config;
use crate::data::{BatchStream, StreamPlan, batch_count, epoch_order, part_of_batches};
use crate::distributed::{self, World};
use crate::fault;
use crate::run::Measured;
use crate::run::checkpoint::{self, CheckpointChoice, Checkpoints, Snapshot};
use crate::run::metrics::{MetricRecord, MetricsLog, SplitName};
use crate::run::state::{BestCheckpoint, IntervalSums, TrainingState};
use crate::run::{DistributedRecord, RunDir, RunState, RunStatus, Summary};
use crate::task::Output;
use crate::train::Net;
use crate::train::Outcome;
use crate::train::measure::RunningMetrics;

/// Optimizer steps the configured run takes: what the cosine schedule spans.
pub(crate) fn planned_steps(experiment: &Experiment) -> usize {
    let train = &experiment.config.train;
    let per_epoch = steps_per_epoch(experiment, distributed::world());
    (per_epoch * train.epochs).min(train.max_steps.unwrap_or(usize::MAX))
}

/// Optimizer steps in an epoch: one per `samples_per_step` samples on each rank.
pub(crate) fn steps_per_epoch(experiment: &Experiment, world: &World) -> usize {
    let per_rank = experiment.config.train.samples_per_step();
    batch_count(experiment.splits.train.len(), per_rank * world.size())
}

/// Seeds everything random in one step (stoke's dropout stream and the device RNG) from the
/// run's seed and the step, so any step's draws can be reproduced without saving RNG state.
pub fn seed_step(device: &Device, seed: u64, step: usize) {
    let seed = step_seed(seed, step);
    device.seed(seed);
    crate::kernels::seed_dropout(seed);
}

fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed
        ^ (step as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// This rank's unfinished interval in `state`: its own, when the checkpoint kept each rank's;
/// otherwise all of it on rank 0.
fn own_interval(state: &TrainingState, world: &World) -> IntervalSums {
    match state.rank_intervals.get(world.rank()) {
        Some(own) if state.rank_intervals.len() == world.size() => own.clone(),
        _ if world.is_root() => state.interval.clone(),
        _ => IntervalSums::default(),
    }
}

/// Runs `body` with the run's `status.json` saying it is running, then how it ended.
pub(crate) fn with_status(
    run: &RunDir,
    writes: bool,
    body: impl FnOnce() -> Result<Outcome, Error>,
) -> Result<Outcome, Error> {
    if writes {
        RunStatus::running().write(run)?;
    }
    let outcome = body();
    if !writes {
        return outcome;
    }
    let status = match &outcome {
        Ok(Outcome::Finished(_) | Outcome::Followed { .. }) => {
            RunStatus::ended(RunState::Finished, None)
        }
        Ok(Outcome::Interrupted { .. }) => RunStatus::ended(RunState::Interrupted, None),
        Err(err) => RunStatus::ended(RunState::Failed, Some(err.to_string())),
    };
    // The outcome matters more than the status line: report it even if this write fails.
    let _ = status.write(run);
    outcome
}

/// What a loop starts from: the model, optimizer, scheduler and loop state, fresh or loaded
/// from a checkpoint, on the training device.
pub struct Parts {
    /// The training device (autodiff).
    pub device: Device,
    pub model: Box<dyn Net>,
    pub optimizer: ModuleOptimizer,
    pub scheduler: ModuleLrScheduler,
    /// Where the loop stands (step 0 for a fresh run).
    pub state: TrainingState,
}

impl Parts {
    /// A freshly initialized model, optimizer and scheduler at step 0.
    pub(crate) fn fresh(experiment: &Experiment) -> Result<Self, Error> {
        let device = experiment.backend.device.clone().autodiff();
        let model = experiment.initial_model(&device)?;
        let (optimizer, scheduler) = fresh_optimizer(experiment);
        Ok(Self {
            model,
            optimizer,
            scheduler,
            device,
            state: TrainingState::default(),
        })
    }
}

/// The optimizer and learning-rate scheduler `experiment`'s config describes, at step 0 (a
/// checkpoint's records are loaded into them to resume).
pub(crate) fn fresh_optimizer(experiment: &Experiment) -> (ModuleOptimizer, ModuleLrScheduler) {
    let config = &experiment.config;
    (
        build_optimizer(&config.optimizer, &config.train),
        build_scheduler(
            &config.scheduler,
            config.optimizer.lr(),
            &config.model.lr_by_prefix,
            planned_steps(experiment),
        ),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Completed,
    MaxSteps,
    EarlyStopping,
    Interrupted,
}

impl Stop {
    fn describe(self) -> &'static str {
        match self {
            Stop::Completed => "completed",
            Stop::MaxSteps => "max_steps",
            Stop::EarlyStopping => "early_stopping",
            Stop::Interrupted => "interrupted",
        }
    }
}

pub(crate) struct Trainer {
    experiment: Experiment,
    device: Device,
    model: Box<dyn Net>,
    optimizer: ModuleOptimizer,
    scheduler: ModuleLrScheduler,
    stepper: Stepper,
    run: RunDir,
    checkpoints: Checkpoints,
    log: MetricsLog,
    progress: Progress,
    state: TrainingState,
    /// Training metrics since the last record, on the device.
    interval: RunningMetrics,
    interval_started: Instant,
    session_started: Instant,
    /// `state.elapsed_s` when this session started.
    elapsed_before: f64,
    steps_per_epoch: usize,
    /// The step the last checkpoint was saved at, in this session.
    saved_at: Option<usize>,
    definition_hash: String,
    fixed_keys: std::collections::BTreeMap<String, String>,
    world: &'static World,
}

impl Trainer {
    pub(crate) fn new(
        experiment: Experiment,
        run: RunDir,
        log: MetricsLog,
        progress: Progress,
        parts: Parts,
    ) -> Self {
        let config = &experiment.config;
        let Parts {
            device,
            model,
            optimizer,
            scheduler,
            state,
        } = parts;
        progress.say(&format!(
            "{} model, {} parameters, {} precision; {} train / {} valid / {} test samples: {}",
            config.model.kind(),
            model.num_params(),
            config.train.precision,
            experiment.splits.train.len(),
            experiment.splits.valid.len(),
            experiment.splits.test.len(),
            experiment.splits.spec.describe(),
        ));
        let mut stepper = Stepper::new(&config.train, &experiment.task);
        stepper.resume_loss_scale(state.loss_scale.clone());
        let world = distributed::world();
        Self {
            stepper,
            checkpoints: run.checkpoints(),
            steps_per_epoch: steps_per_epoch(&experiment, world),
            definition_hash: config::definition_hash(config),
            fixed_keys: config::fixed_keys(config),
            interval: RunningMetrics::from_sums(
                &own_interval(&state, world),
                &experiment.task,
                &device,
            ),
            world,
            interval_started: Instant::now(),
            session_started: Instant::now(),
            elapsed_before: state.elapsed_s,
            saved_at: None,
            device,
            model,
            optimizer,
            scheduler,
            run,
            log,
            progress,
            state,
            experiment,
        }
    }

    /// Runs the loop, keeping the run's `status.json` current for `stoke runs`.
    pub(crate) fn run(self) -> Result<Outcome, Error> {
        let run = self.run.clone();
        let writes = self.world.is_root();
        with_status(&run, writes, || self.run_loop())
    }

    fn run_loop(mut self) -> Result<Outcome, Error> {
        interrupt::install();
        let epochs = self.experiment.config.train.epochs;
        let mut stop = Stop::Completed;
        while self.state.epoch < epochs {
            if let Some(early) = self.train_epoch()? {
                stop = early;
                break;
            }
        }
        if self.saved_at != Some(self.state.global_step)
            && self.checkpoints.list().last()
                != Some(&Checkpoints::name_for(self.state.global_step))
        {
            self.save_checkpoint()?;
        }
        if stop == Stop::Interrupted {
            return Ok(Outcome::Interrupted {
                checkpoint: Checkpoints::name_for(self.state.global_step),
                run_dir: self.run.path.clone(),
            });
        }
        self.finish(stop)
            .map(|summary| Outcome::Finished(Box::new(summary)))
    }

    /// Trains the rest of the current epoch; `Some` when something stopped the run.
    fn train_epoch(&mut self) -> Result<Option<Stop>, Error> {
        let config = &self.experiment.config;
        let (seed, train, data) = (config.run.seed, config.train.clone(), config.data.clone());
        let every_steps = config.checkpoint.every_steps;
        let splits = &self.experiment.splits;
        let world = self.world;
        let order = epoch_order(&splits.train, seed, self.state.epoch);
        let plan = StreamPlan {
            order: part_of_batches(&order, train.samples_per_step(), ranks::own_part(world)),
            batch_size: train.samples_per_step(),
            pass_size: train.batch_size,
            first: self.state.batch_in_epoch,
            workers: data.workers,
            prefetch: data.prefetch,
        };
        let context = self
            .experiment
            .batch_context(&self.device, Some(self.state.epoch));
        let mut stream = BatchStream::new(splits.train.data.clone(), plan, context);
        self.progress.start_epoch(
            self.state.epoch + 1,
            self.steps_per_epoch,
            self.state.batch_in_epoch,
        );
        let epoch_started = Instant::now();
        let mut stop = None;
        while self.state.batch_in_epoch < self.steps_per_epoch {
            // A rank may have no share of the epoch's last, short step: it adds nothing.
            let passes = stream.next().unwrap_or_default();
            let (global, stop_asked) =
                ranks::agree_on_step(world, predictions(&passes), interrupt::requested());
            let share = StepShare {
                predictions: global,
                first_pass: world.rank() * train.grad_accum_steps,
            };
            seed_step(&self.device, seed, self.state.global_step);
            let lr = self.scheduler.step();
            self.state.lr = lr.base();
            self.model.step(
                &mut self.stepper,
                &mut self.optimizer,
                lr,
                passes,
                share,
                &mut self.interval,
            )?;
            self.state.global_step += 1;
            self.state.batch_in_epoch += 1;
            self.progress.advance();
            fault::after_step(self.state.global_step, world.rank());

            let step = self.state.global_step;
            let epoch_ends = self.state.batch_in_epoch == self.steps_per_epoch;
            if step.is_multiple_of(train.log_every) {
                self.log_train()?;
            }
            if !epoch_ends
                && train
                    .eval_every
                    .is_some_and(|every| step.is_multiple_of(every))
            {
                self.validate()?;
                if self.early_stop_due() {
                    stop = Some(Stop::EarlyStopping);
                }
            }
            if every_steps.is_some_and(|every| step.is_multiple_of(every)) {
                self.save_checkpoint()?;
            }
            if train.max_steps.is_some_and(|max| step >= max) {
                stop = stop.or(Some(Stop::MaxSteps));
            }
            if stop_asked {
                stop = Some(Stop::Interrupted);
            }
            if stop.is_some() && !epoch_ends {
                break;
            }
        }
        // An interrupted run keeps its partial interval in the checkpoint instead, so the
        // resumed run writes the same records as one never interrupted.
        if stop != Some(Stop::Interrupted) {
            self.log_train()?;
        }
        let epoch_time = epoch_started.elapsed().as_secs_f64();
        self.progress.finish_epoch();
        if self.state.batch_in_epoch < self.steps_per_epoch {
            // Stopped inside the epoch: validate where it stands unless it is an interruption.
            let validated_here = self.state.last_valid.as_ref().map(|(step, _)| *step)
                == Some(self.state.global_step);
            if stop != Some(Stop::Interrupted) && !validated_here {
                self.validate()?;
            }
            return Ok(stop);
        }

        self.state.epoch += 1;
        self.state.batch_in_epoch = 0;
        self.state.epoch_time_s.push(epoch_time);
        let epoch_train = combine(&std::mem::take(&mut self.state.epoch_parts));
        self.progress.say(&format!(
            "epoch {} trained in {} ({:.0} samples/s)",
            self.state.epoch,
            format_duration(epoch_time),
            epoch_train
                .as_ref()
                .map_or(0.0, |m| m.samples as f64 / epoch_time)
        ));
        self.state.last_epoch_train = epoch_train;
        self.validate()?;
        if self.early_stop_due() {
            stop = stop.or(Some(Stop::EarlyStopping));
        }
        let every = self.experiment.config.checkpoint.every_epochs;
        if every > 0 && self.state.epoch.is_multiple_of(every) {
            self.save_checkpoint()?;
        }
        Ok(stop)
    }

    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.session_started.elapsed().as_secs_f64()
    }

    /// Reads the interval's metrics back (a device sync), logs and shows them. A loss that is
    /// no longer finite stops the run here, before any checkpoint can save that state.
    fn log_train(&mut self) -> Result<(), Error> {
        let task = &self.experiment.task;
        let sums = ranks::sum_over_ranks(self.world, self.interval.take_sums(), task);
        let Some(measured) = Measured::from_sums(&sums, task) else {
            return Ok(());
        };
        if !measured.loss.is_finite() {
            return Err(self.non_finite(measured.loss));
        }
        let seconds = self.interval_started.elapsed().as_secs_f64();
        self.interval_started = Instant::now();
        self.state.trained_samples += measured.samples;
        self.state.trained_s += seconds;
        let record = self.record(SplitName::Train, &measured, seconds);
        self.state.epoch_parts.push(measured);
        self.log.append(&record)?;
        let batches_left = self
            .steps_per_epoch
            .saturating_sub(self.state.batch_in_epoch);
        // Samples of one global step: every rank's passes.
        let batch_size =
            (self.experiment.config.train.samples_per_step() * self.world.size()) as f64;
        let eta = batches_left as f64 * batch_size / record.samples_per_s;
        self.progress
            .train_interval(&record, self.state.batch_in_epoch, eta);
        Ok(())
    }

    fn non_finite(&self, value: f64) -> Error {
        Error::NonFiniteLoss {
            step: self.state.global_step,
            value,
            last_good: self.checkpoints.list().last().cloned(),
            run: self.run.path.clone(),
        }
    }

    /// A metric record of the current position; `seconds` is what the measurement took.
    fn record(&self, split: SplitName, measured: &Measured, seconds: f64) -> MetricRecord {
        let position = (
            self.state.global_step,
            self.state.epoch + 1,
            self.state.lr,
            self.elapsed(),
        );
        MetricRecord::new(split, measured, seconds, position)
    }

    /// Evaluates `model` on `split`, each rank on its share of the batches (`also` sees this
    /// rank's batches: logits and targets); returns the metrics and the seconds it took.
    fn evaluate(
        &self,
        model: &dyn Net,
        split: &crate::data::Split,
        also: impl FnMut(&Output),
    ) -> Result<(Measured, f64), Error> {
        let started = Instant::now();
        let task = &self.experiment.task;
        let sums = evaluate_part(
            model,
            task,
            split,
            self.experiment.config.train.eval_batch_size,
            self.experiment.config.data.workers,
            &self.experiment.batch_context(&self.device, None),
            ranks::own_part(self.world),
            also,
        )?;
        let sums = ranks::sum_over_ranks(self.world, sums, task);
        let measured = Measured::of_split(&sums, task);
        Ok((measured, started.elapsed().as_secs_f64()))
    }

    /// Validates the current model (when there is a validation split), logs the result and
    /// updates the early-stopping count.
    fn validate(&mut self) -> Result<(), Error> {
        let splits = &self.experiment.splits;
        if splits.valid.is_empty() {
            return Ok(());
        }
        let (measured, seconds) = self.evaluate(self.model.as_ref(), &splits.valid, |_| {})?;
        let mut record = self.record(SplitName::Valid, &measured, seconds);
        if self.state.batch_in_epoch == 0 {
            record.epoch = self.state.epoch; // An epoch-end validation belongs to that epoch.
        }
        self.log.append(&record)?;
        self.progress.evaluation(&record, "");
        if self.world.is_root() {
            self.write_reports();
        }
        if let (Some(early), Some((metric, mode))) = (
            &self.experiment.config.train.early_stopping,
            self.experiment.early_stopping_monitor(),
        ) {
            let value = monitored(&metric, &measured);
            let stopping = &mut self.state.early_stopping;
            match stopping.best {
                Some(best) if !mode.improves(value, best, early.min_delta) => stopping.stale += 1,
                _ => {
                    stopping.best = Some(value);
                    stopping.stale = 0;
                }
            }
        }
        self.state.last_valid = Some((self.state.global_step, measured));
        Ok(())
    }

    fn early_stop_due(&self) -> bool {
        let Some(early) = &self.experiment.config.train.early_stopping else {
            return false;
        };
        let due = self.state.early_stopping.stale >= early.patience;
        if due {
            self.progress.say(&format!(
                "early stopping: {} has not improved in {} validations",
                early.monitor, early.patience
            ));
        }
        due
    }

    /// Ranks the checkpoint about to be saved among the best ones, if it was validated.
    fn rank_checkpoint(&mut self) {
        let policy = &self.experiment.config.checkpoint;
        let step = self.state.global_step;
        let Some((validated_at, measured)) = &self.state.last_valid else {
            return;
        };
        if *validated_at != step || policy.keep_best == 0 {
            return;
        }
        let (metric, mode) = self.experiment.checkpoint_monitor();
        let candidate = BestCheckpoint {
            name: Checkpoints::name_for(step),
            step,
            epoch: self.state.epoch,
            value: monitored(&metric, measured),
        };
        let best = &mut self.state.best;
        best.retain(|b| b.step != step);
        let position = best
            .iter()
            .position(|b| mode.improves(candidate.value, b.value, 0.0))
            .unwrap_or(best.len());
        best.insert(position, candidate);
        best.truncate(policy.keep_best);
    }

    /// Saves a checkpoint of the current step (refusing a diverged state), moves `best`,
    /// then deletes checkpoints beyond the keep-last and keep-best policy.
    fn save_checkpoint(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let world = self.world;
        self.state.interval = self.interval.sums();
        if world.is_distributed() {
            let step = self.state.global_step;
            world
                .check_agreement("weights", self.model.weights_digest())
                .map_err(|err| match err {
                    Error::RanksDisagree { ranks, .. } => Error::RanksDiverged { step, ranks },
                    other => other,
                })?;
            let task = &self.experiment.task;
            self.state.rank_intervals = ranks::gather_from_ranks(world, &self.state.interval, task);
            self.state.interval = ranks::sum_over_ranks(world, self.state.interval.clone(), task);
        }
        self.state.world_size = world.size();
        self.state.loss_scale = self.stepper.loss_scale().cloned();
        if !self.state.interval.loss_sum.is_finite() {
            return Err(self.non_finite(self.state.interval.loss_sum));
        }
        if let Some((_, valid)) = &self.state.last_valid
            && !valid.loss.is_finite()
        {
            return Err(self.non_finite(valid.loss));
        }
        self.rank_checkpoint();
        self.log.sync()?;
        self.state.metrics_lines = self.log.lines();
        self.state.elapsed_s = self.elapsed();
        if !world.is_root() {
            self.saved_at = Some(self.state.global_step);
            // The others read it (the test split's checkpoint) only once rank 0 has written it.
            world.wait_for_all();
            return Ok(());
        }
        let snapshot = Snapshot {
            model: self.model.as_ref(),
            optimizer: &self.optimizer,
            scheduler: &self.scheduler,
            state: &self.state,
            model_kind: self.experiment.config.model.kind(),
            definition_hash: &self.definition_hash,
            fixed_keys: &self.fixed_keys,
            spec: &self.experiment.splits.spec,
            tokenizer: self.experiment.splits.tokenizer.as_deref(),
        };
        self.checkpoints.save(&snapshot)?;
        self.saved_at = Some(self.state.global_step);
        if let Some(best) = self.state.best.first()
            && best.step == self.state.global_step
        {
            self.checkpoints.point("best", &best.name)?;
            self.progress.say(&format!(
                "new best checkpoint: {} ({:.4})",
                best.name, best.value
            ));
        }
        let keep: Vec<String> = self.state.best.iter().map(|b| b.name.clone()).collect();
        self.checkpoints
            .prune(self.experiment.config.checkpoint.keep_last, &keep)?;
        self.state
            .checkpoint_time_s
            .push(started.elapsed().as_secs_f64());
        world.wait_for_all();
        Ok(())
    }

    /// Rewrites metrics.csv and the plots. They are derived from metrics.jsonl, so failing to
    /// write them warns rather than stopping the run.
    fn write_reports(&self) {
        let tensorboard = self.experiment.config.log.tensorboard;
        if let Err(err) = crate::run::plots::write(&self.run.path, tensorboard) {
            self.progress.say(&format!(
                "warning: cannot update the plots and metrics.csv: {err}"
            ));
        }
    }

    /// Writes `<run>/report/` on rank 0: for the test split with the model and the pass it
    /// was scored with (`tested`), or without a test split for the validation split with the
    /// same checkpoint. Like the plots it is derived from the run, so failing to write it
    /// warns rather than failing the run.
    fn write_evaluation_report(&self, tested: Option<Tested>, choice: &CheckpointChoice) {
        let written = (|| -> Result<Option<std::path::PathBuf>, Error> {
            let splits = &self.experiment.splits;
            // Rank 0 alone from here: its passes over a split are its own (`eval::score`),
            // never the collective `self.evaluate`.
            let (tested, split, data) = match tested {
                Some(tested) => (tested, SplitName::Test, &splits.test),
                None if splits.valid.is_empty() => return Ok(None),
                None => {
                    let checkpoint = self.checkpoints.open(choice)?;
                    let mut model = self.model.boxed_clone();
                    checkpoint::load_model(&checkpoint.dir, model.as_mut())?;
                    let (measured, seconds, gathered) =
                        eval::score(&self.experiment, model.as_ref(), &splits.valid, true)?;
                    let tested = Tested {
                        record: self.record(SplitName::Valid, &measured, seconds),
                        samples: measured.samples,
                        model,
                        checkpoint: checkpoint.name,
                        gathered,
                    };
                    (tested, SplitName::Valid, &splits.valid)
                }
            };
            // On several ranks each gathered only its part of the test split: go over it whole.
            let gathered = match tested.gathered {
                Some(gathered) => gathered,
                None => eval::score(&self.experiment, tested.model.as_ref(), data, true)?
                    .2
                    .expect("asked to gather"),
            };
            let subject = eval::Subject {
                experiment: &self.experiment,
                split,
                data,
                run_dir: &self.run.path,
                checkpoint: &tested.checkpoint,
            };
            let options = eval::ReportOptions::from_config(&self.experiment.config.eval);
            let dir = self.run.path.join(crate::report::REPORT_DIR);
            let headline = eval::headline(&tested.record, tested.samples);
            eval::write_report(&subject, headline, gathered, &options, &dir).map(Some)
        })();
        match written {
            Ok(Some(page)) => self.progress.say(&format!("report: {}", page.display())),
            Ok(None) => {}
            Err(err) => self.progress.say(&format!(
                "warning: cannot write the evaluation report: {err}"
            )),
        }
    }

    fn finish(&mut self, stop: Stop) -> Result<Summary, Error> {
        let splits = &self.experiment.splits;
        let choice = if self.state.best.is_empty() {
            CheckpointChoice::Last
        } else {
            CheckpointChoice::Best
        };
        let (test, tested) = if splits.test.is_empty() {
            (None, None)
        } else {
            let checkpoint = self.checkpoints.open(&choice)?;
            let mut model = self.model.boxed_clone();
            checkpoint::load_model(&checkpoint.dir, model.as_mut())?;
            // In one process the test pass also gathers what the report needs.
            let mut gathered = (self.experiment.config.eval.report && self.world.size() == 1)
                .then(|| eval::Gathered::for_task(&self.experiment.task));
            let (measured, seconds) = self.evaluate(model.as_ref(), &splits.test, |output| {
                if let Some(gathered) = gathered.as_mut() {
                    gathered.add(&output.scored);
                }
            })?;
            let mut record = self.record(SplitName::Test, &measured, seconds);
            record.epoch = self.state.epoch.max(1);
            self.log.append(&record)?;
            self.progress.evaluation(
                &record,
                &format!(" ({choice} checkpoint {})", checkpoint.name),
            );
            let tested = Tested {
                record,
                samples: measured.samples,
                model,
                checkpoint: checkpoint.name,
                gathered,
            };
            (Some(measured), Some(tested))
        };
        let test_checkpoint = tested.as_ref().map(|t| t.checkpoint.clone());
        if self.world.is_root() {
            self.write_reports();
            if self.experiment.config.eval.report {
                self.write_evaluation_report(tested, &choice);
            }
        }
        let state = &self.state;
        let summary = Summary {
            run_dir: self.run.path.clone(),
            backend: self.experiment.backend.name,
            adapter: self.experiment.backend.adapter.clone(),
            model: self.experiment.config.model.kind().to_string(),
            parameters: self.model.num_params(),
            data: splits.spec.clone(),
            skipped_records: splits.skipped.clone(),
            unseen_categories: splits.unseen_categories.clone(),
            steps: state.global_step,
            precision: self.experiment.config.train.precision,
            loss_scale: self.stepper.loss_scale().cloned(),
            epochs_completed: state.epoch,
            stopped: stop.describe().to_string(),
            train: state
                .last_epoch_train
                .clone()
                .or_else(|| combine(&state.epoch_parts)),
            valid: state
                .last_valid
                .as_ref()
                .map(|(_, measured)| measured.clone()),
            test,
            test_checkpoint,
            best: state.best.first().cloned(),
            epoch_time_s: state.epoch_time_s.clone(),
            checkpoint_time_s: state.checkpoint_time_s.clone(),
            weights_sha256: crate::model::hex(&self.model.weights_digest()),
            train_samples_per_s: state.trained_samples as f64
                / state.trained_s.max(f64::MIN_POSITIVE),
            wall_time_s: self.elapsed(),
            distributed: self.stepper.reducer().map(|reducer| {
                let mut record =
                    DistributedRecord::new(&self.experiment.config.train, self.world.size());
                record.all_reduce_values = Some(reducer.values);
                record.all_reduce_s = Some(reducer.elapsed.as_secs_f64());
                // Of the training time (this session's, for a fresh run all of it).
                let trained_s = state.trained_s.max(f64::MIN_POSITIVE);
                record.all_reduce_share = Some(reducer.elapsed.as_secs_f64() / trained_s);
                record.waiting_s = Some(reducer.waiting.as_secs_f64());
                record.waiting_share = Some(reducer.waiting.as_secs_f64() / trained_s);
                record
            }),
        };
        if !self.world.is_root() {
            return Ok(summary);
        }
        self.run.write_summary(&summary)?;
        self.progress.say(&format!(
            "finished ({}) in {}: run directory {}",
            summary.stopped,
            format_duration(summary.wall_time_s),
            self.run.path.display()
        ));
        Ok(summary)
    }
}

/// The end-of-run evaluation a report is written from.
struct Tested {
    record: MetricRecord,
    samples: usize,
    model: Box<dyn Net>,
    checkpoint: String,
    /// What the pass gathered for the report (in one process; `None` on several ranks).
    gathered: Option<eval::Gathered>,
}

/// The value of `metric` (a name from the task's monitors) in `measured`.
fn monitored(metric: &str, measured: &Measured) -> f64 {
    measured.get(metric).unwrap_or(f64::NAN)
}

/// Sample-weighted mean of interval metrics. Per-class counts are not kept across log
/// intervals, so metrics that are not means over samples (macro-F1, R²) are left to
/// validation.
fn combine(parts: &[Measured]) -> Option<Measured> {
    let samples: usize = parts.iter().map(|m| m.samples).sum();
    if samples == 0 {
        return None;
    }
    let mean = |value: &dyn Fn(&Measured) -> Option<f64>| -> Option<f64> {
        parts
            .iter()
            .map(|m| value(m).map(|v| v * m.samples as f64))
            .sum::<Option<f64>>()
            .map(|sum| sum / samples as f64)
    };
    let averaged = ["accuracy", "top_k_accuracy", "mae", "exact_match"];
    let metrics = averaged
        .iter()
        .filter_map(|name| Some((name.to_string(), mean(&|m| m.get(name))?)))
        .collect();
    Some(Measured {
        loss: mean(&|m| Some(m.loss)).unwrap_or(f64::NAN),
        samples,
        tokens: parts.iter().map(|m| m.tokens).sum(),
        metrics,
    })
}
