//! Drift in the server: what the model answers, in count-based windows, against the
//! reference profile its artifact keeps (`export/profile.rs`). Each answered input adds its
//! predicted class, confidence and features (a few numbers, never the input) to the window;
//! when the window holds `window` answers it is scored, each statistic's score and whether
//! it crossed its threshold go to `/metrics`, and a new window begins. A reload starts over
//! with the new model's profile; an artifact without one is served without drift metrics.

use std::path::Path;
use std::sync::Arc;

use super::metrics::Metrics;
use crate::Error;
use crate::export::ArtifactManifest;
use crate::export::artifact::read_profile;
use crate::export::profile::{Observation, Profile};

/// The artifact's profile, calibrated for windows of `window` answers when that differs
/// from the window it was calibrated for at export.
pub fn load_profile(
    dir: &Path,
    manifest: &ArtifactManifest,
    window: Option<usize>,
) -> Result<Option<Arc<Profile>>, Error> {
    let Some(mut profile) = read_profile(dir, manifest)? else {
        return Ok(None);
    };
    if let Some(window) = window.filter(|&w| w != profile.window) {
        profile.calibrate(window);
    }
    Ok(Some(Arc::new(profile)))
}

/// The window being filled, and the profile it is scored against.
pub struct Monitor {
    profile: Option<Arc<Profile>>,
    window: Vec<Observation>,
    statistics: Vec<String>,
}

impl Monitor {
    /// Watches answers against `profile`, and publishes its thresholds.
    pub fn new(profile: Option<Arc<Profile>>, metrics: &Metrics) -> Self {
        let statistics = profile.as_ref().map_or_else(Vec::new, |p| p.statistics());
        metrics.drift_reset(profile.as_deref().map(|p| {
            (
                p.window,
                statistics
                    .iter()
                    .zip(&p.thresholds)
                    .map(|(name, threshold)| (name.as_str(), threshold.value))
                    .collect(),
            )
        }));
        Monitor {
            window: Vec::with_capacity(profile.as_ref().map_or(0, |p| p.window)),
            profile,
            statistics,
        }
    }

    /// Adds answered inputs (their logits and features); scores each window as it fills.
    pub fn observe(&mut self, logits: &[Vec<f32>], features: Vec<Vec<f32>>, metrics: &Metrics) {
        let Some(profile) = &self.profile else {
            return;
        };
        for (row, features) in logits.iter().zip(features) {
            self.window.push(Observation::new(row, features));
            if self.window.len() == profile.window {
                let scores = profile.scores(&self.window);
                let judged = self
                    .statistics
                    .iter()
                    .zip(&scores)
                    .zip(&profile.thresholds)
                    .map(|((name, &score), threshold)| {
                        (name.as_str(), score, score > threshold.value)
                    })
                    .collect();
                metrics.drift_window(judged);
                self.window.clear();
            }
        }
        metrics.drift_fill.set(self.window.len() as i64);
    }
}
