//! `stoke bench`: times the real training step (data pipeline, forward, backward, optimizer)
//! after a warm-up, and reports training samples/s.

use std::time::Instant;

use burn::prelude::Device;
use serde::Serialize;

use super::Experiment;
use super::measure::RunningMetrics;
use super::optim::{build_optimizer, build_scheduler};
use super::step::{StepShare, Stepper, predictions};
use super::trainer::seed_step;
use crate::Error;
use crate::backend::BackendName;
use crate::data::{BatchStream, Passes, StreamPlan, epoch_order};

pub struct BenchOptions {
    pub steps: usize,
    pub warmup: usize,
    /// Time the data path alone (read, decode, batch, move to the device), no model.
    pub data_only: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// "training steps", or "data path" for `--data-only`.
    pub measured: &'static str,
    pub model: String,
    pub backend: BackendName,
    pub adapter: Option<String>,
    /// The model's parameters (what a data-parallel step all-reduces); none for `--data-only`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<usize>,
    pub batch_size: usize,
    pub warmup_steps: usize,
    pub steps: usize,
    pub samples_per_s: f64,
    /// Text tasks: tokens read per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    pub step_ms: f64,
    /// From the command's start (backend, data, model set up) to the end of the first step.
    pub time_to_first_step_s: f64,
    /// The warm-up steps after the first, untimed in `samples_per_s`: on wgpu, kernel
    /// compilation and autotuning happen here and in the first step.
    pub warmup_s: f64,
}

/// Runs `warmup + steps` training steps; `started` is when the command began.
pub fn bench(
    experiment: Experiment,
    options: &BenchOptions,
    started: Instant,
) -> Result<BenchReport, Error> {
    if options.data_only {
        return bench_data_path(&experiment, options, started);
    }
    let config = &experiment.config;
    let device = experiment.backend.device.clone().autodiff();
    device.seed(config.run.seed);
    let mut model = experiment.new_model(&device)?;
    let mut optimizer = build_optimizer(&config.optimizer, &config.train);
    let total = options.warmup + options.steps;
    let mut scheduler = build_scheduler(
        &config.scheduler,
        config.optimizer.lr(),
        &config.model.lr_by_prefix,
        total,
    );
    let mut stepper = Stepper::new(&config.train, &experiment.task);
    let mut batches = Batches::new(&experiment, &device);
    let mut metrics = RunningMetrics::new(&experiment.task);

    let mut step = |metrics: &mut RunningMetrics, index: usize| {
        seed_step(&device, config.run.seed, index);
        let passes = batches.next();
        let share = StepShare::alone(predictions(&passes));
        model.step(
            &mut stepper,
            &mut optimizer,
            scheduler.step(),
            passes,
            share,
            metrics,
        )
    };

    step(&mut metrics, 0)?;
    metrics.take(); // Reading the loss waits for the device.
    let time_to_first_step = started.elapsed().as_secs_f64();
    let warming = Instant::now();
    for index in 1..options.warmup {
        step(&mut metrics, index)?;
    }
    metrics.take();
    let warmup_s = warming.elapsed().as_secs_f64();

    let warmup = options.warmup.max(1);
    let timed = Instant::now();
    for index in 0..options.steps {
        step(&mut metrics, warmup + index)?;
    }
    let measured = metrics.take();
    let seconds = timed.elapsed().as_secs_f64();
    let (samples, tokens) = measured.map_or((0, 0), |m| (m.samples, m.tokens));
    let timing = Timing {
        warmup_steps: warmup,
        samples,
        tokens,
        seconds,
        time_to_first_step,
        warmup_s,
        parameters: Some(model.num_params()),
    };
    Ok(report(&experiment, options, "training steps", timing))
}

/// What a timed loop counted.
struct Timing {
    warmup_steps: usize,
    samples: usize,
    tokens: usize,
    seconds: f64,
    time_to_first_step: f64,
    warmup_s: f64,
    parameters: Option<usize>,
}

fn report(
    experiment: &Experiment,
    options: &BenchOptions,
    measured: &'static str,
    timing: Timing,
) -> BenchReport {
    let config = &experiment.config;
    let seconds = timing.seconds;
    BenchReport {
        measured,
        model: config.model.kind().to_string(),
        backend: experiment.backend.name,
        adapter: experiment.backend.adapter.clone(),
        parameters: timing.parameters,
        batch_size: config.train.batch_size,
        warmup_steps: timing.warmup_steps,
        steps: options.steps,
        samples_per_s: timing.samples as f64 / seconds,
        tokens_per_s: (timing.tokens > 0).then(|| timing.tokens as f64 / seconds),
        step_ms: seconds * 1000.0 / options.steps.max(1) as f64,
        time_to_first_step_s: timing.time_to_first_step,
        warmup_s: timing.warmup_s,
    }
}

/// Batches per second the data path delivers to the device, to compare with what the
/// model consumes: the pipeline must never starve it.
fn bench_data_path(
    experiment: &Experiment,
    options: &BenchOptions,
    started: Instant,
) -> Result<BenchReport, Error> {
    let device = &experiment.backend.device;
    let mut batches = Batches::new(experiment, device);
    drop(batches.next());
    let time_to_first_step = started.elapsed().as_secs_f64();
    let warming = Instant::now();
    for _ in 1..options.warmup {
        drop(batches.next());
    }
    let warmup_s = warming.elapsed().as_secs_f64();
    let timed = Instant::now();
    let (mut samples, mut tokens) = (0, 0);
    for _ in 0..options.steps {
        for pass in batches.next() {
            samples += pass.samples();
            tokens += pass.tokens();
        }
    }
    let timing = Timing {
        warmup_steps: options.warmup,
        samples,
        tokens,
        seconds: timed.elapsed().as_secs_f64(),
        time_to_first_step,
        warmup_s,
        parameters: None,
    };
    Ok(report(experiment, options, "data path", timing))
}

/// Training batches without end: epoch after epoch through the real data pipeline, on
/// `device`.
pub(crate) struct Batches<'a> {
    experiment: &'a Experiment,
    device: Device,
    epoch: usize,
    stream: BatchStream,
}

impl<'a> Batches<'a> {
    pub(crate) fn new(experiment: &'a Experiment, device: &Device) -> Self {
        Self {
            experiment,
            device: device.clone(),
            epoch: 0,
            stream: Self::stream(experiment, device, 0),
        }
    }

    fn stream(experiment: &Experiment, device: &Device, epoch: usize) -> BatchStream {
        let config = &experiment.config;
        BatchStream::new(
            experiment.splits.train.data.clone(),
            StreamPlan {
                order: epoch_order(&experiment.splits.train, config.run.seed, epoch),
                batch_size: config.train.samples_per_step(),
                pass_size: config.train.batch_size,
                first: 0,
                workers: config.data.workers,
                prefetch: config.data.prefetch,
            },
            experiment.batch_context(device, Some(epoch)),
        )
    }

    /// The next step's passes.
    pub(crate) fn next(&mut self) -> Passes {
        loop {
            if let Some(passes) = self.stream.next() {
                return passes;
            }
            self.epoch += 1;
            self.stream = Self::stream(self.experiment, &self.device, self.epoch);
        }
    }
}
