//! Training and everything that runs a model over data: the loop, checkpoints, metrics,
//! progress, the run directory, and the `eval` and `bench` commands built on the same step.

mod adam;
mod bench;
pub mod checkpoint;
mod eval;
mod fault;
mod finetune;
mod interrupt;
mod lr_find;
mod measure;
pub mod metrics;
mod optim;
pub mod precision;
mod progress;
mod ranks;
pub mod reports;
pub mod run_dir;
pub mod runs;
mod session;
pub mod state;
mod step;
pub mod tensorboard;
mod trainer;

pub use bench::{BenchOptions, BenchReport, bench};
pub use checkpoint::CheckpointChoice;
pub use eval::{EvalReport, ReportOptions, ReportRequest, evaluate_run};
pub use lr_find::{LrFindOptions, LrFindReport, lr_find};
pub use measure::{Measured, MetricSpec};
pub use metrics::{MetricRecord, SplitName, read_metrics};
pub use optim::build_optimizer;
pub use progress::format_duration;
pub use run_dir::{RunDir, Summary};
pub use session::{Outcome, TrainOptions, resume, train};
pub use step::DeviceBatch;
pub use trainer::seed_step;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::{Device, Tensor};

use crate::Error;
use crate::backend::{BackendName, SelectedBackend};
use crate::config::{ExperimentConfig, Precision};
use crate::data::{DataError, Splits, Tokenizer, load_splits};
use crate::model::Model;

/// A config with its data loaded and its backend chosen: what every command starts from.
pub struct Experiment {
    pub config: ExperimentConfig,
    pub backend: SelectedBackend,
    pub splits: Splits,
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
        let mut splits = load_splits(&config.data, config.run.seed, tokenizer)?;
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
        let outputs = match &splits.spec {
            crate::data::DataSpec::LanguageModel { vocab_size, .. } => *vocab_size,
            spec => spec.classes().map_or(0, <[String]>::len),
        };
        if let Some(k) = config.train.top_k.filter(|&k| k >= outputs) {
            return Err(Error::Usage(format!(
                "train.top_k = {k} must be below the {outputs} classes the model chooses from"
            )));
        }
        Ok(Self {
            config,
            backend,
            splits,
        })
    }

    /// A freshly initialised model on `device`, tracking gradients if the device does (except
    /// for the parameters under `model.freeze`).
    ///
    /// The weights are drawn on flex from the run's seed whatever the device, so one seed
    /// gives the same initial weights on every backend.
    pub fn new_model(&self, device: &Device) -> Result<Model, Error> {
        self.model_on(device, false)
    }

    /// The model a fresh run starts from: [`Self::new_model`] with the weights
    /// `model.init_from` names, when it names some.
    pub fn initial_model(&self, device: &Device) -> Result<Model, Error> {
        self.model_on(device, true)
    }

    fn model_on(&self, device: &Device, pretrained: bool) -> Result<Model, Error> {
        let init_device = Device::flex();
        init_device.seed(self.config.run.seed);
        let model = Model::new(&self.config.model, &self.splits.spec, &init_device)?;
        // Parameters initialise lazily, on whatever device they are on at first use.
        model.visit(&mut InitialiseNow);
        let model = match pretrained {
            true => crate::weights::initial_weights(model, &self.config.model, &self.splits.spec)?,
            false => model,
        };
        finetune::check_prefixes(&model, &self.config.model)?;
        let model = model.to_device(&device.clone().without_autodiff());
        Ok(if device.is_autodiff() {
            // Frozen parameters take no gradient: set on the device that tracks them.
            finetune::freeze(model.train(), &self.config.model)
        } else {
            model
        })
    }

    /// What the metrics count: classes of a classification task (for per-class metrics)
    /// and `train.top_k`.
    pub fn metric_spec(&self) -> MetricSpec {
        MetricSpec {
            classes: self.splits.spec.classes().map(<[String]>::len),
            top_k: self.config.train.top_k,
        }
    }
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

struct InitialiseNow;

impl ModuleVisitor for InitialiseNow {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}
