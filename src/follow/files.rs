//! What a round leaves in the run directory: the checkpoint (with the follow state), then
//! `follow.jsonl` and `promotions.jsonl` rewritten from that state, the plots and, with
//! `eval.report`, the report page on the round's candidate.

use std::path::{Path, PathBuf};

use super::Follower;
use crate::files::write_atomic;
use crate::run::Measured;
use crate::run::checkpoint::{Checkpoints, Snapshot};
use crate::run::metrics::SplitName;
use crate::run::plots::FOLLOW_FILE;
use crate::train::eval;
use crate::{Error, config};

impl Follower {
    /// A checkpoint of the round just ended, then the run's follow files from the state.
    pub(super) fn save(&mut self) -> Result<(), Error> {
        let config = &self.experiment.config;
        self.log.sync()?;
        self.parts.state.metrics_lines = self.log.lines();
        self.parts.state.loss_scale = self.stepper.loss_scale().cloned();
        self.parts.state.follow = Some(self.follow.clone());
        self.parts.state.world_size = 1;
        let snapshot = Snapshot {
            model: &*self.parts.model,
            optimizer: &self.parts.optimizer,
            scheduler: &self.parts.scheduler,
            state: &self.parts.state,
            model_kind: config.model.kind(),
            definition_hash: &config::definition_hash(config),
            fixed_keys: &config::fixed_keys(config),
            spec: &self.experiment.splits.spec,
            tokenizer: self.experiment.splits.tokenizer.as_deref(),
        };
        self.checkpoints.save(&snapshot)?;
        self.parts.state.follow = None;
        // The promoted version's checkpoint, or the start: what a refused round returns to.
        let keep: Vec<String> = self
            .follow
            .revert_target()
            .map(str::to_string)
            .into_iter()
            .collect();
        self.checkpoints
            .prune(config.checkpoint.keep_last.max(1), &keep)?;
        let rounds: String = self
            .follow
            .rounds
            .iter()
            .map(|r| serde_json::to_string(r).expect("rounds serialize") + "\n")
            .collect();
        write_atomic(&self.run.path.join(FOLLOW_FILE), rounds.as_bytes())?;
        let decisions: String = self
            .follow
            .rounds
            .iter()
            .map(|r| {
                serde_json::json!({"shard": r.shard, "step": r.step, "decision": r.decision})
                    .to_string()
                    + "\n"
            })
            .collect();
        write_atomic(
            &self.run.path.join("promotions.jsonl"),
            decisions.as_bytes(),
        )
    }

    /// Rewrites the plots and metrics.csv and, with `eval.report`, the report page on the
    /// round's candidate and its holdout, with the rounds so far. Derived from the run, so
    /// failing to write them warns rather than stopping it.
    pub(super) fn write_reports(
        &self,
        gathered: Option<eval::Gathered>,
        holdout: &Measured,
        seconds: f64,
    ) {
        let config = &self.experiment.config;
        let written = (|| -> Result<Option<PathBuf>, Error> {
            crate::run::plots::write(&self.run.path, config.log.tensorboard)?;
            let Some(gathered) = gathered else {
                return Ok(None);
            };
            let split = match self.experiment.splits.valid.len() {
                0 => SplitName::Test,
                _ => SplitName::Valid,
            };
            let checkpoint = Checkpoints::name_for(self.parts.state.global_step);
            let subject = eval::Subject {
                experiment: &self.experiment,
                split,
                data: &self.holdout,
                run_dir: &self.run.path,
                checkpoint: &checkpoint,
            };
            let round = self.follow.ledger.len() - 1;
            let record = self.record(split, holdout, round, seconds);
            let options = eval::ReportOptions::from_config(&config.eval);
            let dir = self.run.path.join(crate::report::REPORT_DIR);
            let headline = eval::headline(&record, holdout.samples);
            eval::write_report(&subject, headline, gathered, &options, &dir).map(Some)
        })();
        if let Err(err) = written {
            self.progress.say(&format!(
                "warning: cannot update the plots and the report: {err}"
            ));
        }
    }
}

pub(super) fn append_line(path: &Path, line: &serde_json::Value) -> Result<(), Error> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| Error::io(path, source))?;
    writeln!(file, "{line}")
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::io(path, source))
}
