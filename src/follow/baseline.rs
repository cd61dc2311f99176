//! What the learner and the gate start from, and what a refused round returns to.
//!
//! When following begins, the learner is checkpointed as it stands (`FollowState::start`).
//! A version that `--promote MODELS` already serves is checked against the run before
//! anything is written (the same task, classes and input, else one line and exit 2), then
//! scored on the holdout and its slices: the first candidates are gated against what is
//! served, as later ones are against the versions promoted here, and the first version
//! promoted here names it as its lineage's parent. With `follow.on_refuse = "revert"` (the
//! default) a refused round leaves no trace in the learner: its weights, optimizer and
//! scheduler state and loss scale return to the promoted version's checkpoint, or to the
//! start before this run has promoted one.

use std::path::Path;

use super::Follower;
use super::promote::Models;
use crate::Error;
use crate::data::DataSpec;
use crate::export::artifact;
use crate::run::checkpoint::{Checkpoints, load_model, load_optimizer};
use crate::run::follow::Promoted;
use crate::run::state::TrainingState;
use crate::train::Experiment;
use crate::train::Net;
use crate::train::trainer::fresh_optimizer;

/// Refuses the version `models` serves (its `current`) when this run's candidates cannot be
/// compared with it: a model of another task or classes, or one that reads its input
/// otherwise (image shape and normalisation, vocabulary, table statistics, tokenizer).
pub(super) fn check_served(experiment: &Experiment, models: &Models) -> Result<(), Error> {
    let Some(version) = models.current() else {
        return Ok(());
    };
    let dir = models.dir.join(&version);
    let manifest = artifact::read_manifest(&dir)?;
    let ours = &experiment.splits.spec;
    let mismatch = incompatibility(&manifest.input, ours).or_else(|| {
        let tokenizer = manifest.tokenizer.as_ref()?;
        let theirs = std::fs::read_to_string(dir.join(tokenizer)).ok()?;
        let ours = experiment.splits.tokenizer.as_ref()?.to_json();
        (theirs != ours).then(|| "tokenizes text with another tokenizer.json".to_string())
    });
    match mismatch {
        None => Ok(()),
        Some(what) => Err(Error::Usage(format!(
            "--promote {}: its current version {version} {what}; the gate compares each candidate with the served version, so point `current` at one of this run's kind or name another models directory",
            models.dir.display()
        ))),
    }
}

/// How a model built for `theirs` differs from this run's data `ours`, if it does.
fn incompatibility(theirs: &DataSpec, ours: &DataSpec) -> Option<String> {
    if theirs == ours {
        return None;
    }
    let (their_task, our_task) = (theirs.task(), ours.task());
    if their_task.name() != our_task.name() {
        return Some(format!(
            "is a {} model and this run's task is {}",
            their_task.name(),
            our_task.name()
        ));
    }
    match (theirs.classes(), ours.classes()) {
        (Some(a), Some(b)) if a.len() != b.len() => {
            return Some(format!(
                "predicts {} classes and this run's data has {}",
                a.len(),
                b.len()
            ));
        }
        (Some(a), Some(b)) if a != b => {
            let (at, (x, y)) = a
                .iter()
                .zip(&b)
                .enumerate()
                .find(|(_, (x, y))| x != y)
                .expect("the lists differ");
            return Some(format!(
                "has class {at} {x:?} where this run's data has {y:?}"
            ));
        }
        _ => {}
    }
    Some(format!(
        "reads {} and this run's data is {} (read otherwise)",
        theirs.describe(),
        ours.describe()
    ))
}

impl Follower {
    /// The first time this run follows: scores the version `--promote` serves, if any, as
    /// the gate's reference, and checkpoints the learner as it stands.
    pub(super) fn begin(&mut self) -> Result<(), Error> {
        if let Some(models) = &self.models
            && let Some(version) = models.current()
        {
            let artifact = models.dir.join(&version);
            let model = self.served_model(&artifact)?;
            let holdout = self.measure_model(&*model, &self.holdout)?;
            let metric = &self.gate.0;
            let slices = self
                .slices
                .iter()
                .map(|(slice, split)| {
                    let measured = self.measure_model(&*model, split)?;
                    Ok((slice.clone(), measured.get(metric).unwrap_or(f64::NAN)))
                })
                .collect::<Result<_, Error>>()?;
            self.progress.say(&format!(
                "{} serves {version}: holdout {metric} {:.4}, the first candidates' reference",
                models.dir.display(),
                holdout.get(metric).unwrap_or(f64::NAN)
            ));
            self.follow.promoted = Some(Promoted {
                version: version.clone(),
                holdout,
                slices,
                checkpoint: None,
                artifact: Some(artifact),
            });
            self.follow.served_before = Some(version);
        }
        self.follow.start = Some(Checkpoints::name_for(self.parts.state.global_step));
        self.save()
    }

    /// The served version at `artifact`, on the learner's device, for scoring.
    pub(super) fn served_model(&self, artifact: &Path) -> Result<Box<dyn Net>, Error> {
        artifact::load_net(artifact, &self.parts.device).map(|(_, model)| model)
    }

    /// Returns the learner to the checkpoint of the promoted version (or the start) after a
    /// refused round; the checkpoint's name, or `None` when there is none to return to (a run
    /// begun by an older stoke), and training goes on from the candidate.
    pub(super) fn revert(&mut self) -> Result<Option<String>, Error> {
        let Some(target) = self.follow.revert_target().map(str::to_string) else {
            return Ok(None);
        };
        let verified = self.checkpoints.verify(&target)?;
        load_model(&verified.dir, self.parts.model.as_mut())?;
        let (optimizer, scheduler) = fresh_optimizer(&self.experiment);
        let (optimizer, scheduler) = load_optimizer(&verified.dir, optimizer, scheduler)?;
        self.parts.optimizer = optimizer;
        self.parts.scheduler = scheduler;
        let state: TrainingState = verified.state()?;
        self.parts.state.lr = state.lr;
        self.parts.state.loss_scale = state.loss_scale.clone();
        self.stepper.resume_loss_scale(state.loss_scale);
        Ok(Some(target))
    }
}

#[cfg(test)]
mod tests {
    use super::incompatibility;
    use crate::data::{DataSpec, ImageShape, Normalization};

    fn digits(classes: &[&str], mean: f32) -> DataSpec {
        DataSpec::ImageClassification {
            input: ImageShape {
                channels: 1,
                height: 28,
                width: 28,
            },
            classes: classes.iter().map(|c| c.to_string()).collect(),
            normalization: Normalization {
                mean: vec![mean],
                std: vec![0.3081],
            },
            resize: None,
        }
    }

    #[test]
    fn a_served_model_is_compared_on_task_classes_and_input() {
        let ours = digits(&["0", "1", "2"], 0.1307);
        assert_eq!(incompatibility(&ours, &ours), None);
        let said = |theirs: &DataSpec| incompatibility(theirs, &ours).unwrap();
        assert_eq!(
            said(&digits(&["0", "1"], 0.1307)),
            "predicts 2 classes and this run's data has 3"
        );
        assert_eq!(
            said(&digits(&["0", "1", "7"], 0.1307)),
            "has class 2 \"7\" where this run's data has \"2\""
        );
        assert!(said(&digits(&["0", "1", "2"], 0.5)).contains("read otherwise"));
        let texts = DataSpec::TextClassification {
            classes: vec!["0".into(), "1".into(), "2".into()],
            vocab_size: 100,
            max_length: 16,
            pad_id: 0,
        };
        assert!(said(&texts).contains("read otherwise"), "{}", said(&texts));
        let lm = DataSpec::LanguageModel {
            vocab_size: 100,
            context_length: 16,
            chars_per_token: 1.0,
        };
        assert!(said(&lm).starts_with("is a "), "{}", said(&lm));
    }
}
