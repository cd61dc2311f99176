//! Training and everything that runs a model over data: the loop, progress, and the `eval`,
//! `bench` and `lr-find` commands built on the same step. The run directory it writes is
//! [`crate::run`]'s.

mod adam;
mod bench;
pub(crate) mod eval;
mod finetune;
mod init;

pub(crate) mod interrupt;
mod lr_find;
pub(crate) mod measure;
pub mod net;
mod optim;
pub mod precision;
pub(crate) mod progress;
mod ranks;
mod session;
pub(crate) mod step;
pub(crate) mod trainer;

pub use bench::{BenchOptions, BenchReport, bench};
pub use eval::{EvalReport, ReportOptions, ReportRequest, evaluate_run};
pub use init::{initial_weights, resolve};
pub use lr_find::{LrFindOptions, LrFindReport, lr_find};
pub use net::{Held, Net};
pub use optim::build_optimizer;
pub use progress::Progress;
pub use progress::format_duration;
pub use session::{CustomLoop, Outcome, TrainOptions, resume, train};
pub use trainer::{Parts, seed_step};

use burn::prelude::Device;

use crate::Error;
use crate::backend::{BackendName, SelectedBackend};
use crate::config::{ExperimentConfig, MonitorMode, Precision};
use crate::data::{BatchContext, DataError, Splits, Tokenizer};
use crate::task::{Direction, Task};

/// A config with its data loaded and its backend chosen: what every command starts from.
pub struct Experiment {
    pub config: ExperimentConfig,
    pub backend: SelectedBackend,
    pub splits: Splits,
    /// The task the data poses, with the config's loss settings.
    pub task: Task,
}

impl Experiment {
    /// Loads the data `config` names; a text dataset uses `tokenizer` when given (a resumed
    /// or evaluated run) and trains one on its training split otherwise.
    pub fn prepare(
        config: ExperimentConfig,
        backend: SelectedBackend,
        tokenizer: Option<Tokenizer>,
    ) -> Result<Self, Error> {
        precision::check_supported(config.train.precision, &backend)?;
        if config.train.precision != Precision::F32 && backend.name != BackendName::Wgpu {
            eprintln!(
                "note: train.precision = \"{}\" on {} computes the half type by conversion and is slower than f32 there (see BENCHMARKS.md); it pays off on GPUs",
                config.train.precision, backend.name
            );
        }
        let mut splits = crate::registry::load_data(&config.data, config.run.seed, tokenizer)?;
        if let Some(batches) = config.train.overfit_batches {
            overfit(&mut splits, batches * config.train.samples_per_step());
        }
        if splits.skipped.count > 0 {
            eprintln!(
                "warning: skipped {} bad records (data.on_error = \"skip\"), e.g. {}",
                splits.skipped.count,
                splits.skipped.examples.first().cloned().unwrap_or_default()
            );
        }
        check_memory_budget(&config, &splits)?;
        let task = Task::new(splits.spec.task(), config.task.clone(), config.train.top_k)
            .map_err(Error::Usage)?;
        check_monitors(&config, &task)?;
        Ok(Self {
            config,
            backend,
            splits,
            task,
        })
    }

    /// A freshly initialised model on `device`, tracking gradients if the device does (except
    /// for the parameters under `model.freeze`).
    ///
    /// The weights are drawn on flex from the run's seed whatever the device, so one seed
    /// gives the same initial weights on every backend.
    pub fn new_model(&self, device: &Device) -> Result<Box<dyn Net>, Error> {
        self.model_on(device, false)
    }

    /// The model a fresh run starts from: [`Self::new_model`] with the weights
    /// `model.init_from` names, when it names some.
    pub fn initial_model(&self, device: &Device) -> Result<Box<dyn Net>, Error> {
        self.model_on(device, true)
    }

    fn model_on(&self, device: &Device, pretrained: bool) -> Result<Box<dyn Net>, Error> {
        let init_device = Device::flex();
        init_device.seed(self.config.run.seed);
        let kind = crate::registry::registry()
            .model_kind(&self.config.model.kind)
            .map_err(Error::Usage)?;
        let mut model = kind.build(&self.config.model, &self.splits.spec, &init_device)?;
        // Parameters initialise lazily, on whatever device they are on at first use.
        model.initialize();
        if pretrained {
            init::initial_weights(model.as_mut(), &self.config.model, &self.splits.spec)?;
        }
        finetune::check_prefixes(model.as_ref(), &self.config.model)?;
        model.to_device(&device.clone().without_autodiff());
        if device.is_autodiff() {
            // Frozen parameters take no gradient: set on the device that tracks them.
            model.train_mode(&self.config.model);
        }
        Ok(model)
    }

    /// Where training batches are made: the device and the epoch, for per-sample draws.
    pub fn batch_context(&self, device: &Device, epoch: Option<usize>) -> BatchContext {
        BatchContext {
            device: device.clone(),
            seed: self.config.run.seed,
            epoch,
        }
    }

    /// What ranks checkpoints: `checkpoint.monitor` and its mode, or the task's default.
    pub fn checkpoint_monitor(&self) -> (String, MonitorMode) {
        let policy = &self.config.checkpoint;
        let metric = policy
            .monitor
            .as_ref()
            .and_then(|monitor| monitor.metric())
            .unwrap_or(self.task.default_monitor())
            .to_string();
        let mode = policy.mode.unwrap_or_else(|| self.mode_of(&metric));
        (metric, mode)
    }

    /// Early stopping's metric and mode, if it is set.
    pub fn early_stopping_monitor(&self) -> Option<(String, MonitorMode)> {
        let early = self.config.train.early_stopping.as_ref()?;
        let metric = early.monitor.metric().unwrap_or("loss").to_string();
        let mode = early.mode.unwrap_or_else(|| self.mode_of(&metric));
        Some((metric, mode))
    }

    pub(crate) fn mode_of(&self, metric: &str) -> MonitorMode {
        match self.task.direction(metric) {
            Some(Direction::Higher) => MonitorMode::Max,
            _ => MonitorMode::Min,
        }
    }
}

/// Refuses a `checkpoint.monitor` or `train.early_stopping.monitor` the task does not report.
fn check_monitors(config: &ExperimentConfig, task: &Task) -> Result<(), Error> {
    let monitors = [
        ("checkpoint.monitor", config.checkpoint.monitor.as_ref()),
        (
            "train.early_stopping.monitor",
            config.train.early_stopping.as_ref().map(|e| &e.monitor),
        ),
    ];
    for (key, monitor) in monitors {
        let Some(monitor) = monitor else { continue };
        let known = monitor
            .metric()
            .is_some_and(|metric| task.direction(metric).is_some());
        if !known {
            let names: Vec<String> = task
                .monitors()
                .into_iter()
                .map(|(name, _)| format!("valid.{name}"))
                .collect();
            return Err(Error::Usage(format!(
                "{key} = \"{monitor}\" is not a metric of this {} data; it reports {}",
                task.spec().name(),
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// Narrows training to the first `samples` of the training split and validates on the same
/// samples: `train.overfit_batches`, the check that a model can fit a few batches.
fn overfit(splits: &mut Splits, samples: usize) {
    let train = &splits.train;
    let kept = train.indices[..samples.min(train.len())].to_vec();
    eprintln!(
        "train.overfit_batches: training and validating on the same {} samples",
        kept.len()
    );
    splits.train = crate::data::Split::new(train.data.clone(), kept);
    splits.valid = splits.train.clone();
}

/// Refuses data that would not fit `data.memory_budget`, and says how much of it is used.
fn check_memory_budget(config: &ExperimentConfig, splits: &Splits) -> Result<(), DataError> {
    let Some(budget_text) = &config.data.memory_budget else {
        return Ok(());
    };
    let budget = crate::config::parse_bytes(budget_text).expect("checked by config validation");
    let needed = splits.memory(
        config.train.batch_size,
        config.train.eval_batch_size,
        &config.data,
    );
    if needed.total() > budget {
        let advice = if needed.datasets > needed.batches + needed.indices {
            "stream the dataset from shards instead of memory: stoke data pack <config> --out <dir>, then dataset = \"image-shards\""
        } else {
            "lower data.workers, data.prefetch or the batch sizes, or raise the budget"
        };
        return Err(DataError::OverBudget {
            budget: budget_text.clone(),
            needed,
            advice: advice.into(),
        });
    }
    eprintln!(
        "data: {needed} of the {} budget",
        crate::config::format_bytes(budget)
    );
    Ok(())
}
