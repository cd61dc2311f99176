//! The gate and what follows it: a candidate's holdout figure against the promoted
//! version's (`follow.gate`: its metric, which way is better, the tolerance), the next
//! version's name, and bringing the models directory and the server in line with what the
//! run's state says is promoted, also after a kill between the checkpoint and the export.

use super::promote::{self, version_name, version_number};
use super::state::Decision;
use super::{Follower, append_line};
use crate::Error;
use crate::config::MonitorMode;
use crate::train::measure::Measured;

impl Follower {
    /// The gate: the candidate's holdout figure against the promoted version's.
    pub(super) fn decide(&self, holdout: &Measured) -> Decision {
        let (metric, mode) = &self.gate;
        let tolerance = self.experiment.config.follow.gate.tolerance;
        let candidate = holdout.get(metric).unwrap_or(f64::NAN);
        let current = self
            .follow
            .promoted
            .as_ref()
            .and_then(|p| p.holdout.get(metric));
        let worse_by = current.map(|current| match mode {
            MonitorMode::Max => current - candidate,
            MonitorMode::Min => candidate - current,
        });
        let promoted = candidate.is_finite() && worse_by.is_none_or(|worse| worse <= tolerance);
        let reason = match (promoted, current) {
            (true, None) => "promoted: the first candidate".to_string(),
            (true, Some(current)) => format!(
                "promoted: {candidate:.4} against the current {current:.4} (tolerance {tolerance})"
            ),
            (false, Some(current)) => format!(
                "refused: {candidate:.4} is worse than the current {current:.4} by more than {tolerance}"
            ),
            (false, None) => format!("refused: {metric} is {candidate}"),
        };
        let version = (promoted && self.models.is_some()).then(|| self.next_version());
        Decision {
            metric: metric.clone(),
            candidate,
            current,
            tolerance,
            promoted,
            version,
            reason,
        }
    }

    /// The version after the newest one in the models directory or promoted by this run.
    fn next_version(&self) -> String {
        let on_disk = self.models.as_ref().map_or(0, |models| {
            models
                .versions()
                .iter()
                .filter_map(|v| version_number(v))
                .max()
                .unwrap_or(0)
        });
        let ours = self
            .follow
            .promoted
            .as_ref()
            .and_then(|p| version_number(&p.version))
            .unwrap_or(0);
        version_name(on_disk.max(ours) + 1)
    }

    /// Makes the models directory serve what the state says is promoted: exports it if a kill
    /// came between the checkpoint and the export, points `current` at it, and has the server
    /// reload when `current` moved.
    pub(super) fn repair_promotion(&mut self) -> Result<(), Error> {
        let (Some(models), Some(promoted)) = (&self.models, &self.follow.promoted) else {
            return Ok(());
        };
        if promoted.version.is_empty()
            || models.current().as_deref() == Some(promoted.version.as_str())
        {
            return Ok(());
        }
        if !models
            .dir
            .join(&promoted.version)
            .join("manifest.json")
            .is_file()
        {
            models.write(&self.run.path, &promoted.checkpoint, &promoted.version)?;
        }
        models.point(&promoted.version)?;
        let mut line = serde_json::json!({
            "version": promoted.version,
            "checkpoint": promoted.checkpoint,
            "models": models.dir,
        });
        if let Some(url) = &self.options.serve_url {
            match promote::reload(url) {
                Ok(answer) => line["reload"] = answer,
                Err(err) => {
                    self.progress.say(&format!("warning: {err}; {} is promoted, and the server keeps its model until it reloads", promoted.version));
                    line["reload_error"] = err.into();
                }
            }
        }
        self.progress.say(&format!(
            "promoted {} as {}",
            promoted.version,
            models.dir.join(promote::CURRENT).display()
        ));
        let path = self.run.path.join("served.jsonl");
        append_line(&path, &line)
    }
}
