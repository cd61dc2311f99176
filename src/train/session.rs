//! How a training session begins: a fresh run ([`train`]), a run stopped before its first
//! checkpoint started again, or a run continued from a checkpoint ([`resume`]) after checking
//! that nothing it may not change has changed (against the checkpoint's own record) and that
//! its steps keep their passes on this world of ranks. Each ends in the same loop
//! ([`super::trainer`]).

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::Experiment;
use super::ranks;
use super::trainer::{Parts, Trainer, fresh_optimizer, steps_per_epoch};
use crate::Error;
use crate::backend::SelectedBackend;
use crate::config;
use crate::config::ExperimentConfig;
use crate::distributed::{self, World};
use crate::run::checkpoint::{self, CheckpointChoice};
use crate::run::metrics::MetricsLog;
use crate::run::state::TrainingState;
use crate::run::{DistributedRecord, RunDir, Summary};
use crate::train::progress::Progress;

pub struct TrainOptions<'a> {
    /// Write the run here instead of a new directory under `run.runs_dir`.
    pub run_dir: Option<PathBuf>,
    /// A loop of its own instead of training on the config's data for epochs (following a
    /// directory of shards: `crate::follow`).
    pub custom_loop: Option<&'a dyn CustomLoop>,
}

/// A loop of its own in place of the epoch loop, given everything a session prepares (the
/// experiment, the run directory, its metrics log and the model, optimizer, scheduler and
/// state, fresh or resumed): continual training runs rounds over arriving shards this way.
pub trait CustomLoop {
    /// Refuses the experiment before anything is written or resumed.
    fn check(&self, experiment: &Experiment) -> Result<(), Error>;

    /// Runs the loop from `parts`.
    fn run(
        &self,
        experiment: Experiment,
        run: RunDir,
        log: MetricsLog,
        progress: Progress,
        parts: Parts,
    ) -> Result<Outcome, Error>;
}

/// How a training session ended.
#[derive(Debug)]
pub enum Outcome {
    Finished(Box<Summary>),
    /// Stopped on Ctrl-C or SIGTERM after saving `checkpoint`.
    Interrupted {
        checkpoint: String,
        run_dir: PathBuf,
    },
    /// A followed directory stopped giving shards (`follow.idle_exit_s`, `follow.max_shards`).
    Followed {
        run_dir: PathBuf,
        shards: usize,
    },
}

/// Trains the experiment from scratch.
pub fn train(experiment: Experiment, options: &TrainOptions) -> Result<Outcome, Error> {
    let world = distributed::world();
    check_world_fits(world, &experiment)?;
    ranks::check_same_experiment(world, &experiment)?;
    if let Some(custom_loop) = options.custom_loop {
        custom_loop.check(&experiment)?;
    }
    // Built before the run directory, so a model that cannot be built leaves nothing behind.
    let parts = Parts::fresh(&experiment)?;
    // Rank 0 alone writes the run directory; the others learn where it is.
    let created = match world.is_root() {
        true => Some(RunDir::create(
            &experiment.config,
            options.run_dir.as_deref(),
        )?),
        false => None,
    };
    let path = created.as_ref().map(|run| run.path.display().to_string());
    let run = RunDir {
        path: world.broadcast_text(path.unwrap_or_default()).into(),
    };
    let log = match world.is_root() {
        true => MetricsLog::create(&run.metrics_path())?,
        false => MetricsLog::counting(&run.metrics_path(), 0),
    };
    let started = format!("run directory: {}", run.path.display());
    start(experiment, run, log, parts, &started, options.custom_loop)
}

/// Refuses a world whose ranks cannot each take a share of one global step.
fn check_world_fits(world: &World, experiment: &Experiment) -> Result<(), Error> {
    let train = &experiment.config.train;
    let (samples, ranks) = (experiment.splits.train.len(), world.size());
    if ranks > 1 && samples < ranks * train.samples_per_step() {
        return Err(Error::Usage(format!(
            "{ranks} ranks cannot share the training split: it has {samples} samples, fewer \
             than ranks × train.batch_size × train.grad_accum_steps = {ranks} × {} × {}; use \
             fewer ranks or a smaller batch",
            train.batch_size, train.grad_accum_steps
        )));
    }
    Ok(())
}

/// Starts `run` again from step 0: it was stopped before its first checkpoint, so there is
/// nothing to continue from, and its config and seed reproduce exactly what was lost.
fn restart(
    config: ExperimentConfig,
    saved: &ExperimentConfig,
    backend: SelectedBackend,
    run: RunDir,
    custom_loop: Option<&dyn CustomLoop>,
) -> Result<Outcome, Error> {
    // Nothing was trained yet, but the run is still the one its config.toml describes.
    let changes = config::changes_from(&config::fixed_keys(saved), &config);
    if !changes.is_empty() {
        return Err(Error::IncompatibleResume {
            run: run.path,
            changes,
        });
    }
    let experiment = Experiment::prepare(config, backend, None)?;
    let world = distributed::world();
    check_world_fits(world, &experiment)?;
    ranks::check_same_experiment(world, &experiment)?;
    if let Some(custom_loop) = custom_loop {
        custom_loop.check(&experiment)?;
    }
    let parts = Parts::fresh(&experiment)?;
    let (log, dropped) = match world.is_root() {
        true => {
            // Clears what an interrupted first checkpoint write left.
            run.checkpoints().remove_after(0)?;
            run.rewrite_config(&experiment.config)?;
            run.remove_summary()?;
            MetricsLog::resume(&run.metrics_path(), 0)?
        }
        false => (MetricsLog::counting(&run.metrics_path(), 0), 0),
    };
    let started = format!(
        "{} has no checkpoint yet: starting it again from step 0 (its {dropped} metric records are replaced)",
        run.path.display(),
    );
    start(experiment, run, log, parts, &started, custom_loop)
}

/// Runs the loop from step 0 in `run`, saying `started`.
fn start(
    experiment: Experiment,
    run: RunDir,
    log: MetricsLog,
    parts: Parts,
    started: &str,
    custom_loop: Option<&dyn CustomLoop>,
) -> Result<Outcome, Error> {
    let world = distributed::world();
    if world.is_root() {
        if let Some(tokenizer) = &experiment.splits.tokenizer {
            run.write_tokenizer(tokenizer)?;
        }
        record_world(&run, &experiment.config, world)?;
    }
    let progress = progress_for(&experiment.config, world);
    progress.say(started);
    match custom_loop {
        Some(custom_loop) => custom_loop.run(experiment, run, log, progress, parts),
        None => Trainer::new(experiment, run, log, progress, parts).run(),
    }
}

/// Progress shown by rank 0 only.
fn progress_for(config: &ExperimentConfig, world: &World) -> Progress {
    match world.is_root() {
        true => Progress::new(config.train.progress, config.train.epochs),
        false => Progress::silent(config.train.epochs),
    }
}

/// Writes `world.json` into a distributed run: the ranks and each one's share of a step.
fn record_world(run: &RunDir, config: &ExperimentConfig, world: &World) -> Result<(), Error> {
    if !world.is_distributed() {
        return Ok(());
    }
    run.write_world(&DistributedRecord::new(&config.train, world.size()))
}

/// Continues `run` from a checkpoint: `choice`, or the newest one that verifies; a run
/// stopped before its first checkpoint starts again from step 0. `config` (the run's
/// `config.toml`, `saved`, with the command's overrides) may differ from what the checkpoint
/// was trained with only in keys that are safe to change.
pub fn resume(
    config: ExperimentConfig,
    saved: &ExperimentConfig,
    backend: SelectedBackend,
    run: RunDir,
    choice: Option<CheckpointChoice>,
    custom_loop: Option<&dyn CustomLoop>,
) -> Result<Outcome, Error> {
    let checkpoints = run.checkpoints();
    if choice.is_none() && checkpoints.list().is_empty() {
        return restart(config, saved, backend, run, custom_loop);
    }
    let world = distributed::world();
    let progress = progress_for(&config, world);
    let checkpoint = match &choice {
        Some(choice) => checkpoints.open(choice)?,
        None => {
            let (checkpoint, skipped) = checkpoints.newest_good()?;
            for (name, problem) in skipped {
                progress.say(&format!("warning: skipping checkpoint {name}: {problem}"));
            }
            checkpoint
        }
    };
    world.check_agreement(
        "the checkpoint to resume from",
        Sha256::digest(checkpoint.name.as_bytes()).into(),
    )?;
    // Against what the checkpoint was trained with, not the run's config.toml, which may
    // have been edited since (that file only for checkpoints from before keys were recorded).
    let fixed = match checkpoint.manifest.fixed_keys.is_empty() {
        true => &config::fixed_keys(saved),
        false => &checkpoint.manifest.fixed_keys,
    };
    let saved_accum = fixed
        .get("train.grad_accum_steps")
        .and_then(|value| value.parse().ok())
        .unwrap_or(config.train.grad_accum_steps);
    let state: TrainingState = checkpoint.state()?;
    let saved_passes = state.world_size * saved_accum;
    let passes = world.size() * config.train.grad_accum_steps;
    // A step's passes may move between ranks and accumulation (2 ranks × 1 pass ⇄ 1 process ×
    // 2 passes): the same samples, masks and loss weights, in the same order.
    let changes: Vec<_> = config::changes_from(fixed, &config)
        .into_iter()
        .filter(|change| change.key != "train.grad_accum_steps" || passes != saved_passes)
        .collect();
    if !changes.is_empty() {
        return Err(Error::IncompatibleResume {
            run: run.path,
            changes,
        });
    }
    if passes != saved_passes {
        return Err(Error::Usage(format!(
            "{} was trained on {} rank(s) × train.grad_accum_steps = {saved_accum}, and this is \
             {} rank(s) × {}: a step's {saved_passes} passes of train.batch_size samples define \
             its optimisation and its position in the data; resume with ranks × \
             train.grad_accum_steps = {saved_passes} (e.g. --set train.grad_accum_steps=N)",
            run.path.display(),
            state.world_size,
            world.size(),
            config.train.grad_accum_steps,
        )));
    }
    let expected_hash = config::definition_hash(&config);
    if checkpoint.manifest.definition_hash != expected_hash {
        return Err(Error::CorruptCheckpoint {
            dir: checkpoint.dir,
            detail: "it was written for a different model or dataset than this run's config.toml"
                .into(),
        });
    }
    // The resumed run reads its text exactly as before: with the checkpoint's tokenizer.
    let experiment = Experiment::prepare(config, backend, checkpoint.tokenizer()?)?;
    check_world_fits(world, &experiment)?;
    ranks::check_same_experiment(world, &experiment)?;
    match custom_loop {
        Some(custom_loop) => custom_loop.check(&experiment)?,
        None if state.follow.is_some() => {
            return Err(Error::Usage(format!(
                "{} follows a directory of shards: resume it with --follow DIR",
                run.path.display()
            )));
        }
        None => {}
    }
    let config = &experiment.config;

    let device = experiment.backend.device.clone().autodiff();
    let mut model = experiment.new_model(&device)?;
    checkpoint::load_model(&checkpoint.dir, model.as_mut())?;
    let (optimizer, scheduler) = fresh_optimizer(&experiment);
    let (optimizer, scheduler) = checkpoint::load_optimizer(&checkpoint.dir, optimizer, scheduler)?;

    let (log, dropped) = match world.is_root() {
        true => {
            let removed = checkpoints.remove_after(state.global_step)?;
            if !removed.is_empty() {
                progress.say(&format!(
                    "rewinding: removed the later checkpoints {}",
                    removed.join(", ")
                ));
            }
            checkpoints.point("latest", &checkpoint.name)?;
            match state.best.first() {
                Some(best) => checkpoints.point("best", &best.name)?,
                None => checkpoints.clear_pointer("best")?,
            }
            run.rewrite_config(config)?;
            run.remove_summary()?;
            record_world(&run, config, world)?;
            MetricsLog::resume(&run.metrics_path(), state.metrics_lines)?
        }
        false => (
            MetricsLog::counting(&run.metrics_path(), state.metrics_lines),
            0,
        ),
    };
    progress.say(&format!(
        "resuming {} from checkpoint {} (epoch {}, batch {} of {}, step {}){}",
        run.path.display(),
        checkpoint.name,
        state.epoch + 1,
        state.batch_in_epoch,
        steps_per_epoch(&experiment, world),
        state.global_step,
        if dropped > 0 {
            format!("; dropped {dropped} metric records written after it")
        } else {
            String::new()
        }
    ));
    let parts = Parts {
        device,
        model,
        optimizer,
        scheduler,
        state,
    };
    match custom_loop {
        Some(custom_loop) => custom_loop.run(experiment, run, log, progress, parts),
        None => Trainer::new(experiment, run, log, progress, parts).run(),
    }
}
