//! `stoke train --follow DIR`: continual training on data as it lands. Each new shard (an IDX
//! pair, a file of labelled texts or of table rows renamed into `DIR`, `incoming.rs`) is
//! taken in name order and goes through one round: the current model scores it before seeing
//! it (the honest measure of how it does on fresh data), trains on it for `follow.passes`
//! passes with a share of every batch replayed from a reservoir of earlier records
//! (`run::follow`, the ledger a checkpoint keeps), is evaluated on the run's fixed holdout (its validation split, else its test
//! split) and on the shard, and the gate compares that with the figures of the version now
//! promoted (`gate.rs`: TFX's blessing, overall, on every slice of `eval.slice_by` and on the
//! newest shard; before this run promotes one, against the version `--promote` already
//! serves, `baseline.rs`). A refused round is undone by default (`follow.on_refuse =
//! "revert"`): the learner returns to the promoted checkpoint and the shard stays out of the
//! reservoir. Every round ends in a checkpoint whose state holds the ledger of shards
//! taken, the reservoir and each decision (`files.rs`), so a run killed at any moment resumes
//! (`--resume RUN --follow DIR`) without taking a shard twice or skipping one and reaches the
//! weights the uninterrupted run reaches. With `--promote MODELS`, a blessed candidate becomes
//! the next version there (`promote.rs`) and `--serve-url` has the server reload it.
//! `follow.jsonl` and `promotions.jsonl` in the run directory are rewritten from that state
//! after every round.

mod baseline;
mod files;
mod gate;
mod idx_shards;
mod incoming;
pub mod promote;
mod table_shards;
mod text_shards;

use std::path::PathBuf;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use self::incoming::{Shard, ShardKind};
use self::promote::Models;
use crate::Error;
use crate::config::{MonitorMode, OnRefuse, SchedulerConfig};
use crate::data::Split;
use crate::run::Checkpoints;
use crate::run::Measured;
use crate::run::RunDir;
use crate::run::follow::{FollowState, LedgerEntry, Promoted, RoundRecord};
use crate::run::metrics::{MetricRecord, MetricsLog, SplitName};
use crate::train::Net;
use crate::train::measure::RunningMetrics;
use crate::train::progress::Progress;
use crate::train::step::{StepShare, Stepper, evaluate, predictions};
use crate::train::trainer::{Parts, seed_step, with_status};
use crate::train::{CustomLoop, Outcome};
use crate::train::{Experiment, eval, interrupt};

/// Where `--follow` reads and where it promotes to.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    pub dir: PathBuf,
    pub promote: Option<PathBuf>,
    pub serve_url: Option<String>,
}

/// Following is the session's loop: the epoch loop's setup (fresh, restarted or resumed), then
/// rounds over arriving shards.
impl CustomLoop for FollowOptions {
    fn check(&self, experiment: &Experiment) -> Result<(), Error> {
        if crate::distributed::world().is_distributed() {
            return Err(Error::Usage("--follow runs on one process".into()));
        }
        check(experiment, self)
    }

    fn run(
        &self,
        experiment: Experiment,
        run_dir: RunDir,
        log: MetricsLog,
        progress: Progress,
        parts: Parts,
    ) -> Result<Outcome, Error> {
        run(experiment, self, run_dir, log, progress, parts)
    }
}

/// Refuses what following cannot do, before a run directory is made.
fn check(experiment: &Experiment, options: &FollowOptions) -> Result<(), Error> {
    let dir = options.dir.display();
    if !options.dir.exists() {
        return Err(Error::Usage(format!(
            "--follow {dir}: no such directory (make it, and rename shards into it as they are written)"
        )));
    }
    if !options.dir.is_dir() {
        return Err(Error::Usage(format!(
            "--follow {dir}: a file, not a directory (follow the directory shards are renamed into)"
        )));
    }
    if let Err(err) = std::fs::read_dir(&options.dir) {
        return Err(Error::Usage(format!(
            "--follow {dir}: cannot list it ({err}); stoke needs to read and to move rejected shards there"
        )));
    }
    incoming::kind_for(experiment)?;
    if let SchedulerConfig::Cosine(_) = experiment.config.scheduler {
        return Err(Error::Usage(
            "scheduler.kind = \"cosine\" needs the run's length, which --follow does not know; use \"constant\" or \"step\"".into(),
        ));
    }
    if let Some(models) = &options.promote {
        baseline::check_served(experiment, &Models::open(models)?)?;
    }
    if let Some(url) = &options.serve_url
        && !url.starts_with("http://")
    {
        return Err(Error::Usage(format!(
            "--serve-url {url}: expected http://HOST:PORT"
        )));
    }
    Ok(())
}

struct Follower {
    experiment: Experiment,
    options: FollowOptions,
    parts: Parts,
    stepper: Stepper,
    run: RunDir,
    checkpoints: Checkpoints,
    log: MetricsLog,
    progress: Progress,
    follow: FollowState,
    models: Option<Models>,
    kind: Box<dyn ShardKind>,
    holdout: Split,
    /// The holdout's slices by `eval.slice_by`: `field=value` and its samples.
    slices: Vec<(String, Split)>,
    gate: (String, MonitorMode),
    started: Instant,
}

/// Follows `options.dir` from `parts` (fresh, or a checkpoint's) in `run`, once [`check`]
/// has passed.
fn run(
    experiment: Experiment,
    options: &FollowOptions,
    run: RunDir,
    log: MetricsLog,
    progress: Progress,
    mut parts: Parts,
) -> Result<Outcome, Error> {
    // `check` ran in the session, before the run directory was written or changed.
    let kind = incoming::kind_for(&experiment)?;
    let holdout = match experiment.splits.valid.len() {
        0 => experiment.splits.test.clone(),
        _ => experiment.splits.valid.clone(),
    };
    let gate = match &experiment.config.follow.gate.metric {
        Some(metric) => (metric.clone(), experiment.mode_of(metric)),
        None => experiment.checkpoint_monitor(),
    };
    let slices = gate::holdout_slices(&experiment, &holdout)?;
    let begun = parts.state.follow.is_some();
    let follow = parts.state.follow.take().unwrap_or_default();
    let mut stepper = Stepper::new(&experiment.config.train, &experiment.task);
    stepper.resume_loss_scale(parts.state.loss_scale.clone());
    let models = options.promote.as_deref().map(Models::open).transpose()?;
    let mut follower = Follower {
        checkpoints: run.checkpoints(),
        options: options.clone(),
        experiment,
        parts,
        stepper,
        run,
        log,
        progress,
        follow,
        models,
        kind,
        holdout,
        slices,
        gate,
        started: Instant::now(),
    };
    follower.progress.say(&format!(
        "following {} for {} ({} shards taken so far); holdout: {} samples, gate on {}",
        follower.options.dir.display(),
        follower.kind.describe(),
        follower.follow.ledger.len(),
        follower.holdout.len(),
        follower.gate.0
    ));
    let run = follower.run.clone();
    with_status(&run, true, || {
        if !begun {
            follower.begin()?;
        }
        follower.repair_promotion()?;
        follower.follow_loop()
    })
}

impl Follower {
    fn follow_loop(&mut self) -> Result<Outcome, Error> {
        interrupt::install();
        let config = self.experiment.config.follow.clone();
        let mut idle_since = Instant::now();
        let mut unreadable = false;
        loop {
            if config.max_shards > 0 && self.follow.ledger.len() >= config.max_shards {
                self.progress.say(&format!(
                    "follow.max_shards = {} taken: stopping",
                    config.max_shards
                ));
                break;
            }
            if interrupt::requested() {
                return Ok(self.interrupted());
            }
            let next = match self.next_shard() {
                Ok(next) => {
                    unreadable = false;
                    next
                }
                // The directory went away or cannot be listed (an unmounted share, changed
                // permissions): say so once and keep polling; nothing taken is lost.
                Err(err) => {
                    if !unreadable {
                        self.progress.say(&format!(
                            "warning: {err}; waiting for {} to be readable again",
                            self.options.dir.display()
                        ));
                    }
                    unreadable = true;
                    None
                }
            };
            let Some(shard) = next else {
                if config.idle_exit_s > 0.0
                    && idle_since.elapsed().as_secs_f64() >= config.idle_exit_s
                {
                    self.progress.say(&format!(
                        "no new shard for {} s (follow.idle_exit_s): stopping",
                        config.idle_exit_s
                    ));
                    break;
                }
                std::thread::sleep(std::time::Duration::from_secs_f64(config.poll_s.min(0.5)));
                continue;
            };
            if !self.round(shard)? {
                return Ok(self.interrupted());
            }
            idle_since = Instant::now();
        }
        Ok(Outcome::Followed {
            run_dir: self.run.path.clone(),
            shards: self.follow.ledger.len(),
        })
    }

    /// Stopped by Ctrl-C or SIGTERM: the last checkpoint (the last round's) is where a resume
    /// continues.
    fn interrupted(&self) -> Outcome {
        let checkpoint = self
            .checkpoints
            .list()
            .last()
            .cloned()
            .unwrap_or_else(|| "none yet".into());
        Outcome::Interrupted {
            checkpoint,
            run_dir: self.run.path.clone(),
        }
    }

    /// The first landed shard the ledger lacks, read; unreadable ones are rejected on the way.
    fn next_shard(&mut self) -> Result<Option<Shard>, Error> {
        let dir = self.options.dir.clone();
        let kind = &*self.kind;
        for name in incoming::landed(&dir, kind)? {
            let taken = self.follow.ledger.iter().find(|entry| entry.name == name);
            // A taken shard is read again (and hashed) only when its size changed: polling
            // reads nothing but new shards.
            if taken.is_some_and(|entry| incoming::size(&dir, &name, kind) == Some(entry.bytes)) {
                continue;
            }
            let read = incoming::read(&dir, &name, kind);
            let reason = match (taken, read) {
                (None, Ok(shard)) => return Ok(Some(shard)),
                (Some(entry), Ok(shard)) if entry.sha256 == shard.sha256 => continue,
                (Some(entry), Ok(_)) => format!(
                    "a shard named {name} was taken before with SHA-256 {}; this one differs (give new data a new name)",
                    entry.sha256
                ),
                (Some(_), Err(_)) => continue,
                (None, Err(reason)) => reason,
            };
            let path = incoming::reject(&dir, &name, &reason, kind)?;
            self.progress.say(&format!(
                "rejected shard {name}: {reason} ({})",
                path.display()
            ));
        }
        Ok(None)
    }

    /// Scores `shard`, trains on it with replay, evaluates the candidate, checkpoints, and
    /// promotes it when the gate passes; `false` when the round was interrupted.
    fn round(&mut self, shard: Shard) -> Result<bool, Error> {
        let round = self.follow.ledger.len();
        let seed =
            self.experiment.config.run.seed ^ (round as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let records = shard.records;
        let newest = Split::new(shard.data.clone(), (0..records as u32).collect());
        let before = self.measure(&newest)?;
        let step_before = self.parts.state.global_step;
        let Some(replayed) = self.train_on(&shard, round, seed)? else {
            return Ok(false);
        };
        // The newest data, after: the candidate's figures and the promoted version's.
        let after = self.measure(&newest)?;
        let current_on_newest = self.promoted_on(&newest, &before, step_before)?;
        // With `eval.report`, the holdout pass also gathers what the report page needs.
        let gather = self.experiment.config.eval.report;
        let (holdout, seconds, gathered) =
            eval::score(&self.experiment, &*self.parts.model, &self.holdout, gather)?;
        let slices = self
            .slices
            .iter()
            .map(|(slice, split)| Ok((slice.clone(), split.len(), self.measure(split)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let mut decision = self.decide(&holdout, &slices, (&after, current_on_newest.as_ref()));
        let weights_sha256 = crate::model::hex(&self.parts.model.weights_digest());
        // A refused round is undone (`follow.on_refuse = "revert"`): the learner goes back to
        // the promoted version, and the shard's records stay out of the reservoir.
        let reverted_to = match (decision.promoted, self.experiment.config.follow.on_refuse) {
            (false, OnRefuse::Revert) => self.revert()?,
            _ => None,
        };
        if let Some(target) = &reverted_to {
            decision
                .reason
                .push_str(&format!("; the learner returns to {target}"));
        }
        decision.reverted_to = reverted_to.clone();
        self.follow.ledger.push(LedgerEntry {
            name: shard.name.clone(),
            bytes: shard.bytes,
            sha256: shard.sha256.clone(),
            records,
            refused: (!decision.promoted).then(|| decision.reason.clone()),
            reverted: reverted_to.is_some(),
        });
        if reverted_to.is_none() {
            let capacity = self.experiment.config.follow.replay.capacity;
            self.follow
                .reservoir
                .offer(&shard.name, records, capacity, seed);
        }
        let step = self.parts.state.global_step;
        self.log
            .append(&self.record(SplitName::Valid, &holdout, round, seconds))?;
        self.progress.say(&format!(
            "shard {} ({records} records): {} {:.4} before training on it; holdout {} {:.4}; {}",
            shard.name,
            self.gate.0,
            before.get(&self.gate.0).unwrap_or(f64::NAN),
            self.gate.0,
            decision.candidate,
            decision.reason
        ));
        if decision.promoted {
            self.follow.promoted = Some(Promoted {
                version: decision.version.clone().unwrap_or_default(),
                holdout: holdout.clone(),
                slices: decision
                    .slices
                    .iter()
                    .map(|s| (s.slice.clone(), s.candidate))
                    .collect(),
                checkpoint: Some(Checkpoints::name_for(step)),
                artifact: None,
            });
        }
        self.follow.rounds.push(RoundRecord {
            shard: shard.name,
            records,
            step,
            before,
            after: Some(after),
            holdout: holdout.clone(),
            replayed,
            weights_sha256,
            decision,
        });
        self.save()?;
        self.repair_promotion()?;
        self.write_reports(gathered, &holdout, seconds);
        Ok(true)
    }

    /// Trains on `shard` for `follow.passes` passes; each batch takes `fraction` of its samples
    /// from the reservoir. Returns how many replayed samples it used, or `None` when Ctrl-C
    /// or SIGTERM stopped it (the round is taken again on resume, from the last checkpoint).
    fn train_on(&mut self, shard: &Shard, round: usize, seed: u64) -> Result<Option<usize>, Error> {
        let config = self.experiment.config.clone();
        let batch_size = config.train.batch_size;
        let replay = &self.follow.reservoir.items;
        let take_replay = match replay.is_empty() {
            true => 0,
            false => ((batch_size as f64 * config.follow.replay.fraction).round() as usize)
                .min(batch_size - 1),
        };
        let fresh_per_batch = batch_size - take_replay;
        // The shard and the reservoir's records in one set: the shard first.
        let data = self.kind.training_set(&self.options.dir, shard, replay)?;
        let device = self.parts.device.clone();
        let context = self.experiment.batch_context(&device, Some(round));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut metrics = RunningMetrics::new(&self.experiment.task);
        let mut replayed = 0;
        let started = Instant::now();
        for _ in 0..config.follow.passes {
            let mut order: Vec<u32> = (0..shard.records as u32).collect();
            order.shuffle(&mut rng);
            for chunk in order.chunks(fresh_per_batch) {
                let mut indices = chunk.to_vec();
                for _ in 0..take_replay {
                    indices.push((shard.records + rng.random_range(0..replay.len())) as u32);
                    replayed += 1;
                }
                let batch = data.batch(&indices, &context);
                let passes = vec![batch];
                let share = StepShare::alone(predictions(&passes));
                seed_step(&device, config.run.seed, self.parts.state.global_step);
                let lr = self.parts.scheduler.step();
                self.parts.state.lr = lr.base();
                self.parts.model.step(
                    &mut self.stepper,
                    &mut self.parts.optimizer,
                    lr,
                    passes,
                    share,
                    &mut metrics,
                )?;
                self.parts.state.global_step += 1;
                crate::fault::after_step(self.parts.state.global_step, 0);
                if interrupt::requested() {
                    return Ok(None);
                }
            }
        }
        if let Some(measured) = metrics.take() {
            self.log.append(&self.record(
                SplitName::Train,
                &measured,
                round,
                started.elapsed().as_secs_f64(),
            ))?;
        }
        Ok(Some(replayed))
    }

    /// A `metrics.jsonl` line of round `round` (its epoch, counted from 1), whose pass took
    /// `seconds`.
    fn record(
        &self,
        split: SplitName,
        measured: &Measured,
        round: usize,
        seconds: f64,
    ) -> MetricRecord {
        let position = (
            self.parts.state.global_step,
            round + 1,
            self.parts.state.lr,
            self.started.elapsed().as_secs_f64(),
        );
        MetricRecord::new(split, measured, seconds.max(1e-9), position)
    }

    /// The model being trained, scored on `split`.
    fn measure(&self, split: &Split) -> Result<Measured, Error> {
        self.measure_model(&*self.parts.model, split)
    }

    fn measure_model(&self, model: &dyn Net, split: &Split) -> Result<Measured, Error> {
        let config = &self.experiment.config;
        let context = self.experiment.batch_context(&self.parts.device, None);
        evaluate(
            model,
            &self.experiment.task,
            split,
            config.train.eval_batch_size,
            config.data.workers,
            &context,
            |_| {},
        )
    }
}
