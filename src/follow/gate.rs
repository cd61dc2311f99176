//! The gate and what follows it: a candidate's holdout figure against the promoted
//! version's (`follow.gate`: its metric, which way is better, the tolerance), overall, on
//! every slice of the holdout by `eval.slice_by` (TFX's per-slice blessing) and on the newest
//! shard; the next version's name; and bringing the models directory and the server in line
//! with what the run's state says is promoted, also after a kill between the checkpoint and
//! the export.

use std::collections::BTreeMap;

use super::Follower;
use super::files::append_line;
use super::promote::{self, Models, version_name, version_number};
use crate::Error;
use crate::config::MonitorMode;
use crate::data::{SliceBy, Split, slice_values};
use crate::run::Measured;
use crate::run::checkpoint::{Checkpoints, load_model};
use crate::run::follow::{Decision, SliceFigures};
use crate::train::Experiment;

/// The holdout's slices by `eval.slice_by` (or `eval.slice_file`): `field=value` and the
/// holdout samples that have it, in value order; none when the run does not slice.
pub(super) fn holdout_slices(
    experiment: &Experiment,
    holdout: &Split,
) -> Result<Vec<(String, Split)>, Error> {
    let eval = &experiment.config.eval;
    let Some(by) = SliceBy::chosen(eval.slice_by.clone(), eval.slice_file.clone()) else {
        return Ok(Vec::new());
    };
    let (attribute, values) = slice_values(&experiment.config.data, holdout, &by)?;
    let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (&index, value) in holdout.indices.iter().zip(values) {
        if let Some(value) = value {
            groups.entry(value).or_default().push(index);
        }
    }
    Ok(groups
        .into_iter()
        .map(|(value, indices)| {
            let slice = Split::new(holdout.data.clone(), indices);
            (format!("{attribute}={value}"), slice)
        })
        .collect())
}

impl Follower {
    /// The promoted version's figures on `newest`: `before` (the model's before this round,
    /// at `step_before`) when that model is the promoted one, else its checkpoint's.
    pub(super) fn promoted_on(
        &self,
        newest: &Split,
        before: &Measured,
        step_before: usize,
    ) -> Result<Option<Measured>, Error> {
        let Some(promoted) = &self.follow.promoted else {
            return Ok(None);
        };
        let model = match (&promoted.checkpoint, &promoted.artifact) {
            (Some(name), _) if *name == Checkpoints::name_for(step_before) => {
                return Ok(Some(before.clone()));
            }
            (Some(name), _) => {
                let checkpoint = self.checkpoints.verify(name)?;
                let mut model = self.parts.model.boxed_clone();
                load_model(&checkpoint.dir, model.as_mut())?;
                model
            }
            (None, Some(artifact)) => self.served_model(artifact)?,
            (None, None) => return Ok(None),
        };
        self.measure_model(&*model, newest).map(Some)
    }

    /// The gate: the candidate's holdout figure against the promoted version's, overall and
    /// on each of the holdout's `slices` (`(field=value, records, figures)`), and its figure
    /// on the newest shard against the promoted version's there (`newest`).
    pub(super) fn decide(
        &self,
        holdout: &Measured,
        slices: &[(String, usize, Measured)],
        newest: (&Measured, Option<&Measured>),
    ) -> Decision {
        let (metric, mode) = &self.gate;
        let tolerance = self.experiment.config.follow.gate.tolerance;
        let promoted_now = self.follow.promoted.as_ref();
        // Within the tolerance of `current` (always, against nothing yet).
        let passes = |candidate: f64, current: Option<f64>| {
            let worse_by = current.map(|current| match mode {
                MonitorMode::Max => current - candidate,
                MonitorMode::Min => candidate - current,
            });
            candidate.is_finite() && worse_by.is_none_or(|worse| worse <= tolerance)
        };
        let candidate = holdout.get(metric).unwrap_or(f64::NAN);
        let current = promoted_now.and_then(|p| p.holdout.get(metric));
        let slices: Vec<SliceFigures> = slices
            .iter()
            .map(|(slice, records, measured)| {
                let candidate = measured.get(metric).unwrap_or(f64::NAN);
                let current = promoted_now.and_then(|p| p.slices.get(slice).copied());
                SliceFigures {
                    slice: slice.clone(),
                    records: *records,
                    candidate,
                    current,
                    passed: passes(candidate, current),
                }
            })
            .collect();
        let (after, current_after) = newest;
        let newest = current_after.map(|current_after| {
            let candidate = after.get(metric).unwrap_or(f64::NAN);
            let current = current_after.get(metric);
            SliceFigures {
                slice: "newest shard".into(),
                records: after.samples,
                candidate,
                current,
                passed: passes(candidate, current),
            }
        });
        let failed: Vec<&SliceFigures> =
            slices.iter().chain(&newest).filter(|s| !s.passed).collect();
        let promoted = passes(candidate, current) && failed.is_empty();
        let reason = match (promoted, current, failed.first()) {
            (true, None, _) => "promoted: the first candidate".to_string(),
            (true, Some(current), _) => format!(
                "promoted: {candidate:.4} against the current {current:.4} (tolerance {tolerance}){}",
                match slices.len() {
                    0 => String::new(),
                    n => format!(", and on each of {n} slices"),
                }
            ),
            (false, Some(current), Some(slice)) if passes(candidate, Some(current)) => format!(
                "refused: {candidate:.4} against the current {current:.4} overall, but on {} {:.4} is worse than {:.4} by more than {tolerance}{}",
                slice.slice,
                slice.candidate,
                slice.current.unwrap_or(f64::NAN),
                match failed.len() {
                    1 => String::new(),
                    n => format!(" (and {} more slices)", n - 1),
                }
            ),
            (false, Some(current), _) => format!(
                "refused: {candidate:.4} is worse than the current {current:.4} by more than {tolerance}"
            ),
            (false, None, Some(slice)) if candidate.is_finite() => {
                format!(
                    "refused: {metric} on {} is {}",
                    slice.slice, slice.candidate
                )
            }
            (false, None, _) => format!("refused: {metric} is {candidate}"),
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
            slices,
            newest,
            reverted_to: None,
        }
    }

    /// The version after the newest one in the models directory or promoted by this run.
    fn next_version(&self) -> String {
        let on_disk = self.models.as_ref().map_or(0, Models::newest_number);
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
        let exported = models
            .dir
            .join(&promoted.version)
            .join("manifest.json")
            .is_file();
        match (&promoted.checkpoint, exported) {
            (_, true) => {}
            // The lineage's parent comes from the checkpoint's own follow state.
            (Some(checkpoint), false) => {
                models.write(&self.run.path, checkpoint, &promoted.version, None)?;
            }
            // The version served before following began, gone from the models directory:
            // nothing to point `current` at until a candidate is promoted.
            (None, false) => return Ok(()),
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
