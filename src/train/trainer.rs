//! The training loop: epochs over shuffled batches, logging, validation, checkpoints and the
//! final test evaluation, writing everything into the run directory.

use std::path::PathBuf;
use std::time::Instant;

use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;

use super::Experiment;
use super::checkpoint::{self, BestCheckpoint, CheckpointChoice, Checkpoints, TrainingState};
use super::metrics::{MetricRecord, MetricsLog, SplitName};
use super::optim::{build_optimizer, build_scheduler};
use super::progress::{Progress, format_duration};
use super::run_dir::{RunDir, Summary};
use super::step::{DeviceBatch, Measured, RunningMetrics, Stepper, evaluate};
use crate::Error;
use crate::config::{Monitor, MonitorMode};
use crate::data::{BatchStream, StreamPlan, batch_count, epoch_order};
use crate::model::Model;

pub struct TrainOptions {
    /// Write the run here instead of a new directory under `run.runs_dir`.
    pub run_dir: Option<PathBuf>,
}

/// Trains the experiment from scratch and returns its summary.
pub fn train(experiment: Experiment, options: &TrainOptions) -> Result<Summary, Error> {
    let mut trainer = Trainer::new(experiment, options)?;
    trainer.run()
}

/// The seed of the device RNG (dropout) for one step: a function of the run's seed and the
/// step, so any step's draws can be reproduced without saving the backend's RNG.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed
        ^ (step as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Trainer {
    experiment: Experiment,
    device: Device,
    model: Model,
    optimizer: ModuleOptimizer,
    scheduler: ModuleLrScheduler,
    stepper: Stepper,
    run: RunDir,
    checkpoints: Checkpoints,
    log: MetricsLog,
    progress: Progress,
    started: Instant,
    steps_per_epoch: usize,
    state: TrainingState,
    lr: f64,
    epoch_time_s: Vec<f64>,
    last_train: Option<Measured>,
    /// The last validation and the step it was taken at.
    last_valid: Option<(usize, Measured)>,
    /// Training samples and seconds, for the mean throughput.
    trained: (usize, f64),
}

impl Trainer {
    fn new(experiment: Experiment, options: &TrainOptions) -> Result<Self, Error> {
        let started = Instant::now();
        let config = &experiment.config;
        let progress = Progress::new(config.train.progress, config.train.epochs);
        let device = experiment.backend.device.clone().autodiff();
        device.seed(config.run.seed);
        let model = experiment.new_model(&device)?;
        let optimizer = build_optimizer(&config.optimizer, &config.train);
        let steps_per_epoch = batch_count(experiment.splits.train.len(), config.train.batch_size);
        let planned_steps = (steps_per_epoch * config.train.epochs)
            .min(config.train.max_steps.unwrap_or(usize::MAX));
        let scheduler = build_scheduler(&config.scheduler, config.optimizer.lr(), planned_steps);

        let run = RunDir::create(config, options.run_dir.as_deref())?;
        let log = MetricsLog::create(&run.metrics_path())?;
        progress.say(&format!("run directory: {}", run.path.display()));
        progress.say(&format!(
            "{} model, {} parameters; {} train / {} valid / {} test images of {}; {} classes",
            config.model.kind(),
            model.num_params(),
            experiment.splits.train.len(),
            experiment.splits.valid.len(),
            experiment.splits.test.len(),
            experiment.splits.shape,
            experiment.splits.classes.len()
        ));
        Ok(Self {
            stepper: Stepper::new(&config.train, &device),
            checkpoints: run.checkpoints(),
            device,
            model,
            optimizer,
            scheduler,
            run,
            log,
            progress,
            started,
            steps_per_epoch,
            state: TrainingState {
                format_version: checkpoint::FORMAT_VERSION,
                stoke_version: env!("CARGO_PKG_VERSION").to_string(),
                global_step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                valid: None,
                best: None,
            },
            lr: 0.0,
            epoch_time_s: Vec::new(),
            last_train: None,
            last_valid: None,
            trained: (0, 0.0),
            experiment,
        })
    }

    fn run(&mut self) -> Result<Summary, Error> {
        let epochs = self.experiment.config.train.epochs;
        let mut stopped = "completed";
        while self.state.epoch < epochs {
            if !self.train_epoch()? {
                stopped = "max_steps";
                break;
            }
        }
        if self.checkpoints.list().last() != Some(&Checkpoints::name_for(self.state.global_step)) {
            self.save_checkpoint()?;
        }
        self.finish(stopped)
    }

    /// Trains the rest of the current epoch; false when `train.max_steps` stopped it early.
    fn train_epoch(&mut self) -> Result<bool, Error> {
        let config = &self.experiment.config;
        let (seed, train_cfg, data_cfg) =
            (config.run.seed, config.train.clone(), config.data.clone());
        let epoch_number = self.state.epoch + 1;
        let splits = &self.experiment.splits;
        let plan = StreamPlan {
            order: epoch_order(&splits.train, seed, self.state.epoch),
            batch_size: train_cfg.batch_size,
            first: self.state.batch_in_epoch,
            workers: data_cfg.workers,
            prefetch: data_cfg.prefetch,
        };
        let shape = splits.shape;
        let stream = BatchStream::new(self.experiment.train_batcher(), plan);
        self.progress.start_epoch(
            epoch_number,
            self.steps_per_epoch,
            self.state.batch_in_epoch,
        );

        let epoch_started = Instant::now();
        let mut interval = RunningMetrics::new();
        let mut interval_started = Instant::now();
        let mut epoch_metrics: Vec<Measured> = Vec::new();
        let mut finished_early = false;
        for batch in stream {
            self.device.seed(step_seed(seed, self.state.global_step));
            let lr = self.scheduler.step();
            self.lr = lr.base();
            let batch = DeviceBatch::new(batch, shape, &self.device);
            let model = self.model.clone();
            self.model = self
                .stepper
                .step(model, &mut self.optimizer, lr, batch, &mut interval);
            self.state.global_step += 1;
            self.state.batch_in_epoch += 1;
            self.progress.advance();

            let step = self.state.global_step;
            if step.is_multiple_of(train_cfg.log_every) {
                let measured = self.log_train(&mut interval, interval_started)?;
                epoch_metrics.extend(measured);
                interval_started = Instant::now();
            }
            if train_cfg.eval_every.is_some_and(|every| step.is_multiple_of(every))
                && self.state.batch_in_epoch < self.steps_per_epoch
            {
                self.validate()?;
            }
            if self
                .experiment
                .config
                .checkpoint
                .every_steps
                .is_some_and(|every| step.is_multiple_of(every))
            {
                self.save_checkpoint()?;
            }
            if train_cfg.max_steps.is_some_and(|max| step >= max) {
                finished_early = self.state.batch_in_epoch < self.steps_per_epoch;
                break;
            }
        }
        if interval.samples() > 0 {
            epoch_metrics.extend(self.log_train(&mut interval, interval_started)?);
        }
        let epoch_time = epoch_started.elapsed().as_secs_f64();
        self.epoch_time_s.push(epoch_time);
        self.last_train = combine(&epoch_metrics);
        self.progress.finish_epoch();
        if finished_early {
            self.validate()?;
            return Ok(false);
        }

        self.state.epoch += 1;
        self.state.batch_in_epoch = 0;
        self.progress.say(&format!(
            "epoch {epoch_number} trained in {} ({:.0} samples/s)",
            format_duration(epoch_time),
            self.last_train
                .map_or(0.0, |m| m.samples as f64 / epoch_time)
        ));
        self.validate()?;
        let every = self.experiment.config.checkpoint.every_epochs;
        if every > 0 && self.state.epoch.is_multiple_of(every) {
            self.save_checkpoint()?;
        }
        let reached_max = train_cfg
            .max_steps
            .is_some_and(|max| self.state.global_step >= max);
        Ok(!reached_max)
    }

    /// Reads the interval's metrics back (a device sync), logs and shows them.
    fn log_train(
        &mut self,
        interval: &mut RunningMetrics,
        since: Instant,
    ) -> Result<Option<Measured>, Error> {
        let Some(measured) = interval.take() else {
            return Ok(None);
        };
        let seconds = since.elapsed().as_secs_f64();
        self.trained.0 += measured.samples;
        self.trained.1 += seconds;
        let record = self.record(
            SplitName::Train,
            measured,
            measured.samples as f64 / seconds,
        );
        self.log.append(&record)?;
        let batches_left = self
            .steps_per_epoch
            .saturating_sub(self.state.batch_in_epoch);
        let batch_size = self.experiment.config.train.batch_size as f64;
        let eta = batches_left as f64 * batch_size / record.samples_per_s;
        self.progress
            .train_interval(&record, self.state.batch_in_epoch, eta);
        Ok(Some(measured))
    }

    fn record(&self, split: SplitName, measured: Measured, samples_per_s: f64) -> MetricRecord {
        MetricRecord {
            step: self.state.global_step,
            epoch: self.state.epoch + 1,
            split,
            loss: measured.loss,
            accuracy: measured.accuracy,
            lr: self.lr,
            samples_per_s,
            time_s: self.started.elapsed().as_secs_f64(),
        }
    }

    /// Validates the current model (when there is a validation split) and logs the result.
    fn validate(&mut self) -> Result<(), Error> {
        let splits = &self.experiment.splits;
        if splits.valid.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let measured = evaluate(
            &self.model,
            &splits.valid,
            self.experiment.eval_batcher(&splits.valid),
            self.experiment.config.train.eval_batch_size,
            self.experiment.config.data.workers,
            &self.device,
        );
        let rate = measured.samples as f64 / started.elapsed().as_secs_f64();
        // Records of an epoch-end validation belong to the epoch just finished.
        let mut record = self.record(SplitName::Valid, measured, rate);
        if self.state.batch_in_epoch == 0 {
            record.epoch = self.state.epoch;
        }
        self.log.append(&record)?;
        self.progress.evaluation(&record, "");
        self.last_valid = Some((self.state.global_step, measured));
        Ok(())
    }

    /// Makes the checkpoint about to be saved the best one if its validation beats the best.
    fn track_best(&mut self) {
        let Some((step, measured)) = self.last_valid else {
            return;
        };
        if step != self.state.global_step {
            return;
        }
        let checkpoint = &self.experiment.config.checkpoint;
        let value = match checkpoint.monitor {
            Monitor::ValidAccuracy => measured.accuracy,
            Monitor::ValidLoss => measured.loss,
        };
        let improved = self
            .state
            .best
            .as_ref()
            .is_none_or(|best| match checkpoint.mode {
                MonitorMode::Max => value > best.value,
                MonitorMode::Min => value < best.value,
            });
        self.state.valid = Some(measured);
        if improved {
            self.state.best = Some(BestCheckpoint {
                name: Checkpoints::name_for(step),
                step,
                epoch: self.state.epoch,
                value,
            });
        }
    }

    /// Saves a checkpoint of the current step, moves `best` to it if it is the best so far,
    /// then deletes checkpoints beyond `checkpoint.keep_last`.
    fn save_checkpoint(&mut self) -> Result<(), Error> {
        self.track_best();
        self.checkpoints
            .save(&self.model, &self.optimizer, &self.scheduler, &self.state)?;
        if let Some(best) = &self.state.best
            && best.step == self.state.global_step
        {
            self.checkpoints.point("best", &best.name)?;
            self.progress.say(&format!(
                "new best checkpoint: {} ({:.4})",
                best.name, best.value
            ));
        }
        self.checkpoints
            .prune(self.experiment.config.checkpoint.keep_last)
    }

    fn finish(&mut self, stopped: &str) -> Result<Summary, Error> {
        let splits = &self.experiment.splits;
        let (test, test_checkpoint) = if splits.test.is_empty() {
            (None, None)
        } else {
            let choice = if self.state.best.is_some() {
                CheckpointChoice::Best
            } else {
                CheckpointChoice::Last
            };
            let dir = self.checkpoints.resolve(&choice)?;
            let model = checkpoint::load_model(&dir, self.model.clone())?;
            let started = Instant::now();
            let measured = evaluate(
                &model,
                &splits.test,
                self.experiment.eval_batcher(&splits.test),
                self.experiment.config.train.eval_batch_size,
                self.experiment.config.data.workers,
                &self.device,
            );
            let rate = measured.samples as f64 / started.elapsed().as_secs_f64();
            let mut record = self.record(SplitName::Test, measured, rate);
            record.epoch = self.state.epoch.max(1);
            self.log.append(&record)?;
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            self.progress.evaluation(
                &record,
                &format!(
                    " ({} checkpoint {})",
                    choice_name(&choice),
                    name.clone().unwrap_or_default()
                ),
            );
            (Some(measured), name)
        };
        let summary = Summary {
            run_dir: self.run.path.clone(),
            backend: self.experiment.backend.name,
            adapter: self.experiment.backend.adapter.clone(),
            model: self.experiment.config.model.kind().to_string(),
            parameters: self.model.num_params(),
            classes: splits.classes.clone(),
            input: splits.shape,
            normalization: splits.normalization.clone(),
            steps: self.state.global_step,
            epochs_completed: self.state.epoch,
            stopped: stopped.to_string(),
            train: self.last_train,
            valid: self.last_valid.map(|(_, measured)| measured),
            test,
            test_checkpoint,
            best: self.state.best.clone(),
            epoch_time_s: self.epoch_time_s.clone(),
            train_samples_per_s: self.trained.0 as f64 / self.trained.1.max(f64::MIN_POSITIVE),
            wall_time_s: self.started.elapsed().as_secs_f64(),
        };
        self.run.write_summary(&summary)?;
        self.progress.say(&format!(
            "finished in {}: run directory {}",
            format_duration(summary.wall_time_s),
            self.run.path.display()
        ));
        Ok(summary)
    }
}

fn choice_name(choice: &CheckpointChoice) -> &'static str {
    match choice {
        CheckpointChoice::Best => "best",
        _ => "last",
    }
}

/// Sample-weighted mean of interval metrics.
fn combine(parts: &[Measured]) -> Option<Measured> {
    let samples: usize = parts.iter().map(|m| m.samples).sum();
    (samples > 0).then(|| Measured {
        loss: parts.iter().map(|m| m.loss * m.samples as f64).sum::<f64>() / samples as f64,
        accuracy: parts
            .iter()
            .map(|m| m.accuracy * m.samples as f64)
            .sum::<f64>()
            / samples as f64,
        samples,
    })
}
