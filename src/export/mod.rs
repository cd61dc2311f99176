//! Using trained models: loading a checkpoint for inference, and sampling text from a
//! language model (`stoke generate`).

mod generate;

pub use generate::{GenerateOptions, generate};

use std::path::Path;

use burn::module::Module;
use burn::prelude::Device;

use crate::Error;
use crate::backend::{self, SelectedBackend};
use crate::config::{BackendChoice, ExperimentConfig};
use crate::data::{DataSpec, Tokenizer};
use crate::model::Model;
use crate::train::RunDir;
use crate::train::checkpoint::{self, CheckpointChoice};

/// A checkpoint's model ready for inference, with what it needs to read its inputs.
pub struct Loaded {
    pub config: ExperimentConfig,
    pub model: Model,
    pub spec: DataSpec,
    pub tokenizer: Option<Tokenizer>,
    pub backend: SelectedBackend,
    pub checkpoint: String,
}

/// Loads `choice` of the run at `run_path` onto the run's backend (or `backend_choice`),
/// without reading its dataset: the checkpoint carries the data spec and the tokenizer.
pub fn load(
    run_path: &Path,
    choice: &CheckpointChoice,
    backend_choice: Option<BackendChoice>,
) -> Result<Loaded, Error> {
    let (run, config) = RunDir::open(run_path)?;
    let chosen = run.checkpoints().open(choice)?;
    let spec = chosen.spec()?;
    let tokenizer = chosen.tokenizer()?;
    let backend = backend::select(
        backend_choice.unwrap_or(config.run.backend),
        config.run.cpu_backend,
    )?;
    let model = Model::new(&config.model, &spec, &Device::flex())?.to_device(&backend.device);
    let model = checkpoint::load_model(&chosen.dir, model)?;
    Ok(Loaded {
        config,
        model,
        spec,
        tokenizer,
        backend,
        checkpoint: chosen.name,
    })
}
