//! `stoke lr-find`: the learning-rate range test. Trains a fresh model from the config for a
//! few hundred steps while the learning rate grows exponentially, records the smoothed loss
//! at each rate, stops once the loss diverges, and suggests the rate a tenth of the one with
//! the lowest loss (where the loss still falls steeply, below the edge of divergence).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Experiment;
use super::bench::Batches;
use super::measure::RunningMetrics;
use super::optim::build_optimizer;
use super::step::{StepShare, Stepper, predictions};
use super::trainer::seed_step;
use crate::Error;
use crate::plot::{Lines, write_lines};

pub struct LrFindOptions {
    pub start_lr: f64,
    pub end_lr: f64,
    pub steps: usize,
}

#[derive(Debug, Serialize)]
pub struct LrFindReport {
    /// `(lr, loss, smoothed loss)` of each step taken.
    pub points: Vec<(f64, f64, f64)>,
    pub lowest_loss_lr: f64,
    pub suggested_lr: f64,
    /// The configured `optimizer.lr`, for comparison.
    pub config_lr: f64,
    pub plots: Vec<PathBuf>,
}

/// Weight of the running mean that smooths the per-step loss.
const SMOOTHING: f64 = 0.9;
/// Stop once the smoothed loss exceeds the lowest one this many times.
const DIVERGED: f64 = 4.0;

pub fn lr_find(
    experiment: Experiment,
    options: &LrFindOptions,
    out: &Path,
) -> Result<LrFindReport, Error> {
    let config = &experiment.config;
    let device = experiment.backend.device.clone().autodiff();
    let mut model = experiment.new_model(&device)?;
    let mut optimizer = build_optimizer(&config.optimizer, &config.train);
    let mut stepper = Stepper::new(&config.train, &experiment.task);
    let mut batches = Batches::new(&experiment, &device);
    let mut metrics = RunningMetrics::new(&experiment.task);
    let growth = (options.end_lr / options.start_lr).powf(1.0 / (options.steps.max(2) - 1) as f64);
    let (mut points, mut average, mut lowest) = (Vec::new(), 0.0, f64::INFINITY);
    for step in 0..options.steps {
        let lr = options.start_lr * growth.powi(step as i32);
        seed_step(&device, config.run.seed, step);
        let passes = batches.next();
        let share = StepShare::alone(predictions(&passes));
        model.step(
            &mut stepper,
            &mut optimizer,
            lr.into(),
            passes,
            share,
            &mut metrics,
        )?;
        let loss = metrics.take().map_or(f64::NAN, |m| m.loss);
        average = SMOOTHING * average + (1.0 - SMOOTHING) * loss;
        let smoothed = average / (1.0 - SMOOTHING.powi(step as i32 + 1));
        points.push((lr, loss, smoothed));
        if !smoothed.is_finite() || smoothed > DIVERGED * lowest {
            break;
        }
        lowest = lowest.min(smoothed);
    }
    let (lowest_loss_lr, _, _) = points
        .iter()
        .copied()
        .filter(|(_, _, smoothed)| smoothed.is_finite())
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .unwrap_or((options.start_lr, 0.0, 0.0));
    std::fs::create_dir_all(out).map_err(|source| Error::io(out, source))?;
    let plots = write_lines(
        &out.join("lr-find"),
        &Lines {
            title: "Learning rate range test".into(),
            x_label: "log10 of the learning rate".into(),
            y_label: "training loss (smoothed)".into(),
            series: vec![(
                "smoothed loss".into(),
                points
                    .iter()
                    .map(|(lr, _, smoothed)| (lr.log10(), *smoothed))
                    .collect(),
            )],
        },
    )?
    .to_vec();
    Ok(LrFindReport {
        points,
        lowest_loss_lr,
        suggested_lr: lowest_loss_lr / 10.0,
        config_lr: config.optimizer.lr(),
        plots,
    })
}
